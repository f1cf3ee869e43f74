import numpy as np
import pytest
from pydantic import ValidationError

from layerflow.gradcheck import gradcheck
from layerflow.layers.exp import Exp
from layerflow.registry import LAYERS

CONFIGS = [{}, {"base": 2.0, "scale": 0.5, "shift": 1.0}, {"base": 0.5, "scale": -1.0,
                                                             "shift": -2.0},
           {"base": -1.0, "scale": 2.0, "shift": 0.3}, {"base": 1.0, "scale": 3.0}]
IDS = ["e", "base2", "base0.5", "e-scaled", "base1"]


def reference(x, base=-1.0, scale=1.0, shift=0.0):
    """base^(shift + scale x) straight from the definition (base -1: e)."""
    z = shift + scale * np.asarray(x, np.float64)
    return np.exp(z) if base == -1 else np.power(base, z)


def test_registered():
    assert LAYERS.get("Exp") is Exp


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_forward_and_backward_closed_form(lh, rng, p):
    layer, _ = lh.make_layer(Exp, [(3, 4)], **p)
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, **p), rtol=1e-14)
    (dx,) = layer.backward([dout])
    base = p.get("base", -1.0)
    ln_base = 1.0 if base == -1 else np.log(base)
    np.testing.assert_allclose(dx, dout * reference(x, **p) * p.get("scale", 1.0) * ln_base,
                               rtol=1e-14, atol=1e-300)


def test_base_one_is_the_constant_one(lh, rng):
    layer, _ = lh.make_layer(Exp, [(2, 2)], base=1.0, scale=5.0, shift=2.0)
    np.testing.assert_array_equal(layer.forward([rng.standard_normal((2, 2))])[0], 1.0)
    np.testing.assert_array_equal(layer.backward([np.ones((2, 2))])[0], 0.0)


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_gradients(rng, p):
    res = gradcheck(Exp, [rng.standard_normal((3, 4))], p)
    assert res.entries[0].checked == 12


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Exp, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_equals_fresh_layer(lh, rng):
    p = {"base": 3.0, "scale": 0.5, "shift": 0.2}
    layer, _ = lh.make_layer(Exp, [(2, 3)], **p)
    fresh, _ = lh.make_layer(Exp, [(4, 1, 2)], **p)
    assert layer.reshape([(4, 1, 2)]) == [(4, 1, 2)]
    x, dout = rng.standard_normal((4, 1, 2)), rng.standard_normal((4, 1, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_float32_matches_float64(lh, rng, p):
    lh.assert_float32_matches(Exp, [2 * rng.standard_normal((4, 6))], **p)


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Exp.Params(**p))


@pytest.mark.parametrize("base", [0.0, -2.0, -0.5])
def test_bad_base_rejected(base):
    with pytest.raises(ValidationError, match=r"base must be -1 \(meaning e\) or positive, "
                                              rf"got base={base}"):
        Exp.Params(base=base)
