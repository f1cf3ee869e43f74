import math

import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.gradcheck import check_layer, gradcheck
from layerflow.layers.pooling import Pooling
from layerflow.registry import LAYERS


# ---- an independent reference: Caffe's rules written out with plain loops ----------------------

def pooled_size(size, k, s, pad, round_mode="CEIL"):
    """Caffe's PoolingLayer::Reshape, in floating point as Caffe computes it."""
    rounding = math.ceil if round_mode == "CEIL" else math.floor
    n = int(rounding((size + 2 * pad - k) / s)) + 1
    if pad > 0 and (n - 1) * s >= size + pad:
        n -= 1
    return n


def geometry(p, shape):
    """(kh, kw, sh, sw, ph, pw) of a params dict for bottom `shape`."""
    if p.get("global_pooling"):
        kh, kw = shape[2], shape[3]
    else:
        kh = p.get("kernel_h", p.get("kernel_size"))
        kw = p.get("kernel_w", p.get("kernel_size"))
    sh = p.get("stride_h", p.get("stride", 1))
    sw = p.get("stride_w", p.get("stride", 1))
    ph = p.get("pad_h", p.get("pad", 0))
    pw = p.get("pad_w", p.get("pad", 0))
    return kh, kw, sh, sw, ph, pw


def reference_pool(x, p):
    """(top, mask or None) of MAX or AVE pooling, one window at a time."""
    n_img, n_ch, height, width = x.shape
    kh, kw, sh, sw, ph, pw = geometry(p, x.shape)
    rm = p.get("round_mode", "CEIL")
    out_h, out_w = pooled_size(height, kh, sh, ph, rm), pooled_size(width, kw, sw, pw, rm)
    top = np.zeros((n_img, n_ch, out_h, out_w))
    mask = np.full(top.shape, -1.0)
    for n in range(n_img):
        for c in range(n_ch):
            for i in range(out_h):
                for j in range(out_w):
                    h0, w0 = i * sh - ph, j * sw - pw
                    if p.get("pool", "MAX") == "MAX":
                        best, where = -np.inf, None
                        for h in range(h0, h0 + kh):          # row-major, padding skipped
                            for w in range(w0, w0 + kw):
                                if 0 <= h < height and 0 <= w < width and x[n, c, h, w] > best:
                                    best, where = x[n, c, h, w], h * width + w
                        top[n, c, i, j], mask[n, c, i, j] = best, where
                    else:
                        h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
                        divisor = (h1 - h0) * (w1 - w0)     # padding counts, overhang does not
                        cells = x[n, c, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
                        top[n, c, i, j] = cells.sum() / divisor
    return top, (mask if p.get("pool", "MAX") == "MAX" else None)


def reference_ave_backward(dout, x_shape, p):
    n_img, n_ch, height, width = x_shape
    kh, kw, sh, sw, ph, pw = geometry(p, x_shape)
    dx = np.zeros(x_shape)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
            share = dout[:, :, i, j] / ((h1 - h0) * (w1 - w0))
            dx[:, :, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)] += \
                share[:, :, None, None]
    return dx


def scatter(dout, mask, x_shape):
    """dx with dout added at the flat plane index `mask` of each window."""
    dx = np.zeros(x_shape)
    width = x_shape[3]
    for n, c, i, j in np.ndindex(*dout.shape):
        k = int(mask[n, c, i, j])
        dx[n, c, k // width, k % width] += dout[n, c, i, j]
    return dx


def distinct(rng, shape, gap=0.1):
    """Values at least `gap` apart, in random order: no max tie, and no central difference of
    step 1e-3 changes which cell is a window's maximum."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * gap - 1.0


# (bottom shape, params); ids say which Caffe rule each case exercises
CASES = [
    ((2, 3, 9, 9), {"kernel_size": 3, "stride": 2}),                          # ceil, overlap
    ((2, 2, 8, 8), {"kernel_size": 3, "stride": 2}),                          # ceil overhang
    ((2, 2, 8, 8), {"kernel_size": 3, "stride": 2, "round_mode": "FLOOR"}),   # floor != ceil
    ((1, 2, 3, 3), {"kernel_size": 2, "stride": 2, "pad": 1}),                # last window dropped
    ((1, 2, 4, 4), {"kernel_size": 3, "stride": 3, "pad": 2}),                # dropped, pad 2
    ((2, 2, 5, 6), {"kernel_size": 3, "stride": 2, "pad": 1}),                # border divisors
    ((1, 3, 7, 6), {"kernel_h": 3, "kernel_w": 2, "stride_h": 1, "stride_w": 2,
                    "pad_h": 1, "pad_w": 0}),                                  # rectangular
    ((2, 2, 5, 7), {"kernel_h": 2, "kernel_w": 4, "stride_h": 3, "stride_w": 1,
                    "round_mode": "FLOOR"}),
    ((2, 3, 4, 5), {"global_pooling": True}),
    ((1, 1, 2, 2), {"kernel_size": 3, "stride": 2}),                          # kernel > input
]
IDS = ["k3s2", "k3s2-overhang", "k3s2-floor", "pad-drop", "pad2-drop", "pad1-border",
       "rect-pad", "rect-floor", "global", "kernel-gt-input"]


def with_pool(p, pool):
    return {**p, "pool": pool}


def test_registered():
    assert LAYERS.get("Pooling") is Pooling


def test_reference_rounding_rules():
    """The cases above cover what they claim (so the comparisons below can fail)."""
    assert pooled_size(8, 3, 2, 0, "CEIL") == 4 and pooled_size(8, 3, 2, 0, "FLOOR") == 3
    assert math.ceil((3 + 2 - 2) / 2) + 1 == 3 and pooled_size(3, 2, 2, 1) == 2
    assert math.ceil((4 + 4 - 3) / 3) + 1 == 3 and pooled_size(4, 3, 3, 2) == 2


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("shape,p", CASES, ids=IDS)
def test_forward_matches_reference(lh, rng, shape, p, pool):
    p = with_pool(p, pool)
    layer, tops = lh.make_layer(Pooling, [shape], **p)
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    ref, _ = reference_pool(x, p)
    assert tops == [ref.shape]
    np.testing.assert_allclose(y, ref, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape,p", CASES, ids=IDS)
def test_max_mask_top_matches_reference(lh, rng, shape, p):
    layer, tops = lh.make_layer(Pooling, [shape], top_names=["pool", "mask"], **p)
    x = np.round(rng.standard_normal(shape) * 2)   # few distinct values: many ties
    y, mask = layer.forward([x])
    ref, ref_mask = reference_pool(x, p)
    assert tops == [ref.shape, ref.shape]
    assert mask.dtype == np.float64
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(mask, ref_mask)


def test_hand_computed_3x3_kernel2_stride2(lh):
    x = np.array([[1.0, 9.0, 2.0], [4.0, 3.0, 8.0], [7.0, 5.0, 6.0]])[None, None]
    layer, tops = lh.make_layer(Pooling, [x.shape], top_names=["y", "mask"], kernel_size=2,
                                stride=2)
    assert tops == [(1, 1, 2, 2)] * 2          # CEIL: ceil((3 - 2) / 2) + 1 = 2
    y, mask = layer.forward([x])
    np.testing.assert_array_equal(y[0, 0], [[9.0, 8.0], [7.0, 6.0]])
    np.testing.assert_array_equal(mask[0, 0], [[1.0, 5.0], [6.0, 8.0]])
    (dx,) = layer.backward([np.array([[10.0, 20.0], [30.0, 40.0]])[None, None], None])
    np.testing.assert_array_equal(dx[0, 0], [[0, 10, 0], [0, 0, 20], [30, 0, 40]])

    ave, _ = lh.make_layer(Pooling, [x.shape], kernel_size=2, stride=2, pool="AVE")
    (y,) = ave.forward([x])
    # the right and bottom windows overhang the image: divisors 2, 2 and 1, not 4
    np.testing.assert_array_equal(y[0, 0], [[17 / 4, 10 / 2], [12 / 2, 6 / 1]])
    (dx,) = ave.backward([np.array([[4.0, 2.0], [2.0, 1.0]])[None, None]])
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 1], [1, 1, 1], [1, 1, 1]])

    floor, tops = lh.make_layer(Pooling, [x.shape], kernel_size=2, stride=2,
                                round_mode="FLOOR")
    assert tops == [(1, 1, 1, 1)]
    np.testing.assert_array_equal(floor.forward([x])[0], [[[[9.0]]]])


def test_hand_computed_padding_drops_last_window(lh):
    x = np.array([[1.0, 9.0, 2.0], [4.0, 3.0, 8.0], [7.0, 5.0, 6.0]])[None, None]
    # ceil((3 + 2 - 2) / 2) + 1 = 3 windows, but the third would start at row 3 = H + pad - 0
    mx, tops = lh.make_layer(Pooling, [x.shape], top_names=["y", "m"], kernel_size=2,
                             stride=2, pad=1)
    assert tops == [(1, 1, 2, 2)] * 2
    y, mask = mx.forward([x])
    np.testing.assert_array_equal(y[0, 0], [[1.0, 9.0], [7.0, 8.0]])
    np.testing.assert_array_equal(mask[0, 0], [[0.0, 1.0], [6.0, 5.0]])
    ave, _ = lh.make_layer(Pooling, [x.shape], kernel_size=2, stride=2, pad=1, pool="AVE")
    # every window counts its padding cells: divisor 4 everywhere
    np.testing.assert_array_equal(ave.forward([x])[0][0, 0], [[1 / 4, 11 / 4], [11 / 4, 22 / 4]])


def test_hand_computed_ave_divisors_padding_and_overhang(lh):
    """4x4 ones, kernel 3, stride 2, pad 1: rows per window in the image 2, 3, 1; divisors
    3 (a padding row counts), 3, and 2 (the third window reaches H + pad = 5 and no further)."""
    layer, tops = lh.make_layer(Pooling, [(1, 1, 4, 4)], kernel_size=3, stride=2, pad=1,
                                pool="AVE")
    assert tops == [(1, 1, 3, 3)]
    (y,) = layer.forward([np.ones((1, 1, 4, 4))])
    expected = [[4 / 9, 6 / 9, 2 / 6], [6 / 9, 9 / 9, 3 / 6], [2 / 6, 3 / 6, 1 / 4]]
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-15)


def test_max_padding_never_wins(lh, rng):
    x = -1.0 - rng.random((1, 2, 4, 4))                     # every value below the padding's 0
    layer, _ = lh.make_layer(Pooling, [x.shape], kernel_size=3, stride=2, pad=1)
    (y,) = layer.forward([x])
    assert (y < -1.0).all()
    np.testing.assert_array_equal(y, reference_pool(x, {"kernel_size": 3, "stride": 2,
                                                        "pad": 1})[0])


def test_max_ties_go_to_the_first_in_row_major_order(lh):
    x = np.array([[0.0, 5.0, 5.0], [5.0, 5.0, 1.0], [2.0, 2.0, 2.0]])[None, None]
    layer, _ = lh.make_layer(Pooling, [x.shape], top_names=["y", "m"], kernel_size=2, stride=1)
    _, mask = layer.forward([x])
    np.testing.assert_array_equal(mask[0, 0], [[1, 1], [3, 4]])


@pytest.mark.parametrize("shape,p", CASES, ids=IDS)
def test_max_backward_scatters_to_the_argmax(lh, rng, shape, p):
    layer, _ = lh.make_layer(Pooling, [shape], **p)
    x = np.round(rng.standard_normal(shape) * 2)   # ties: the first max gets the gradient
    (y,) = layer.forward([x])
    dout = rng.standard_normal(y.shape)
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, scatter(dout, reference_pool(x, p)[1], shape), rtol=1e-14)


@pytest.mark.parametrize("shape,p", CASES, ids=IDS)
def test_ave_backward_matches_reference(lh, rng, shape, p):
    p = with_pool(p, "AVE")
    layer, _ = lh.make_layer(Pooling, [shape], **p)
    layer.forward([rng.standard_normal(shape)])
    dout = rng.standard_normal(layer.top.shape)
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, reference_ave_backward(dout, shape, p), rtol=1e-13)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("shape,p", CASES[:9], ids=IDS[:9])
def test_gradients(rng, shape, p, pool):
    x = distinct(rng, shape) if pool == "MAX" else rng.standard_normal(shape)
    res = gradcheck(Pooling, [x], with_pool(p, pool))
    assert res["bottom[0]"].checked == x.size and res["bottom[0]"].skipped == 0


def test_gradcheck_catches_a_wrong_max_gradient(rng):
    """The check above can fail: ties crossed by the finite difference break it."""
    x = np.zeros((1, 1, 2, 2))
    res = check_layer(Pooling, [x], {"kernel_size": 2})
    assert not res.ok


def test_mask_top_has_no_gradient_and_backward_ignores_its_diff(lh, rng):
    shape = (2, 2, 5, 5)
    x = distinct(rng, shape)
    one, _ = lh.make_layer(Pooling, [shape], kernel_size=3, stride=2)
    two, _ = lh.make_layer(Pooling, [shape], top_names=["y", "m"], kernel_size=3, stride=2)
    one.forward([x])
    two.forward([x])
    dout = rng.standard_normal(one.top.shape)
    np.testing.assert_array_equal(one.backward([dout])[0],
                                  two.backward([dout, rng.standard_normal(dout.shape)])[0])


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Pooling, [(1, 1, 4, 4)], kernel_size=2, stride=2,
                             propagate_down=[False])
    layer.forward([rng.standard_normal((1, 1, 4, 4))])
    assert layer.backward([np.ones((1, 1, 2, 2))]) == [None]


# ---- STOCHASTIC --------------------------------------------------------------------------------

def stochastic_layer(lh, shape, phase="train", seed=0, **p):
    layer, tops = lh.make_layer(Pooling, [shape], pool="STOCHASTIC", seed=seed, **p)
    layer.phase = phase
    return layer, tops


def test_stochastic_train_frequencies_follow_the_activations(lh):
    """One 2x3 window repeated on 30000 planes: each cell is drawn with probability
    x / sum(x); zero cells never (Caffe's draw is in (0, 1])."""
    values = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0]])
    planes = 30000
    x = np.broadcast_to(values, (1, planes, 2, 3)).copy()
    layer, tops = stochastic_layer(lh, x.shape, kernel_h=2, kernel_w=3)
    assert tops == [(1, planes, 1, 1)]
    (y,) = layer.forward([x])
    counts = np.array([(y == v).sum() for v in values.ravel()])
    expected = values.ravel() / values.sum()
    assert counts[0] == 0 and counts[4] == 0
    sigma = np.sqrt(expected * (1 - expected) / planes)
    assert np.all(np.abs(counts / planes - expected) <= 5 * sigma + 1e-12), counts / planes


def test_stochastic_train_outputs_a_window_value_and_sends_the_gradient_there(lh, rng):
    shape = (2, 3, 7, 6)
    x = rng.permutation(np.prod(shape)).reshape(shape) + 1.0   # positive, distinct
    layer, _ = stochastic_layer(lh, shape, kernel_size=3, stride=2)
    (y,) = layer.forward([x])
    positions = np.zeros(y.shape, int)
    for n, c, i, j in np.ndindex(*y.shape):
        window = x[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
        hits = np.argwhere(window == y[n, c, i, j])
        assert len(hits) == 1                      # the output is one cell of its window
        h, w = hits[0] + (2 * i, 2 * j)
        positions[n, c, i, j] = h * shape[3] + w
    dout = rng.standard_normal(y.shape)
    (dx,) = layer.backward([dout])
    np.testing.assert_allclose(dx, scatter(dout, positions, shape), rtol=1e-14)
    assert np.count_nonzero(dx) <= y.size


def test_stochastic_train_is_reproducible_from_the_seed(lh, rng):
    shape = (2, 4, 6, 6)
    x = rng.random(shape)
    first = [stochastic_layer(lh, shape, seed=7, kernel_size=2, stride=2)[0] for _ in range(2)]
    other, _ = stochastic_layer(lh, shape, seed=8, kernel_size=2, stride=2)
    y0, y1 = (np.array(layer.forward([x])[0]) for layer in first)
    np.testing.assert_array_equal(y0, y1)
    assert not np.array_equal(y0, other.forward([x])[0])
    # the next forward draws again
    assert not np.array_equal(y0, first[0].forward([x])[0])


def test_stochastic_train_gradients(rng):
    x = rng.random((1, 2, 5, 5)) + 0.5
    res = gradcheck(Pooling, [x], {"pool": "STOCHASTIC", "kernel_size": 3, "stride": 2})
    assert res["bottom[0]"].checked == x.size


def test_stochastic_running_sum_never_reaching_the_threshold_takes_the_last_cell(lh):
    """Sum -1, threshold u * -1 in [-1, 0): the running sums -4, -3, -2, -1 stay below it
    (Caffe leaves such a window's output unset; here the last cell is taken)."""
    x = np.array([[-4.0, 1.0], [1.0, 1.0]])[None, None]
    layer, _ = stochastic_layer(lh, x.shape, kernel_size=2)
    for _ in range(5):
        np.testing.assert_array_equal(layer.forward([x])[0], [[[[1.0]]]])
        np.testing.assert_array_equal(layer.backward([np.full((1, 1, 1, 1), 2.0)])[0],
                                      [[[[0.0, 0.0], [0.0, 2.0]]]])


def reference_stochastic_test(x, k, s):
    n_img, n_ch, height, width = x.shape
    out_h, out_w = pooled_size(height, k, s, 0), pooled_size(width, k, s, 0)
    out = np.zeros((n_img, n_ch, out_h, out_w))
    for n, c, i, j in np.ndindex(*out.shape):
        window = x[n, c, i * s:i * s + k, j * s:j * s + k]
        out[n, c, i, j] = (window ** 2).sum() / window.sum() if window.sum() > 0 else 0.0
    return out


def test_stochastic_test_phase_is_the_weighted_average(lh, rng):
    shape = (2, 3, 7, 8)
    x = rng.random(shape)
    x[0, 0, :3, :3] = 0.0                                      # a window with sum 0 -> 0
    layer, tops = stochastic_layer(lh, shape, phase="test", kernel_size=3, stride=2)
    (y,) = layer.forward([x])
    assert y[0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(y, reference_stochastic_test(x, 3, 2), rtol=1e-14)
    # the test phase draws nothing
    state = layer.rng.bit_generator.state
    layer.forward([x])
    assert layer.rng.bit_generator.state == state


def test_stochastic_test_phase_gradients(lh, rng):
    shape = (1, 2, 5, 6)
    layer, _ = stochastic_layer(lh, shape, phase="test", kernel_size=3, stride=2)
    x = rng.random(shape) + 0.2
    res = check_layer(layer, [x], setup=False).assert_ok()
    assert res["bottom[0]"].checked == x.size


# ---- shapes, reshape, dtypes, config -----------------------------------------------------------

@pytest.mark.parametrize("shape,p,top", [
    ((2, 3, 32, 32), {"kernel_size": 3, "stride": 2}, (2, 3, 16, 16)),
    ((2, 3, 32, 32), {"kernel_size": 3, "stride": 2, "round_mode": "FLOOR"}, (2, 3, 15, 15)),
    ((4, 20, 24, 24), {"kernel_size": 2, "stride": 2}, (4, 20, 12, 12)),
    ((1, 1, 3, 3), {"kernel_size": 2, "stride": 2, "pad": 1}, (1, 1, 2, 2)),
    ((1, 1, 4, 4), {"kernel_size": 3, "stride": 3, "pad": 2}, (1, 1, 2, 2)),
    ((1, 1, 5, 7), {"kernel_h": 3, "kernel_w": 2, "stride_h": 2, "stride_w": 3}, (1, 1, 2, 3)),
    ((2, 3, 5, 6), {"global_pooling": True}, (2, 3, 1, 1)),
    ((1, 1, 5, 5), {"kernel_size": 2, "pad_h": 1, "pad_w": 0}, (1, 1, 6, 4)),
])
def test_shapes(lh, shape, p, top):
    layer, tops = lh.make_layer(Pooling, [shape], **p)
    assert tops == [top]
    kh, kw = geometry(p, shape)[:2]
    assert layer.flops([shape]) == int(np.prod(top)) * kh * kw


@pytest.mark.parametrize("p", [
    {"kernel_size": 3, "stride": 2},
    {"kernel_size": 3, "stride": 2, "pad": 1, "pool": "AVE"},
    {"global_pooling": True},
    {"global_pooling": True, "pool": "AVE"},
    {"kernel_size": 2, "stride": 2, "pool": "STOCHASTIC"},
])
def test_reshape_to_another_batch_and_size_equals_a_fresh_layer(lh, rng, p):
    layer, _ = lh.make_layer(Pooling, [(2, 3, 7, 7)], **p)
    layer.forward([rng.standard_normal((2, 3, 7, 7))])
    new = (3, 3, 9, 8)
    assert layer.reshape([new]) == lh.make_layer(Pooling, [new], **p)[1]
    fresh, _ = lh.make_layer(Pooling, [new], **p)
    fresh.rng = np.random.default_rng(5)
    layer.rng = np.random.default_rng(5)
    x = rng.random(new) + 0.1
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    dout = rng.standard_normal(fresh.top.shape)
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_global_pooling_rereads_the_plane_size(lh, rng):
    layer, _ = lh.make_layer(Pooling, [(2, 3, 4, 5)], global_pooling=True, pool="AVE")
    assert layer.reshape([(1, 3, 6, 2)]) == [(1, 3, 1, 1)]
    x = rng.standard_normal((1, 3, 6, 2))
    np.testing.assert_allclose(layer.forward([x])[0][:, :, 0, 0], x.mean(axis=(2, 3)),
                               rtol=1e-14)


@pytest.mark.parametrize("p", [
    {"kernel_size": 3, "stride": 2},
    {"kernel_size": 3, "stride": 2, "pad": 1, "pool": "AVE"},
    {"kernel_h": 3, "kernel_w": 2, "stride_h": 1, "stride_w": 2, "pad_h": 1, "pad_w": 1},
    {"kernel_size": 2, "stride": 2, "pool": "STOCHASTIC"},
])
def test_float32_matches_float64(lh, rng, p):
    lh.assert_float32_matches(Pooling, [rng.random((2, 3, 9, 8)) + 0.1], **p)


def test_float32_stochastic_test_phase_matches_float64(lh, rng):
    x = rng.random((2, 3, 9, 8))
    l64, _ = stochastic_layer(lh, x.shape, phase="test", kernel_size=3, stride=2)
    l32, _ = lh.make_layer(Pooling, [x.shape], dtype=np.float32, pool="STOCHASTIC",
                           kernel_size=3, stride=2)
    l32.phase = "test"
    lh.assert_close_rel(l32.forward([x.astype(np.float32)])[0], l64.forward([x])[0], 1e-5)


@pytest.mark.parametrize("p", [
    {},
    {"pool": "AVE", "kernel_size": 3, "stride": 2, "pad": 1, "round_mode": "FLOOR"},
    {"kernel_h": 3, "kernel_w": 2, "stride_h": 1, "stride_w": 2, "pad_h": 1, "pad_w": 0},
    {"pool": "STOCHASTIC", "global_pooling": True},
])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Pooling.Params(**p))


def test_in_a_net_with_the_mask_top():
    net = lf.Net.from_string(
        "name: pool\n"
        "force_backward: true\n"
        "layers:\n"
        "  - {name: data, type: Input, shape: [2, 3, 5, 5]}\n"
        "  - {name: pool, type: Pooling, bottom: data, top: [pool, argmax], kernel_size: 3,"
        " stride: 2}\n")
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    out = net.forward({"data": x})
    ref, mask = reference_pool(x.astype(np.float64), {"kernel_size": 3, "stride": 2})
    np.testing.assert_array_equal(out["pool"], ref.astype(np.float32))
    np.testing.assert_array_equal(out["argmax"], mask)
    net.backward({"pool": np.ones((2, 3, 2, 2), np.float32)})
    assert net.blobs["data"].diff.sum() == 2 * 3 * 4


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("p,shape,pattern", [
    ({"kernel_size": 3, "kernel_h": 2}, (1, 1, 5, 5),
     r"kernel_size: give kernel_size or both kernel_h and kernel_w, not both "
     r"\(got kernel_size=3, kernel_h=2\)"),
    ({"kernel_h": 2}, (1, 1, 5, 5), r"kernel_h/kernel_w: give both .*\(got kernel_h=2\)"),
    ({}, (1, 1, 5, 5), r"kernel_size: missing"),
    ({"global_pooling": True, "kernel_size": 2}, (1, 1, 5, 5),
     r"global_pooling: .*remove kernel_size=2"),
    ({"global_pooling": True, "pad": 1}, (1, 1, 5, 5),
     r"global_pooling: needs pad 0 and stride 1, got pad \(1, 1\) and stride \(1, 1\)"),
    ({"global_pooling": True, "stride_h": 2, "stride_w": 1}, (1, 1, 5, 5),
     r"global_pooling: .*stride \(2, 1\)"),
    ({"kernel_size": 2, "pad": 1, "pool": "STOCHASTIC"}, (1, 1, 5, 5),
     r"pad: padding works only with pool MAX or AVE, got pool STOCHASTIC"),
    ({"kernel_size": 2, "pad": 2}, (1, 1, 5, 5),
     r"pad: must be smaller than kernel_size, got pad=2 and kernel_size=2"),
    ({"kernel_h": 3, "kernel_w": 2, "pad_h": 1, "pad_w": 2}, (1, 1, 5, 5),
     r"pad_w: must be smaller than kernel_w, got pad_w=2 and kernel_w=2"),
    ({"kernel_size": 2, "pad": 1, "pad_h": 1, "pad_w": 1}, (1, 1, 5, 5),
     r"pad: give pad or both pad_h and pad_w, not both"),
    ({"kernel_size": 2, "stride_w": 2}, (1, 1, 5, 5),
     r"stride_h/stride_w: give both stride_h and stride_w, or stride \(got stride_w=2\)"),
    ({"kernel_size": 2}, (2, 5, 5), r"bottom b0 has shape \(2, 5, 5\); Pooling needs 4 axes"),
    ({"kernel_size": 2}, (1, 2, 3, 5, 5), r"bottom b0 has shape \(1, 2, 3, 5, 5\)"),
    ({"kernel_size": 4}, (1, 1, 3, 5),
     r"kernel 4 leaves no window on the input height 3 \+ 2\*0 padding \(stride 1, "
     r"round_mode CEIL\) of bottom shape \(1, 1, 3, 5\)"),
    ({"kernel_size": 1, "stride": 2}, (1, 1, 8, 8),
     r"stride 2 > kernel 1 .*last window \(start 8\) outside the input height 8"),
])
def test_errors_name_layer_key_and_values(lh, p, shape, pattern):
    with pytest.raises(UserError, match=r"^layer pool1 \(Pooling\): " + pattern):
        lh.make_layer(Pooling, [shape], name="pool1", **p)


def test_a_second_top_needs_pool_max(lh):
    with pytest.raises(UserError, match=r"layer pool1 \(Pooling\): pool: a second top .* "
                                        r"got pool AVE with tops \['y', 'mask'\]"):
        lh.make_layer(Pooling, [(1, 1, 4, 4)], name="pool1", top_names=["y", "mask"],
                      kernel_size=2, pool="AVE")


def test_floor_avoids_the_empty_window_error(lh):
    assert lh.make_layer(Pooling, [(1, 1, 8, 8)], kernel_size=1, stride=2,
                         round_mode="FLOOR")[1] == [(1, 1, 4, 4)]


def test_reshape_rejects_an_input_too_small_for_the_kernel(lh):
    layer, _ = lh.make_layer(Pooling, [(1, 1, 6, 6)], name="pool1", kernel_size=3,
                             round_mode="FLOOR")
    with pytest.raises(UserError, match=r"layer pool1 .*kernel 3 leaves no window on the input "
                                        r"width 2 .*round_mode FLOOR"):
        layer.reshape([(1, 1, 6, 2)])


@pytest.mark.parametrize("p", [{"kernel_size": 0}, {"stride": 0}, {"pad": -1},
                               {"kernel_h": 0, "kernel_w": 2}, {"pool": "MIN"},
                               {"round_mode": "UP"}, {"kernel": 3}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Pooling.Params(**p)


def test_yaml_errors_point_at_the_layer():
    with pytest.raises(UserError, match=r"pool.*pad: must be smaller than kernel_size"):
        lf.Net.from_string("name: n\nlayers:\n  - {name: data, type: Input, shape: [1, 1, 4, 4]}\n"
                           "  - {name: pool, type: Pooling, kernel_size: 2, pad: 2}\n")
