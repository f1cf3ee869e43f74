import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.bias import Bias
from layerflow.registry import LAYERS

SHAPE = (2, 3, 4, 5)
GAUSS = {"type": "gaussian", "std": 1.0}
# one bottom: (params, shape of the learned bias)
ONE = [({}, (3,)), ({"num_axes": 2}, (3, 4)), ({"num_axes": -1}, (3, 4, 5)),
       ({"num_axes": 0}, ()), ({"axis": 0}, (2,)), ({"axis": -1}, (5,)),
       ({"axis": -2, "num_axes": -1}, (4, 5))]
ONE_IDS = ["default", "num_axes2", "all", "scalar", "axis0", "axis-1", "axis-2-all"]
# two bottoms: (params, shape of bottom[1])
TWO = [({}, (3,)), ({}, (3, 4, 5)), ({}, ()), ({"axis": 2}, (4,)), ({"axis": 0}, SHAPE)]
TWO_IDS = ["C", "CHW", "scalar", "axis2", "axis0-full"]


def reference(x, b, axis):
    """x + b, b covering axes axis .. axis+b.ndim-1 of x (numpy broadcasting)."""
    axis = 0 if b.ndim == 0 else axis % x.ndim
    return x + b.reshape((1,) * axis + b.shape + (1,) * (x.ndim - axis - b.ndim))


def summed_axes(b_shape, axis):
    axis = 0 if len(b_shape) == 0 else axis % len(SHAPE)
    return tuple(range(axis)) + tuple(range(axis + len(b_shape), len(SHAPE)))


def test_registered():
    assert LAYERS.get("Bias") is Bias


@pytest.mark.parametrize("p,b_shape", ONE, ids=ONE_IDS)
def test_one_bottom_forward_and_backward(lh, rng, p, b_shape):
    layer, tops = lh.make_layer(Bias, [SHAPE], filler=GAUSS, **p)
    assert tops == [SHAPE] and list(layer.params) == ["bias"]
    b = layer.params["bias"].data
    assert b.shape == b_shape
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, b, p.get("axis", 1)), rtol=1e-15)
    (dx,) = layer.backward([dout])
    np.testing.assert_array_equal(dx, dout)
    np.testing.assert_allclose(layer.params["bias"].grad,
                               dout.sum(axis=summed_axes(b_shape, p.get("axis", 1))),
                               rtol=1e-12)


@pytest.mark.parametrize("p,b_shape", TWO, ids=TWO_IDS)
def test_two_bottom_forward_and_backward(lh, rng, p, b_shape):
    layer, tops = lh.make_layer(Bias, [SHAPE, b_shape], **p)
    assert tops == [SHAPE] and layer.params == {}
    x, b = rng.standard_normal(SHAPE), np.asarray(rng.standard_normal(b_shape))
    dout = rng.standard_normal(SHAPE)
    (y,) = layer.forward([x, b])
    np.testing.assert_allclose(y, reference(x, b, p.get("axis", 1)), rtol=1e-15)
    dx, db = layer.backward([dout])
    np.testing.assert_array_equal(dx, dout)
    np.testing.assert_allclose(db, dout.sum(axis=summed_axes(b_shape, p.get("axis", 1))),
                               rtol=1e-12)
    np.testing.assert_array_equal(layer.backward([dout])[1], db)  # not accumulated


def test_default_filler_is_zero(lh, rng):
    layer, _ = lh.make_layer(Bias, [SHAPE])
    np.testing.assert_array_equal(layer.params["bias"].data, np.zeros(3))


@pytest.mark.parametrize("p,b_shape", ONE, ids=ONE_IDS)
def test_gradients_one_bottom(rng, p, b_shape):
    res = gradcheck(Bias, [rng.standard_normal(SHAPE)], {"filler": GAUSS, **p})
    assert [e.name for e in res.entries] == ["bottom[0]", "bias"]
    assert res["bias"].checked == int(np.prod(b_shape))


@pytest.mark.parametrize("p,b_shape", TWO, ids=TWO_IDS)
def test_gradients_two_bottoms(rng, p, b_shape):
    bottoms = [rng.standard_normal(SHAPE), np.asarray(rng.standard_normal(b_shape))]
    res = gradcheck(Bias, bottoms, p)
    assert [e.name for e in res.entries] == ["bottom[0]", "bottom[1]"]


@pytest.mark.parametrize("down", [[True, False], [False, True]])
def test_two_bottoms_propagate_down_each(lh, rng, down):
    layer, _ = lh.make_layer(Bias, [SHAPE, (3,)], propagate_down=down)
    layer.forward([rng.standard_normal(SHAPE), rng.standard_normal(3)])
    diffs = layer.backward([rng.standard_normal(SHAPE)])
    assert [d is not None for d in diffs] == down


@pytest.mark.parametrize("two", [False, True])
def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng, two):
    shapes = lambda n: [(n, 3, 4, 5)] + ([(3,)] if two else [])  # noqa: E731
    layer, _ = lh.make_layer(Bias, shapes(2), filler=GAUSS)
    assert layer.reshape(shapes(4)) == [(4, 3, 4, 5)]
    fresh, _ = lh.make_layer(Bias, shapes(4), filler=GAUSS)
    for name, p in layer.params.items():
        fresh.params[name].data[...] = p.data
    bottoms = [rng.standard_normal(s) for s in shapes(4)]
    dout = rng.standard_normal((4, 3, 4, 5))
    np.testing.assert_array_equal(layer.forward(bottoms)[0], fresh.forward(bottoms)[0])
    for a, b in zip(layer.backward([dout]), fresh.backward([dout])):
        np.testing.assert_array_equal(a, b)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(p.grad, fresh.params[name].grad)


@pytest.mark.parametrize("bottoms,p", [([SHAPE], {"filler": GAUSS}), ([SHAPE, (3, 4)], {})],
                         ids=["one", "two"])
def test_float32_matches_float64(lh, rng, bottoms, p):
    lh.assert_float32_matches(Bias, [rng.standard_normal(s) for s in bottoms], **p)


@pytest.mark.parametrize("p", [{}, {"axis": 0, "num_axes": -1}, {"filler": GAUSS}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Bias.Params(**p))


@pytest.mark.parametrize("p", [{"num_axes": -3}, {"bias_term": True}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Bias.Params(**p)


def test_two_bottom_shape_mismatch_names_layer_and_shapes(lh):
    with pytest.raises(UserError) as err:
        lh.make_layer(Bias, [SHAPE, (3, 5)], name="add")
    msg = str(err.value)
    assert "layer add (Bias)" in msg and "(3, 5)" in msg and str(SHAPE) in msg
    assert "(3, 4)" in msg  # what the bottom has there


def test_num_axes_past_the_last_axis(lh):
    with pytest.raises(UserError, match=r"layer add \(Bias\): num_axes: 2 axes from axis 3 "
                                        r"reach past bottom shape \(2, 3, 4, 5\)"):
        lh.make_layer(Bias, [SHAPE], name="add", axis=3, num_axes=2)


def test_axis_out_of_range(lh):
    with pytest.raises(UserError, match=r"layer add \(Bias\): axis: -5 is out of range"):
        lh.make_layer(Bias, [SHAPE], name="add", axis=-5)


def test_learned_bias_fixes_the_covered_dims(lh):
    layer, _ = lh.make_layer(Bias, [SHAPE], name="add")
    with pytest.raises(UserError, match=r"layer add \(Bias\): the bias of shape \(3,\) must "
                                        r"match bottom\[0\] \(2, 4, 4, 5\)"):
        layer.reshape([(2, 4, 4, 5)])
