import re

import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.lrn import LRN
from layerflow.registry import LAYERS


# ---- independent references: Caffe's formulas with explicit loops ------------------------------

def reference_across(x, local_size=5, alpha=1.0, beta=0.75, k=1.0):
    """scale_c = k + alpha/n * sum of x_j^2 over the n channels centred on c (missing channels
    count as zeros), y = x * scale^-beta."""
    n_img, n_ch = x.shape[:2]
    pre = (local_size - 1) // 2
    scale = np.empty_like(x)
    for n in range(n_img):
        for c in range(n_ch):
            total = np.zeros(x.shape[2:])
            for j in range(c - pre, c + pre + 1):
                if 0 <= j < n_ch:
                    total += x[n, j] ** 2
            scale[n, c] = k + alpha / local_size * total
    return x * scale ** -beta


def reference_within(x, local_size=5, alpha=1.0, beta=0.75):
    """Caffe's sub-layer chain: AVE pooling (kernel n, stride 1, pad (n-1)/2, divisor n*n) of
    x^2, then (1 + alpha * pooled)^-beta, times x."""
    pre = (local_size - 1) // 2
    padded = np.pad(x ** 2, ((0, 0), (0, 0), (pre, pre), (pre, pre)))
    height, width = x.shape[2:]
    pooled = np.zeros_like(x)
    for h in range(height):
        for w in range(width):
            window = padded[:, :, h:h + local_size, w:w + local_size]
            pooled[:, :, h, w] = window.sum(axis=(2, 3)) / local_size ** 2
    return x * (1.0 + alpha * pooled) ** -beta


ACROSS = [{"local_size": 5}, {"local_size": 3, "alpha": 2.0, "beta": 0.6, "k": 2.0},
          {"local_size": 5, "alpha": 0.5, "beta": 0.5, "k": 1.5},
          {"local_size": 3, "alpha": 1e-2, "beta": 1.0, "k": 0.5},
          {"local_size": 1, "alpha": 0.3, "beta": 2.0}]
WITHIN = [{"local_size": 3}, {"local_size": 5, "alpha": 2.0, "beta": 0.6},
          {"local_size": 3, "alpha": 0.5, "beta": 0.5},
          {"local_size": 5, "alpha": 1e-2, "beta": 1.0, "k": 3.0},
          {"local_size": 3, "alpha": 5e-5, "beta": 0.75}]      # cifar10_full's norm1
SHAPE = (2, 7, 4, 5)


def within(p):
    return {**p, "norm_region": "WITHIN_CHANNEL"}


def test_registered():
    assert LAYERS.get("LRN") is LRN


@pytest.mark.parametrize("p", ACROSS)
def test_across_forward_matches_reference(lh, rng, p):
    layer, tops = lh.make_layer(LRN, [SHAPE], **p)
    x = rng.standard_normal(SHAPE) * 2
    assert tops == [SHAPE]
    np.testing.assert_allclose(layer.forward([x])[0], reference_across(x, **p), rtol=1e-13)


@pytest.mark.parametrize("p", WITHIN)
def test_within_forward_matches_reference(lh, rng, p):
    layer, tops = lh.make_layer(LRN, [SHAPE], **within(p))
    x = rng.standard_normal(SHAPE) * 2
    ref = reference_within(x, **{key: v for key, v in p.items() if key != "k"})
    assert tops == [SHAPE]
    np.testing.assert_allclose(layer.forward([x])[0], ref, rtol=1e-13)


def test_across_hand_computed_border_divides_by_n(lh):
    """C = 3, n = 3, alpha = 3 (alpha/n = 1), k = 1, beta = 1, one pixel: x = 1, 2, 3.
    scale = 1 + (0 + 1 + 4), 1 + (1 + 4 + 9), 1 + (4 + 9 + 0): the missing channel is a zero,
    not a reason to divide by 2."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    layer, _ = lh.make_layer(LRN, [x.shape], local_size=3, alpha=3.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(layer.forward([x])[0].ravel(), [1 / 6, 2 / 15, 3 / 14],
                               rtol=1e-15)


def test_within_hand_computed_divides_by_n_squared_and_ignores_k(lh):
    """One 2x2 plane, n = 3 (every window covers all 4 cells and 5 padding cells),
    alpha = 9 (alpha/n^2 = 1), beta = 1: scale = 1 + (1 + 4 + 9 + 16) = 31 everywhere."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    for k in (1.0, 5.0):
        layer, _ = lh.make_layer(LRN, [x.shape], local_size=3, alpha=9.0, beta=1.0, k=k,
                                 norm_region="WITHIN_CHANNEL")
        np.testing.assert_allclose(layer.forward([x])[0], x / 31, rtol=1e-15)


@pytest.mark.parametrize("shape", [(1, 2, 2, 3), (2, 1, 1, 6), (1, 3, 6, 1)])
def test_within_window_larger_than_the_plane(lh, rng, shape):
    x = rng.standard_normal(shape)
    layer, _ = lh.make_layer(LRN, [shape], local_size=5, alpha=2.0, norm_region="WITHIN_CHANNEL")
    np.testing.assert_allclose(layer.forward([x])[0], reference_within(x, 5, 2.0), rtol=1e-13)
    gradcheck(LRN, [x], {"local_size": 5, "alpha": 2.0, "norm_region": "WITHIN_CHANNEL"})


def test_within_corner_window_counts_padding(lh):
    """3x3 plane of ones, n = 3, alpha = 9, beta = 1: a corner sees 4 cells (scale 5),
    an edge 6 (scale 7), the centre 9 (scale 10): the divisor is always 9."""
    layer, _ = lh.make_layer(LRN, [(1, 1, 3, 3)], local_size=3, alpha=9.0, beta=1.0,
                             norm_region="WITHIN_CHANNEL")
    y = layer.forward([np.ones((1, 1, 3, 3))])[0][0, 0]
    np.testing.assert_allclose(y, 1 / np.array([[5, 7, 5], [7, 10, 7], [5, 7, 5]]), rtol=1e-15)


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.3, 2.0])
def test_every_power_path_matches_pow(lh, rng, beta):
    """beta 0.75, 0.5 and 1 take sqrt/division shortcuts; they agree with pow."""
    x = rng.standard_normal(SHAPE) * 3
    for dtype, rel in ((np.float64, 1e-14), (np.float32, 1e-6)):
        layer, _ = lh.make_layer(LRN, [SHAPE], dtype=dtype, local_size=3, beta=beta, k=0.7)
        ref = reference_across(x.astype(dtype).astype(np.float64), 3, 1.0, beta, 0.7)
        lh.assert_close_rel(layer.forward([x.astype(dtype)])[0], ref, rel)


@pytest.mark.parametrize("p", ACROSS)
def test_across_gradients(rng, p):
    x = rng.standard_normal(SHAPE)
    res = gradcheck(LRN, [x], p)
    assert res["bottom[0]"].checked == x.size


@pytest.mark.parametrize("p", WITHIN)
def test_within_gradients(rng, p):
    x = rng.standard_normal(SHAPE) * (10 if p.get("alpha", 1) < 1e-3 else 1)
    res = gradcheck(LRN, [x], within(p))
    assert res["bottom[0]"].checked == x.size


def test_across_backward_matches_caffes_formula(lh, rng):
    """dx_c = dy_c s_c^-beta - (2 alpha beta / n) x_c sum_{|j-c| <= pre} dy_j y_j / s_j."""
    n, alpha, beta, k = 5, 1.5, 0.75, 2.0
    x = rng.standard_normal(SHAPE)
    layer, _ = lh.make_layer(LRN, [SHAPE], local_size=n, alpha=alpha, beta=beta, k=k)
    (y,) = layer.forward([x])
    dy = rng.standard_normal(SHAPE)
    (dx,) = layer.backward([dy])
    scale = k + alpha / n * np.stack([
        sum(x[:, j] ** 2 for j in range(max(c - 2, 0), min(c + 3, SHAPE[1])))
        for c in range(SHAPE[1])], axis=1)
    ratio = dy * y / scale
    expected = dy * scale ** -beta - 2 * alpha * beta / n * x * np.stack([
        sum(ratio[:, j] for j in range(max(c - 2, 0), min(c + 3, SHAPE[1])))
        for c in range(SHAPE[1])], axis=1)
    np.testing.assert_allclose(dx, expected, rtol=1e-12)


def test_large_channel_does_not_swamp_its_neighbours(lh):
    """Window sums are taken per window: after a huge channel leaves the window, the scale of
    the later channels is exact even in float32 (a running add/subtract sum is not)."""
    x = np.full((1, 8, 1, 1), 1e-2, np.float32)
    x[0, 0] = 1e3
    layer, _ = lh.make_layer(LRN, [x.shape], dtype=np.float32, local_size=3, alpha=1.0,
                             beta=1.0, k=1e-3)
    ref = reference_across(x.astype(np.float64), 3, 1.0, 1.0, 1e-3)
    np.testing.assert_allclose(layer.forward([x])[0][0, 3:], ref[0, 3:], rtol=1e-6)


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(LRN, [SHAPE], propagate_down=[False])
    layer.forward([rng.standard_normal(SHAPE)])
    assert layer.backward([np.ones(SHAPE)]) == [None]


@pytest.mark.parametrize("p", [ACROSS[1], within(WITHIN[1])])
def test_reshape_to_another_batch_and_size_equals_a_fresh_layer(lh, rng, p):
    layer, _ = lh.make_layer(LRN, [SHAPE], **p)
    layer.forward([rng.standard_normal(SHAPE)])
    new = (3, 7, 6, 3)
    assert layer.reshape([new]) == [new]
    fresh, _ = lh.make_layer(LRN, [new], **p)
    x, dy = rng.standard_normal(new), rng.standard_normal(new)
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dy])[0], fresh.backward([dy])[0])


@pytest.mark.parametrize("p", ACROSS + [within(p) for p in WITHIN])
def test_float32_matches_float64(lh, rng, p):
    lh.assert_float32_matches(LRN, [rng.standard_normal(SHAPE) * 2], **p)


@pytest.mark.parametrize("p", [{}, ACROSS[1], within(WITHIN[3])])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(LRN.Params(**p))


def test_flops_counts_the_window(lh):
    layer, _ = lh.make_layer(LRN, [SHAPE], local_size=5)
    assert layer.flops([SHAPE]) == int(np.prod(SHAPE)) * (2 * 5 + 6)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_even_local_size_is_a_user_error(lh, region):
    with pytest.raises(UserError, match=r"^layer norm1 \(LRN\): local_size: must be odd, got 4"):
        lh.make_layer(LRN, [SHAPE], name="norm1", local_size=4, norm_region=region)


@pytest.mark.parametrize("shape", [(2, 7, 4), (1, 2, 7, 4, 5)])
def test_bottom_must_have_4_axes(lh, shape):
    with pytest.raises(UserError, match=r"^layer norm1 \(LRN\): bottom b0 has shape "
                                        + re.escape(str(shape)) + r"; LRN needs 4"):
        lh.make_layer(LRN, [shape], name="norm1")


@pytest.mark.parametrize("p", [{"local_size": 0}, {"norm_region": "ACROSS"},
                               {"size": 5}, {"alpha": "big"}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        LRN.Params(**p)
