import numpy as np
import pytest
from pydantic import ValidationError

from layerflow.gradcheck import gradcheck
from layerflow.layers.elu import ELU
from layerflow.registry import LAYERS

ALPHAS = [1.0, 0.5, 2.0]


def away_from_zero(rng, shape, gap=0.1):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 3.0, size=shape)


def reference(x, alpha):
    """x for x > 0, alpha (e^x - 1) otherwise (exp of the negative part only)."""
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


def test_registered():
    assert LAYERS.get("ELU") is ELU and ELU.kink == 0.0


@pytest.mark.parametrize("alpha", ALPHAS)
def test_forward_matches_reference(lh, rng, alpha):
    layer, _ = lh.make_layer(ELU, [(3, 4)], alpha=alpha)
    x = 2 * rng.standard_normal((3, 4))
    x[0, 0] = 0.0
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, alpha), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_backward_closed_form(lh, rng, alpha):
    layer, _ = lh.make_layer(ELU, [(2, 5)], alpha=alpha)
    x = 2 * rng.standard_normal((2, 5))
    x[0, 0] = 0.0  # Caffe: x <= 0 takes the y + alpha branch, alpha at 0
    dout = rng.standard_normal((2, 5))
    layer.forward([x])
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, dout * np.where(x > 0, 1.0, alpha * np.exp(x)), rtol=1e-14)
    assert dx[0, 0] == dout[0, 0] * alpha


@pytest.mark.parametrize("alpha", ALPHAS)
def test_gradients(rng, alpha):
    res = gradcheck(ELU, [away_from_zero(rng, (3, 5))], {"alpha": alpha})
    assert res.entries[0].checked == 15 and res.entries[0].skipped == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs(lh, dtype):
    x = np.array([-1e4, -100.0, -1e-8, 0.0, 1e-8, 100.0, 1e30], dtype)
    layer, _ = lh.make_layer(ELU, [x.shape], dtype=dtype)
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x.astype(np.float64), 1.0), rtol=1e-6)
    assert y[2] == pytest.approx(-1e-8, rel=1e-6)  # expm1: no cancellation near 0


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(ELU, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(ELU, [(2, 3)], alpha=0.7)
    fresh, _ = lh.make_layer(ELU, [(4, 2, 2)], alpha=0.7)
    assert layer.reshape([(4, 2, 2)]) == [(4, 2, 2)]
    x, dout = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_float32_matches_float64(lh, rng, alpha):
    lh.assert_float32_matches(ELU, [2 * rng.standard_normal((4, 6))], alpha=alpha)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_config_roundtrip(lh, alpha):
    lh.assert_roundtrip(ELU.Params(alpha=alpha))
    with pytest.raises(ValidationError):
        ELU.Params(slope=alpha)
