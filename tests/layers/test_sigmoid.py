import numpy as np
import pytest

from layerflow.gradcheck import gradcheck
from layerflow.layers.sigmoid import Sigmoid
from layerflow.registry import LAYERS

EXTREME = np.array([-1e4, -200.0, -100.0, -88.0, -20.0, -1.0, 0.0, 1.0, 20.0, 88.0, 100.0,
                    200.0, 1e4])


def reference(x):
    """1 / (1 + exp(-x)) in float64; exp overflowing to inf gives the right limit 0."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_registered():
    assert LAYERS.get("Sigmoid") is Sigmoid


def test_forward_matches_reference(lh, rng):
    layer, _ = lh.make_layer(Sigmoid, [(3, 4)])
    x = 3 * rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x), rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_shapes(lh, shape):
    assert lh.make_layer(Sigmoid, [shape])[1] == [shape]


def test_gradients(rng):
    res = gradcheck(Sigmoid, [2 * rng.standard_normal((3, 4))])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == 12


def test_backward_uses_cached_output_not_input(lh, rng):
    layer, _ = lh.make_layer(Sigmoid, [(2, 3)])
    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal((2, 3))
    y = reference(x)
    layer.forward([x])
    x[...] = 100.0  # the net may reuse the bottom's memory; backward must not read it
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, dout * y * (1 - y), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_large_inputs(lh, dtype):
    layer, _ = lh.make_layer(Sigmoid, [EXTREME.shape], dtype=dtype)
    (y,) = layer.forward([EXTREME.astype(dtype)])
    assert y.dtype == dtype and np.all(np.isfinite(y))
    assert np.all((y >= 0) & (y <= 1)) and np.all(np.diff(y) >= 0)
    tiny = np.finfo(dtype).tiny  # below it float32 is subnormal and loses relative precision
    np.testing.assert_allclose(y, reference(EXTREME), rtol=1e-6, atol=tiny)
    assert y[EXTREME == -100.0][0] > 0  # exp(-100) ~ 4e-44 is representable in both
    (dx,) = layer.backward([np.ones_like(y)])
    assert np.all(np.isfinite(dx)) and np.all(dx >= 0)
    assert dx[EXTREME == 0.0][0] == 0.25


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Sigmoid, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Sigmoid, [4 * rng.standard_normal((4, 6))])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(Sigmoid.Params())
