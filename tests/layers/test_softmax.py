import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.softmax import Softmax
from layerflow.registry import LAYERS

# (bottom shape, axis)
CASES = [((4, 5), 1), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), -1),
         ((3, 4, 2), 0), ((6, 4), -2)]
IDS = ["NC", "NCHW-axis1", "NCHW-axis2", "NCHW-axis-1", "axis0", "2d-axis-2"]


def reference(x, axis):
    """Softmax along `axis`, one 1-D slice at a time in plain Python loops over the others."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty_like(moved)
    for idx in np.ndindex(moved.shape[:-1]):
        v = moved[idx]
        e = np.exp(v - v.max())
        out[idx] = e / e.sum()
    return np.moveaxis(out, -1, axis)


def test_registered():
    assert LAYERS.get("Softmax") is Softmax


@pytest.mark.parametrize("shape,axis", CASES, ids=IDS)
def test_forward_matches_reference(lh, rng, shape, axis):
    layer, tops = lh.make_layer(Softmax, [shape], axis=axis)
    assert tops == [shape]
    x = 3 * rng.standard_normal(shape)
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, axis), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-14)


def test_large_inputs_do_not_overflow(lh):
    layer, _ = lh.make_layer(Softmax, [(2, 3)], dtype=np.float32)
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    (y,) = layer.forward([x])
    assert np.isfinite(y).all()
    e = np.exp(np.array([-1.0, 0.0, -2.0]))
    np.testing.assert_allclose(y[0], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=1e-6)


@pytest.mark.parametrize("shape,axis", CASES, ids=IDS)
def test_backward_matches_closed_form(lh, rng, shape, axis):
    layer, _ = lh.make_layer(Softmax, [shape], axis=axis)
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    (y,) = layer.forward([x])
    (dx,) = layer.backward([dout])
    want = y * (dout - (dout * y).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape,axis", CASES, ids=IDS)
def test_gradients(rng, shape, axis):
    res = gradcheck(Softmax, [rng.standard_normal(shape)], {"axis": axis}, step=1e-4)
    assert res["bottom[0]"].checked == int(np.prod(shape))


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Softmax, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


@pytest.mark.parametrize("axis", [1, 2])
def test_reshape_to_another_batch_and_size_matches_a_fresh_layer(lh, rng, axis):
    layer, _ = lh.make_layer(Softmax, [(2, 3, 4, 4)], axis=axis)
    new = (5, 3, 2, 6)
    assert layer.reshape([new]) == [new]
    fresh, _ = lh.make_layer(Softmax, [new], axis=axis)
    x, dout = rng.standard_normal(new), rng.standard_normal(new)
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


@pytest.mark.parametrize("shape,axis", CASES[:3], ids=IDS[:3])
def test_float32_matches_float64(lh, rng, shape, axis):
    lh.assert_float32_matches(Softmax, [3 * rng.standard_normal(shape)], axis=axis)


@pytest.mark.parametrize("p", [{}, {"axis": -1}, {"axis": 3}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Softmax.Params(**p))


def test_bad_params_rejected():
    with pytest.raises(ValidationError):
        Softmax.Params(dim=1)


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range_names_layer_and_shape(lh, axis):
    with pytest.raises(UserError, match=rf"layer prob \(Softmax\): axis: {axis} is out of range "
                                        rf"for bottom shape \(4, 5\)"):
        lh.make_layer(Softmax, [(4, 5)], name="prob", axis=axis)
