import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow.gradcheck import check_layer, gradcheck
from layerflow.layers.dropout import Dropout, float32_threshold
from layerflow.registry import LAYERS

SHAPE = (4, 3, 5)


def make(shape=SHAPE, phase="train", dtype=np.float64, seed=0, **params):
    layer = Dropout("drop", Dropout.Params(**params), phase=phase, dtype=dtype,
                    rng=np.random.default_rng(seed), bottom_names=["x"], top_names=["y"])
    layer.build([shape])
    layer.propagate_down = [True]
    return layer


def uniforms(seed, shape, draws=1):
    """The uniforms a layer seeded with `seed` draws, forward after forward (an independent
    generator with the same seed)."""
    g = np.random.default_rng(seed)
    return [g.random(int(np.prod(shape)), dtype=np.float32).reshape(shape)
            for _ in range(draws)]


def test_registered():
    assert LAYERS.get("Dropout") is Dropout


@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.8])
def test_train_forward_keeps_uniform_above_ratio_and_scales(rng, ratio):
    layer = make(dropout_ratio=ratio, seed=7)
    x = rng.standard_normal(SHAPE)
    ys = [layer.forward([x])[0].copy() for _ in range(3)]
    for y, u in zip(ys, uniforms(7, SHAPE, 3)):
        keep = u > ratio
        np.testing.assert_array_equal(y[~keep], 0.0)
        np.testing.assert_allclose(y[keep], x[keep] / (1 - ratio), rtol=1e-15)
    assert not np.array_equal(ys[0], ys[1])  # a new mask every forward


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.7, 0.9, 0.999])
def test_float32_threshold_keeps_exactly_the_uniforms_above_the_ratio(ratio):
    t = float32_threshold(ratio)
    assert t.dtype == np.float32
    up = down = np.float32(ratio)
    near = [up, np.float32(0), np.float32(1 - 2 ** -24)]
    for _ in range(3):  # the float32 grid points right around the ratio
        up, down = np.nextafter(up, np.float32(2)), np.nextafter(down, np.float32(-1))
        near += [up, down]
    u = np.array(near, np.float32)
    np.testing.assert_array_equal(u > t, u.astype(np.float64) > ratio)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_mask_statistics(ratio):
    n = 200_000
    layer = make((n,), dropout_ratio=ratio, seed=3)
    (y,) = layer.forward([np.ones(n)])
    kept = np.count_nonzero(y)
    sigma = np.sqrt(n * ratio * (1 - ratio))
    assert abs(kept - n * (1 - ratio)) < 5 * sigma
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - ratio)], rtol=1e-15)
    # inverted dropout keeps the expectation: the mean stays near 1
    assert abs(y.mean() - 1) < 5 * np.sqrt(ratio / (1 - ratio) / n)
    # the mask is not correlated with position: both halves keep about as many
    half = np.count_nonzero(y[: n // 2])
    assert abs(half - kept / 2) < 5 * np.sqrt(n / 2 * ratio * (1 - ratio))


def test_backward_uses_the_forward_mask_and_scale(rng):
    layer = make(dropout_ratio=0.3, seed=5)
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    (dx,) = layer.backward([dout])
    keep = uniforms(5, SHAPE)[0] > 0.3
    np.testing.assert_allclose(dx, np.where(keep, dout / 0.7, 0.0), rtol=1e-15)


def test_test_phase_is_the_identity_without_copying(rng):
    layer = make(phase="test", dropout_ratio=0.7)
    state = layer.rng.bit_generator.state
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    assert y is x
    (dx,) = layer.backward([dout])
    assert dx is dout
    assert layer.rng.bit_generator.state == state  # nothing drawn


def test_scale_train_false_scales_at_test_time_instead(rng):
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    train = make(dropout_ratio=0.25, scale_train=False, seed=2)
    (y,) = train.forward([x])
    keep = uniforms(2, SHAPE)[0] > 0.25
    np.testing.assert_array_equal(y, np.where(keep, x, 0.0))
    np.testing.assert_array_equal(train.backward([dout])[0], np.where(keep, dout, 0.0))
    test = make(phase="test", dropout_ratio=0.25, scale_train=False)
    (y,) = test.forward([x])
    assert not np.shares_memory(y, x)
    np.testing.assert_allclose(y, 0.75 * x, rtol=1e-15)
    np.testing.assert_allclose(test.backward([dout])[0], 0.75 * dout, rtol=1e-15)


def test_same_seed_same_masks_other_seed_other_masks(rng):
    x = rng.standard_normal(SHAPE)
    a, b, c = make(seed=11), make(seed=11), make(seed=12)
    for _ in range(3):
        ya, yb, yc = (layer.forward([x])[0].copy() for layer in (a, b, c))
        np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(ya, yc)


def test_float32_and_float64_drop_the_same_elements(rng):
    x = rng.standard_normal(SHAPE)
    l32, l64 = make(dtype=np.float32, seed=4), make(dtype=np.float64, seed=4)
    for _ in range(2):
        y32, y64 = l32.forward([x.astype(np.float32)])[0], l64.forward([x])[0]
        assert y32.dtype == np.float32
        np.testing.assert_array_equal(y32 == 0, y64 == 0)
        np.testing.assert_allclose(y32, y64, rtol=1e-6)


NET = """
name: d
layers:
  - {name: data, type: Input, top: x, shape: [[3, 8]]}
  - {name: drop, type: Dropout, dropout_ratio: 0.4}
"""


def test_a_resumed_net_draws_the_masks_it_would_have_drawn(rng):
    x = rng.standard_normal((3, 8))
    straight = lf.Net.from_string(NET, seed=9)
    runs = [straight.forward({"x": x})["drop"] for _ in range(3)]
    first = lf.Net.from_string(NET, seed=9)
    first.forward({"x": x})
    saved = first.state()
    resumed = lf.Net.from_string(NET, seed=9)
    resumed.load_state(saved, "snapshot")
    np.testing.assert_array_equal(resumed.forward({"x": x})["drop"], runs[1])
    np.testing.assert_array_equal(resumed.forward({"x": x})["drop"], runs[2])


@pytest.mark.parametrize("p", [{}, {"dropout_ratio": 0.2}, {"scale_train": False}])
def test_gradients_train_phase(rng, p):
    res = gradcheck(Dropout, [rng.standard_normal(SHAPE)], p)
    assert res["bottom[0]"].checked == np.prod(SHAPE)


@pytest.mark.parametrize("p", [{}, {"scale_train": False}])
def test_gradients_test_phase(rng, p):
    check_layer(make(phase="test", **p), [rng.standard_normal(SHAPE)]).assert_ok()


def test_propagate_down_false(rng):
    layer = make()
    layer.propagate_down = [False]
    layer.forward([rng.standard_normal(SHAPE)])
    assert layer.backward([np.ones(SHAPE)]) == [None]


def test_reshape_to_another_batch_matches_a_fresh_layer(rng):
    layer = make((2, 3, 5), seed=6)
    assert layer.reshape([(7, 3, 5)]) == [(7, 3, 5)]
    fresh = make((7, 3, 5), seed=6)
    x, dout = rng.standard_normal((7, 3, 5)), rng.standard_normal((7, 3, 5))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64_helper(lh, rng):
    lh.assert_float32_matches(Dropout, [rng.standard_normal(SHAPE)], dropout_ratio=0.3)


@pytest.mark.parametrize("p", [{}, {"dropout_ratio": 0.1}, {"scale_train": False}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Dropout.Params(**p))


@pytest.mark.parametrize("p", [{"dropout_ratio": 1.0}, {"dropout_ratio": -0.1},
                               {"ratio": 0.5}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Dropout.Params(**p)
