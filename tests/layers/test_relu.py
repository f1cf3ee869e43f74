import numpy as np
import pytest

from layerflow.gradcheck import gradcheck
from layerflow.layers.relu import ReLU
from layerflow.registry import LAYERS

SLOPES = [0.0, 0.1]


def away_from_zero(rng, shape, gap=0.1):
    """Inputs with |x| >= gap, so no central difference crosses the kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 2.0, size=shape)


def test_registered():
    assert LAYERS.get("ReLU") is ReLU


@pytest.mark.parametrize("slope", SLOPES)
def test_forward_matches_reference(lh, rng, slope):
    layer, tops = lh.make_layer(ReLU, [(3, 2, 4)], negative_slope=slope)
    x = away_from_zero(rng, (3, 2, 4))
    x[0, 0, 0] = 0.0
    (y,) = layer.forward([x])
    np.testing.assert_array_equal(y, np.maximum(x, 0) + slope * np.minimum(x, 0))


@pytest.mark.parametrize("slope", SLOPES)
def test_backward_at_kink_uses_slope(lh, slope):
    layer, _ = lh.make_layer(ReLU, [(3,)], negative_slope=slope)
    layer.forward([np.array([-1.0, 0.0, 1.0])])
    (dx,) = layer.backward([np.array([2.0, 2.0, 2.0])])
    np.testing.assert_array_equal(dx, [2 * slope, 2 * slope, 2.0])


@pytest.mark.parametrize("shape", [(4,), (2, 3, 2)])
def test_shapes(lh, shape):
    assert lh.make_layer(ReLU, [shape])[1] == [shape]


@pytest.mark.parametrize("slope", SLOPES)
def test_gradients(rng, slope):
    res = gradcheck(ReLU, [away_from_zero(rng, (3, 5))], {"negative_slope": slope})
    assert [e.name for e in res.entries] == ["bottom[0]"]
    assert res.entries[0].checked == 15 and res.entries[0].skipped == 0


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(ReLU, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


@pytest.mark.parametrize("slope", SLOPES)
def test_float32_matches_float64(lh, rng, slope):
    lh.assert_float32_matches(ReLU, [rng.standard_normal((4, 6))], negative_slope=slope)


@pytest.mark.parametrize("slope", SLOPES)
def test_config_roundtrip(lh, slope):
    lh.assert_roundtrip(ReLU.Params(negative_slope=slope))
