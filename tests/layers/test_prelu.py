import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.prelu import PReLU
from layerflow.registry import LAYERS

SHAPE = (2, 3, 2, 2)
SLOPES = {"type": "uniform", "min": -0.5, "max": 0.8}


def away_from_zero(rng, shape, gap=0.1):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 2.0, size=shape)


def reference(x, a):
    """max(x, 0) + a_c min(x, 0) with a broadcast along axis 1 (a of size 1: shared)."""
    a = np.broadcast_to(np.asarray(a), (x.shape[1],))
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.maximum(x, 0) + a * np.minimum(x, 0)


def test_registered():
    assert LAYERS.get("PReLU") is PReLU


@pytest.mark.parametrize("shared", [False, True])
def test_default_slopes_are_a_quarter(lh, shared):
    layer, tops = lh.make_layer(PReLU, [SHAPE], channel_shared=shared)
    w = layer.params["weight"]
    assert tops == [SHAPE] and w.shape == ((1,) if shared else (3,))
    np.testing.assert_array_equal(w.data, 0.25)


@pytest.mark.parametrize("shape", [SHAPE, (4, 3)])
@pytest.mark.parametrize("shared", [False, True])
def test_forward_matches_reference(lh, rng, shape, shared):
    layer, _ = lh.make_layer(PReLU, [shape], channel_shared=shared, filler=SLOPES)
    x = rng.standard_normal(shape)
    x.reshape(-1)[0] = 0.0
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, layer.params["weight"].data), rtol=1e-15)


@pytest.mark.parametrize("shared", [False, True])
def test_backward_closed_form(lh, rng, shared):
    layer, _ = lh.make_layer(PReLU, [SHAPE], channel_shared=shared, filler=SLOPES)
    a = layer.params["weight"].data.copy()
    x = rng.standard_normal(SHAPE)
    x[0, 0, 0, 0] = 0.0  # at the kink: dx takes the slope, as ReLU; adds x * dout = 0 to da
    dout = rng.standard_normal(SHAPE)
    layer.forward([x])
    layer.params["weight"].grad[...] = 0.5  # gradients add to what is there
    (dx,) = layer.backward([dout])
    slope = np.broadcast_to(a, (3,)).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(dx, np.where(x > 0, dout, slope * dout), rtol=1e-14)
    per_channel = (dout * x * (x <= 0)).sum(axis=(0, 2, 3))
    want = per_channel.sum(keepdims=True) if shared else per_channel
    np.testing.assert_allclose(layer.params["weight"].grad, 0.5 + want, rtol=1e-13)


@pytest.mark.parametrize("shape", [SHAPE, (3, 4)])
@pytest.mark.parametrize("shared", [False, True])
def test_gradients(rng, shape, shared):
    res = gradcheck(PReLU, [away_from_zero(rng, shape)],
                    {"channel_shared": shared, "filler": SLOPES})
    assert [e.name for e in res.entries] == ["bottom[0]", "weight"]
    assert res["bottom[0]"].checked == int(np.prod(shape))
    assert res["weight"].checked == (1 if shared else shape[1])


def test_propagate_down_false_still_accumulates_the_slope_gradient(lh, rng):
    layer, _ = lh.make_layer(PReLU, [SHAPE], propagate_down=[False])
    x = rng.standard_normal(SHAPE)
    dout = rng.standard_normal(SHAPE)
    layer.forward([x])
    assert layer.backward([dout]) == [None]
    np.testing.assert_allclose(layer.params["weight"].grad,
                               (dout * x * (x <= 0)).sum(axis=(0, 2, 3)), rtol=1e-13)


@pytest.mark.parametrize("new", [(5, 3, 2, 2), (1, 3, 4, 1)])
def test_reshape_equals_fresh_layer(lh, rng, new):
    layer, _ = lh.make_layer(PReLU, [SHAPE], filler=SLOPES)
    fresh, _ = lh.make_layer(PReLU, [new], filler=SLOPES)
    np.testing.assert_array_equal(layer.params["weight"].data, fresh.params["weight"].data)
    assert layer.reshape([new]) == [new]
    x, dout = rng.standard_normal(new), rng.standard_normal(new)
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])
    np.testing.assert_array_equal(layer.params["weight"].grad, fresh.params["weight"].grad)


def test_shared_slope_takes_any_channel_count(lh, rng):
    layer, _ = lh.make_layer(PReLU, [SHAPE], channel_shared=True)
    assert layer.reshape([(2, 5)]) == [(2, 5)]
    x = rng.standard_normal((2, 5))
    np.testing.assert_allclose(layer.forward([x])[0], reference(x, [0.25]), rtol=1e-15)


def test_other_channel_count_is_a_user_error(lh):
    layer, _ = lh.make_layer(PReLU, [SHAPE], name="prelu1")
    with pytest.raises(UserError, match=r"layer prelu1 \(PReLU\): bottom shape \(2, 4, 2, 2\) "
                                        r"has 4 channels, the weight \(3,\) was made for 3"):
        layer.reshape([(2, 4, 2, 2)])


def test_one_axis_bottom_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer prelu1 \(PReLU\): bottom has shape \(5,\), "
                                        r"needs at least 2 axes"):
        lh.make_layer(PReLU, [(5,)], name="prelu1")


@pytest.mark.parametrize("shared", [False, True])
def test_float32_matches_float64(lh, rng, shared):
    lh.assert_float32_matches(PReLU, [rng.standard_normal(SHAPE)], channel_shared=shared,
                              filler=SLOPES)


@pytest.mark.parametrize("p", [{}, {"channel_shared": True},
                               {"filler": {"type": "constant", "value": 0.1}}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(PReLU.Params(**p))


def test_bad_params_rejected():
    with pytest.raises(ValidationError, match="weight_filler"):
        PReLU.Params(weight_filler={"type": "constant"})
