import numpy as np
import pytest

from layerflow.gradcheck import gradcheck
from layerflow.layers.tanh import TanH
from layerflow.registry import LAYERS

EXTREME = np.array([-1e4, -100.0, -20.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 20.0, 100.0, 1e4])


def reference(x):
    """tanh from its definition with exponentials, (1 - e^-2|x|) / (1 + e^-2|x|) * sign(x)."""
    x = np.asarray(x, np.float64)
    e = np.exp(-2 * np.abs(x))
    return np.sign(x) * (1 - e) / (1 + e)


def test_registered():
    assert LAYERS.get("TanH") is TanH


def test_forward_matches_reference(lh, rng):
    layer, _ = lh.make_layer(TanH, [(3, 4)])
    x = 2 * rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_shapes(lh, shape):
    assert lh.make_layer(TanH, [shape])[1] == [shape]


def test_gradients(rng):
    res = gradcheck(TanH, [2 * rng.standard_normal((3, 4))])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == 12


def test_backward_uses_cached_output_not_input(lh, rng):
    layer, _ = lh.make_layer(TanH, [(2, 3)])
    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal((2, 3))
    y = reference(x)
    layer.forward([x])
    x[...] = 100.0  # backward must not read the bottom again
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, dout * (1 - y ** 2), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_saturate_without_overflow(lh, dtype):
    layer, _ = lh.make_layer(TanH, [EXTREME.shape], dtype=dtype)
    (y,) = layer.forward([EXTREME.astype(dtype)])
    (dx,) = layer.backward([np.ones_like(y)])
    assert y.dtype == dtype and np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y, reference(EXTREME), rtol=2e-7, atol=np.finfo(dtype).tiny)
    assert y[0] == -1 and y[-1] == 1 and dx[0] == 0 and dx[-1] == 0 and dx[5] == 1


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(TanH, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(TanH, [(2, 3, 4)])
    fresh, _ = lh.make_layer(TanH, [(5, 3, 2)])
    assert layer.reshape([(5, 3, 2)]) == [(5, 3, 2)]
    x, dout = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(TanH, [3 * rng.standard_normal((4, 6))])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(TanH.Params())
