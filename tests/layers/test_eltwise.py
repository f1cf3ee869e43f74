import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.eltwise import Eltwise
from layerflow.registry import LAYERS

SHAPE = (2, 3, 2)
CONFIGS = [({}, 2), ({"coeff": [1.0, -2.0, 0.5]}, 3), ({"operation": "PROD"}, 2),
           ({"operation": "PROD"}, 3), ({"operation": "MAX"}, 2), ({"operation": "MAX"}, 3)]
IDS = ["sum2", "sum3-coeff", "prod2", "prod3", "max2", "max3"]


def reference(xs, operation="SUM", coeff=None):
    if operation == "SUM":
        coeff = coeff or [1.0] * len(xs)
        return sum(c * x for c, x in zip(coeff, xs))
    if operation == "PROD":
        return np.prod(np.stack(xs), axis=0)
    return np.max(np.stack(xs), axis=0)


def separated(rng, k):
    """k bottoms whose values differ by at least 0.3 at every element (no MAX ties), in a
    random order per element."""
    levels = np.argsort(rng.random((k,) + SHAPE), axis=0) * 0.5
    base = rng.standard_normal(SHAPE)
    return list(base + levels + rng.uniform(-0.1, 0.1, size=(k,) + SHAPE))


def test_registered():
    assert LAYERS.get("Eltwise") is Eltwise


@pytest.mark.parametrize("p,k", CONFIGS, ids=IDS)
def test_forward_matches_reference(lh, rng, p, k):
    layer, tops = lh.make_layer(Eltwise, [SHAPE] * k, **p)
    xs = [rng.standard_normal(SHAPE) for _ in range(k)]
    (y,) = layer.forward(xs)
    assert tops == [SHAPE]
    np.testing.assert_allclose(y, reference(xs, **p), rtol=1e-14)


@pytest.mark.parametrize("p,k", CONFIGS, ids=IDS)
def test_gradients(rng, p, k):
    xs = separated(rng, k)
    res = gradcheck(Eltwise, xs, p)
    assert [e.name for e in res.entries] == [f"bottom[{i}]" for i in range(k)]
    assert all(e.checked == xs[0].size for e in res.entries)


def test_prod_gradient_with_zeros(lh, rng):
    xs = [rng.standard_normal(SHAPE) for _ in range(3)]
    xs[0][0, 0, 0] = 0.0                      # one zero: the others still get a gradient
    xs[1][1, 1, 1] = xs[2][1, 1, 1] = 0.0     # two zeros at one element
    gradcheck(Eltwise, xs, {"operation": "PROD"})
    layer, _ = lh.make_layer(Eltwise, [SHAPE] * 3, operation="PROD")
    layer.forward(xs)
    dout = rng.standard_normal(SHAPE)
    dxs = layer.backward([dout])
    for i in range(3):
        others = np.prod([xs[j] for j in range(3) if j != i], axis=0)
        np.testing.assert_allclose(dxs[i], dout * others, rtol=1e-14)
    assert dxs[0][0, 0, 0] != 0
    assert dxs[1][1, 1, 1] == dxs[2][1, 1, 1] == 0


def test_max_ties_follow_caffe(lh):
    """Caffe: bottom 0 vs 1 is `x0 > x1 ? x0 : x1` (a tie goes to bottom 1); bottoms 2+ win
    only when strictly greater (a tie keeps the earlier winner)."""
    layer, _ = lh.make_layer(Eltwise, [(6,)] * 3, operation="MAX")
    xs = [np.array([1.0, 2.0, 0.0, 1.0, 0.0, 5.0]),
          np.array([1.0, 1.0, 3.0, 1.0, 1.0, 1.0]),
          np.array([0.0, 2.0, 3.0, 1.0, 4.0, 5.0])]
    (y,) = layer.forward(xs)
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0, 1.0, 4.0, 5.0])
    # 0: tie 0/1 -> 1; 1: 0 beats 1, 2 ties -> 0; 2: 2 ties 1 -> 1; 3: all tie -> 1;
    # 4: 2 strictly greatest; 5: 0 beats 1, 2 ties -> 0
    np.testing.assert_array_equal(layer.argmax, [1, 0, 1, 1, 2, 0])
    dout = np.arange(1.0, 7.0)
    dxs = layer.backward([dout])
    want = np.zeros((3, 6))
    want[[1, 0, 1, 1, 2, 0], np.arange(6)] = dout
    np.testing.assert_array_equal(np.stack(dxs), want)


def test_max_two_bottoms_tie_goes_to_bottom_1(lh):
    layer, _ = lh.make_layer(Eltwise, [(3,)] * 2, operation="MAX")
    layer.forward([np.array([2.0, -1.0, 0.5]), np.array([2.0, -1.0, 0.25])])
    np.testing.assert_array_equal(layer.argmax, [1, 1, 0])
    dx0, dx1 = layer.backward([np.array([7.0, 8.0, 9.0])])
    np.testing.assert_array_equal(dx0, [0.0, 0.0, 9.0])
    np.testing.assert_array_equal(dx1, [7.0, 8.0, 0.0])


@pytest.mark.parametrize("p", [{}, {"operation": "PROD"}, {"operation": "MAX"}])
def test_propagate_down_per_bottom(lh, rng, p):
    layer, _ = lh.make_layer(Eltwise, [SHAPE] * 3, propagate_down=[True, False, True], **p)
    xs = separated(rng, 3)
    layer.forward(xs)
    dxs = layer.backward([rng.standard_normal(SHAPE)])
    assert dxs[1] is None and dxs[0] is not None and dxs[2] is not None


@pytest.mark.parametrize("p,k", CONFIGS, ids=IDS)
def test_float32_matches_float64(lh, rng, p, k):
    lh.assert_float32_matches(Eltwise, [rng.standard_normal(SHAPE) for _ in range(k)], **p)


@pytest.mark.parametrize("p", [{}, {"coeff": [1.0, -1.0]}, {"operation": "PROD"},
                               {"operation": "MAX"}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Eltwise.Params(**p))


@pytest.mark.parametrize("p", [{"operation": "MAX", "coeff": [1.0, 1.0]},
                               {"operation": "PROD", "coeff": [1.0, 1.0]},
                               {"operation": "MIN"}, {"coef": [1.0]}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Eltwise.Params(**p)


def test_shape_mismatch_names_layer_bottoms_and_shapes(lh):
    with pytest.raises(UserError) as err:
        lh.make_layer(Eltwise, [(2, 3), (2, 3), (3, 2)], name="join",
                      bottom_names=["conv_a", "conv_b", "conv_c"])
    msg = str(err.value)
    assert "join" in msg
    for part in ["conv_a (2, 3)", "conv_b (2, 3)", "conv_c (3, 2)"]:
        assert part in msg


def test_coeff_length_mismatch(lh):
    with pytest.raises(UserError, match=r"layer join .*coeff has 3 values for 2 bottoms"):
        lh.make_layer(Eltwise, [SHAPE] * 2, name="join", coeff=[1.0, 2.0, 3.0])


def test_needs_two_bottoms(lh):
    with pytest.raises(UserError, match=r"layer join .*at least 2 bottoms"):
        lh.make_layer(Eltwise, [SHAPE], name="join")
