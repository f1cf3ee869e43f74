import numpy as np
import pytest
from pydantic import ValidationError

from layerflow.gradcheck import gradcheck
from layerflow.layers.power import Power
from layerflow.registry import LAYERS

# (power, scale, shift) and the signs the base b = shift + scale x may take: |b| is drawn in
# [0.2, 3] (fractional and negative powers need b > 0; away from b = 0 for the gradient)
CONFIGS = [
    ((1.0, 1.0, 0.0), "+-"),    # Caffe's defaults: the identity
    ((2.0, 0.5, 1.0), "+-"),    # Caffe's power == 2 branch
    ((1.0, 2.0, -1.0), "+-"),   # power == 1 branch: y = 2x - 1
    ((0.5, 2.0, 3.0), "+"),     # square root
    ((-1.5, 1.0, 0.5), "+"),    # negative fractional power
    ((3.0, -1.0, 0.0), "+-"),   # odd integer power: negative bases are fine
    ((2.5, 1.0, 0.0), "+"),     # shift 0: Caffe's p y / x branch
]
IDS = ["identity", "square", "linear", "sqrt", "pow-1.5", "cube", "pow2.5"]


def reference(x, power, scale, shift):
    with np.errstate(all="ignore"):
        return np.power(shift + scale * np.asarray(x, np.float64), power)


def draw(rng, shape, cfg, signs):
    """x whose base shift + scale x has |b| in [0.2, 3], of the allowed signs."""
    _, scale, shift = cfg
    b = rng.uniform(0.2, 3.0, size=shape)
    if signs == "+-":
        b *= rng.choice([-1.0, 1.0], size=shape)
    return (b - shift) / scale


def test_registered():
    assert LAYERS.get("Power") is Power


@pytest.mark.parametrize("cfg, signs", CONFIGS, ids=IDS)
def test_forward_and_backward_closed_form(lh, rng, cfg, signs):
    power, scale, shift = cfg
    layer, tops = lh.make_layer(Power, [(3, 4)], power=power, scale=scale, shift=shift)
    x = draw(rng, (3, 4), cfg, signs)
    dout = rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    assert tops == [(3, 4)]
    np.testing.assert_allclose(y, reference(x, *cfg), rtol=1e-14)
    (dx,) = layer.backward([dout])
    b = shift + scale * x
    np.testing.assert_allclose(dx, dout * power * scale * b ** (power - 1), rtol=1e-13)


@pytest.mark.parametrize("cfg, signs", CONFIGS, ids=IDS)
def test_gradients(rng, cfg, signs):
    power, scale, shift = cfg
    x = draw(rng, (3, 4), cfg, signs)
    # step 1e-4: the central difference's own error, h^2 |f'''| / 6, is ~1e-5 relative at
    # step 1e-3 for b^-1.5 near b = 0.2; at 1e-4 it is 100 times smaller (rounding ~1e-12)
    res = gradcheck(Power, [x], {"power": power, "scale": scale, "shift": shift}, step=1e-4)
    assert res.entries[0].checked == 12


@pytest.mark.parametrize("p, value", [
    ({"power": 0.0, "scale": 3.0, "shift": -2.0}, 1.0),  # power 0: 1 everywhere
    ({"power": 3.0, "scale": 0.0, "shift": 2.0}, 8.0),   # scale 0: shift^power
    ({"power": -1.0, "scale": 0.0, "shift": 0.0}, np.inf),  # 0^-1, as C's pow
])
def test_constant_special_cases(lh, rng, p, value):
    layer, _ = lh.make_layer(Power, [(2, 3)], **p)
    (y,) = layer.forward([rng.standard_normal((2, 3))])
    np.testing.assert_array_equal(y, value)
    np.testing.assert_array_equal(layer.backward([rng.standard_normal((2, 3))])[0], 0.0)


def test_negative_base_with_fractional_power_is_nan(lh):
    """Decided: NaN as C's pow (so as Caffe), no error: the divergence guard names the layer."""
    layer, _ = lh.make_layer(Power, [(3,)], power=0.5)
    (y,) = layer.forward([np.array([-4.0, 0.0, 4.0])])
    assert np.isnan(y[0]) and y[1] == 0.0 and y[2] == 2.0
    (dx,) = layer.backward([np.ones(3)])
    assert np.isnan(dx[0]) and dx[1] == np.inf and dx[2] == 0.25


@pytest.mark.parametrize("power, want", [(3.0, 0.0), (2.0, 0.0), (2.5, 0.0), (0.5, np.inf)])
def test_gradient_at_a_zero_base_is_the_limit(lh, power, want):
    """Caffe's p y / b is 0 / 0 = NaN at b = 0 (e.g. after a ReLU); here it is the limit."""
    layer, _ = lh.make_layer(Power, [(2,)], power=power, scale=2.0, shift=-2.0)
    layer.forward([np.array([1.0, 2.0])])  # b = 0 and 2
    (dx,) = layer.backward([np.ones(2)])
    assert dx[0] == want
    np.testing.assert_allclose(dx[1], power * 2.0 * 2.0 ** (power - 1), rtol=1e-15)


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Power, [(2, 3)], propagate_down=[False], power=2.0)
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    p = {"power": 3.0, "scale": 0.5, "shift": 0.2}
    layer, _ = lh.make_layer(Power, [(2, 3)], **p)
    fresh, _ = lh.make_layer(Power, [(4, 1, 2)], **p)
    assert layer.reshape([(4, 1, 2)]) == [(4, 1, 2)]
    x, dout = rng.standard_normal((4, 1, 2)), rng.standard_normal((4, 1, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


@pytest.mark.parametrize("cfg, signs", CONFIGS, ids=IDS)
def test_float32_matches_float64(lh, rng, cfg, signs):
    power, scale, shift = cfg
    lh.assert_float32_matches(Power, [draw(rng, (4, 6), cfg, signs)], power=power, scale=scale,
                              shift=shift)


@pytest.mark.parametrize("p", [{}, {"power": 2.0, "scale": -1.0, "shift": 3.0}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Power.Params(**p))


def test_bad_params_rejected():
    with pytest.raises(ValidationError, match="exponent"):
        Power.Params(exponent=2.0)
