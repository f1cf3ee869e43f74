import numpy as np
import pytest
from pydantic import ValidationError

from layerflow.gradcheck import gradcheck
from layerflow.layers.log import Log
from layerflow.registry import LAYERS

# (params, range of x that keeps shift + scale x in [0.2, 5])
CONFIGS = [({}, (0.2, 5.0)),
           ({"base": 10.0, "scale": 2.0, "shift": 1.0}, (-0.4, 2.0)),
           ({"base": 0.5, "scale": -1.0, "shift": 3.0}, (-2.0, 2.8)),
           ({"base": -1.0, "scale": 0.5, "shift": 2.0}, (-3.6, 6.0))]
IDS = ["ln", "log10", "log0.5", "ln-scaled"]


def reference(x, base=-1.0, scale=1.0, shift=0.0):
    """log_base(shift + scale x) = ln(.) / ln(base) (base -1: e)."""
    ln_base = 1.0 if base == -1 else np.log(base)
    with np.errstate(all="ignore"):
        return np.log(shift + scale * np.asarray(x, np.float64)) / ln_base


def test_registered():
    assert LAYERS.get("Log") is Log


@pytest.mark.parametrize("p, xr", CONFIGS, ids=IDS)
def test_forward_and_backward_closed_form(lh, rng, p, xr):
    layer, _ = lh.make_layer(Log, [(3, 4)], **p)
    x = rng.uniform(*xr, size=(3, 4))
    dout = rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, **p), rtol=1e-14, atol=1e-15)
    (dx,) = layer.backward([dout])
    base, scale, shift = p.get("base", -1.0), p.get("scale", 1.0), p.get("shift", 0.0)
    ln_base = 1.0 if base == -1 else np.log(base)
    np.testing.assert_allclose(dx, dout * scale / (ln_base * (shift + scale * x)), rtol=1e-14)


def test_hand_computed(lh):
    layer, _ = lh.make_layer(Log, [(3,)], base=10.0, scale=10.0, shift=0.0)
    np.testing.assert_allclose(layer.forward([np.array([0.1, 1.0, 10.0])])[0], [0.0, 1.0, 2.0],
                               atol=1e-15)


def test_outside_the_domain_gives_nan_and_inf_as_c(lh):
    layer, _ = lh.make_layer(Log, [(3,)])
    (y,) = layer.forward([np.array([-1.0, 0.0, 1.0])])
    assert np.isnan(y[0]) and y[1] == -np.inf and y[2] == 0.0
    (dx,) = layer.backward([np.ones(3)])
    assert dx[0] == -1.0 and dx[1] == np.inf and dx[2] == 1.0


@pytest.mark.parametrize("p, xr", CONFIGS, ids=IDS)
def test_gradients(rng, p, xr):
    # step 1e-4: the central difference's own error, h^2 s^2 / (3 b^2) relative, is ~3e-5 at
    # step 1e-3 for scale 2 near b = 0.2; at 1e-4 it is 100 times smaller (rounding ~1e-12)
    res = gradcheck(Log, [rng.uniform(*xr, size=(3, 4))], p, step=1e-4)
    assert res.entries[0].checked == 12


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Log, [(2, 3)], propagate_down=[False])
    layer.forward([rng.uniform(0.5, 1.0, size=(2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    p = {"base": 3.0, "scale": 0.5, "shift": 2.0}
    layer, _ = lh.make_layer(Log, [(2, 3)], **p)
    fresh, _ = lh.make_layer(Log, [(4, 1, 2)], **p)
    assert layer.reshape([(4, 1, 2)]) == [(4, 1, 2)]
    x, dout = rng.uniform(-1, 1, size=(4, 1, 2)), rng.standard_normal((4, 1, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


@pytest.mark.parametrize("p, xr", CONFIGS, ids=IDS)
def test_float32_matches_float64(lh, rng, p, xr):
    lh.assert_float32_matches(Log, [rng.uniform(*xr, size=(4, 6))], **p)


@pytest.mark.parametrize("p, xr", CONFIGS, ids=IDS)
def test_config_roundtrip(lh, p, xr):
    lh.assert_roundtrip(Log.Params(**p))


@pytest.mark.parametrize("base", [1.0, 0.0, -3.0])
def test_bad_base_rejected(base):
    with pytest.raises(ValidationError, match=r"base must be -1 \(meaning e\) or positive and "
                                              rf"not 1, got base={base}"):
        Log.Params(base=base)
