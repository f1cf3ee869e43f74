import numpy as np
import pytest

from layerflow.gradcheck import gradcheck
from layerflow.layers.bnll import BNLL
from layerflow.registry import LAYERS

EXTREME = np.array([-1e4, -200.0, -100.0, -88.0, -40.0, -1.0, 0.0, 1.0, 40.0, 88.0, 100.0,
                    200.0, 1e4])


def reference(x):
    """log(1 + e^x) = logaddexp(0, x) in float64."""
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def reference_grad(x):
    """sigmoid(x), Caffe's e^m / (1 + e^m) with m = min(x, 50)."""
    e = np.exp(np.minimum(np.asarray(x, np.float64), 50.0))
    return e / (1 + e)


def test_registered():
    assert LAYERS.get("BNLL") is BNLL


def test_forward_and_backward_match_reference(lh, rng):
    layer, _ = lh.make_layer(BNLL, [(3, 4)])
    x = 3 * rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x), rtol=1e-14)
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, dout * reference_grad(x), rtol=1e-14)


def test_gradients(rng):
    res = gradcheck(BNLL, [3 * rng.standard_normal((3, 4))])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_large_inputs(lh, dtype):
    layer, _ = lh.make_layer(BNLL, [EXTREME.shape], dtype=dtype)
    (y,) = layer.forward([EXTREME.astype(dtype)])
    (dx,) = layer.backward([np.ones_like(y)])
    assert y.dtype == dtype and np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    tiny = np.finfo(dtype).tiny  # below it float32 is subnormal and loses relative precision
    np.testing.assert_allclose(y, reference(EXTREME), rtol=1e-6, atol=tiny)
    np.testing.assert_allclose(dx, reference_grad(EXTREME), rtol=1e-6, atol=tiny)
    assert y[EXTREME == 1e4][0] == 1e4 and y[EXTREME == -40.0][0] > 0  # log1p keeps e^-40
    assert np.all(np.diff(y) >= 0) and dx[EXTREME == 0.0][0] == 0.5


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(BNLL, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(BNLL, [(2, 3)])
    fresh, _ = lh.make_layer(BNLL, [(3, 2, 2)])
    assert layer.reshape([(3, 2, 2)]) == [(3, 2, 2)]
    x, dout = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(BNLL, [4 * rng.standard_normal((4, 6))])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(BNLL.Params())
