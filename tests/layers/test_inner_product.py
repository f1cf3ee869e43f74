import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.inner_product import InnerProduct
from layerflow.registry import LAYERS

GAUSS = {"type": "gaussian", "std": 1.0}
# (bottom shape, params, expected top shape)
CASES = [
    ((3, 4), {"num_output": 2}, (3, 2)),
    ((2, 3, 4), {"num_output": 5, "axis": 2}, (2, 3, 5)),
    ((2, 3, 2), {"num_output": 3, "bias_term": False}, (2, 3)),
    ((2, 3, 4), {"num_output": 2, "axis": -1}, (2, 3, 2)),
]
IDS = ["axis1", "axis2", "nobias", "axis-1"]


def reference(x, w, b, axis):
    """y = x W^T + b with x flattened from `axis` on (plain numpy)."""
    lead = x.shape[:axis]
    y = np.einsum("nk,mk->nm", x.reshape(int(np.prod(lead)), -1), w)
    if b is not None:
        y = y + b
    return y.reshape(lead + (w.shape[0],))


def params_of(p):
    return {"bias_filler": GAUSS, **p}


def test_registered():
    assert LAYERS.get("InnerProduct") is InnerProduct


@pytest.mark.parametrize("shape,p,top", CASES, ids=IDS)
def test_forward_matches_reference(lh, rng, shape, p, top):
    layer, tops = lh.make_layer(InnerProduct, [shape], **params_of(p))
    x = rng.standard_normal(shape)
    w = layer.params["weight"].data
    b = layer.params["bias"].data if "bias" in layer.params else None
    axis = p.get("axis", 1) % len(shape)
    (y,) = layer.forward([x])
    assert y.shape == top
    np.testing.assert_allclose(y, reference(x, w, b, axis), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,p,top", CASES, ids=IDS)
def test_shapes(lh, shape, p, top):
    layer, tops = lh.make_layer(InnerProduct, [shape], **p)
    assert tops == [top]
    k = int(np.prod(shape)) // int(np.prod(top[:-1]))
    assert layer.params["weight"].shape == (p["num_output"], k)
    if p.get("bias_term", True):
        assert layer.params["bias"].shape == (p["num_output"],)
    else:
        assert "bias" not in layer.params


@pytest.mark.parametrize("shape,p,top", CASES, ids=IDS)
def test_gradients(rng, shape, p, top):
    x = rng.standard_normal(shape)
    res = gradcheck(InnerProduct, [x], params_of(p))
    expected = {"bottom[0]", "weight"} | ({"bias"} if p.get("bias_term", True) else set())
    assert {e.name for e in res.entries} == expected
    assert all(e.checked > 0 and e.error <= 1e-6 for e in res.entries)


def test_param_grads_accumulate_and_propagate_down(lh, rng):
    layer, _ = lh.make_layer(InnerProduct, [(3, 4)], propagate_down=[False], num_output=2)
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 2))
    layer.forward([x])
    assert layer.backward([dout]) == [None]
    np.testing.assert_allclose(layer.params["weight"].grad, dout.T @ x)
    layer.backward([dout])
    np.testing.assert_allclose(layer.params["weight"].grad, 2 * dout.T @ x)
    np.testing.assert_allclose(layer.params["bias"].grad, 2 * dout.sum(0))


@pytest.mark.parametrize("shape,p,top", CASES, ids=IDS)
def test_float32_matches_float64(lh, rng, shape, p, top):
    lh.assert_float32_matches(InnerProduct, [rng.standard_normal(shape)], **params_of(p))


@pytest.mark.parametrize("p", [{"num_output": 3},
                               {"num_output": 2, "bias_term": False, "axis": 2,
                                "weight_filler": {"type": "gaussian", "std": 0.1}}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(InnerProduct.Params(**p))


def test_bad_axis_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer fc1 .*axis 3 .*\(2, 4\)"):
        lh.make_layer(InnerProduct, [(2, 4)], name="fc1", num_output=2, axis=3)


@pytest.mark.parametrize("p", [{"num_output": 0}, {"num_output": 2, "bogus": 1}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        InnerProduct.Params(**p)
