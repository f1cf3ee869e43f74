import numpy as np
import pytest

from layerflow.gradcheck import check_layer, gradcheck
from layerflow.layers.absval import AbsVal
from layerflow.registry import LAYERS


def away_from_zero(rng, shape, gap=0.1):
    """Inputs with |x| >= gap, so no central difference crosses the kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 2.0, size=shape)


def test_registered():
    assert LAYERS.get("AbsVal") is AbsVal and AbsVal.kink == 0.0


def test_forward_matches_reference(lh, rng):
    layer, _ = lh.make_layer(AbsVal, [(3, 4)])
    x = rng.standard_normal((3, 4))
    x[0, 0] = 0.0
    x[1, 1] = -0.0
    (y,) = layer.forward([x])
    np.testing.assert_array_equal(y, np.where(x < 0, -x, x))
    assert not np.signbit(y).any()


def test_backward_is_sign_and_zero_at_zero(lh):
    layer, _ = lh.make_layer(AbsVal, [(4,)])
    layer.forward([np.array([-2.0, 0.0, -0.0, 3.0])])
    (dx,) = layer.backward([np.array([5.0, 5.0, 5.0, 5.0])])
    np.testing.assert_array_equal(dx, [-5.0, 0.0, 0.0, 5.0])


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_shapes(lh, shape):
    assert lh.make_layer(AbsVal, [shape])[1] == [shape]


def test_gradients(rng):
    res = gradcheck(AbsVal, [away_from_zero(rng, (3, 5))])
    assert res.entries[0].checked == 15 and res.entries[0].skipped == 0


def test_gradient_check_skips_the_kink(rng):
    x = away_from_zero(rng, (2, 3))
    x[0, 1] = 0.0
    res = check_layer(AbsVal, [x])
    assert res.ok and res.entries[0].skipped == 1 and res.entries[0].checked == 5


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(AbsVal, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(AbsVal, [(2, 3)])
    fresh, _ = lh.make_layer(AbsVal, [(4, 3, 2)])
    assert layer.reshape([(4, 3, 2)]) == [(4, 3, 2)]
    x, dout = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(AbsVal, [rng.standard_normal((4, 6))])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(AbsVal.Params())
