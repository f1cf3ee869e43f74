"""Convolution against a direct loop definition of Caffe's cross-correlation (pad, stride,
dilation, groups, C's truncating division for the output size), 1-, 2- and 3-D."""
import itertools
import math
import re

import numba
import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.blas import can_serialize_blas
from layerflow.gradcheck import gradcheck
from layerflow.layers.convolution import Convolution
from layerflow.registry import LAYERS

GAUSS = {"type": "gaussian", "std": 1.0}


def out_size(size, k, s, p, d):
    """Caffe's output size: C int division truncates toward zero (math.trunc, not //)."""
    return math.trunc((size + 2 * p - (d * (k - 1) + 1)) / s) + 1


def naive_conv(x, w, b, stride, pad, dilation, group):
    """y[n, o, z] = b[o] + sum_{c, t} w[o, c, t] x[n, g(o) C/G + c, z * stride - pad + t * dil],
    x read as 0 outside the image; x (N, C, *in), w (O, C/G, *k): loops over every index."""
    n_img = x.shape[0]
    o_ch, cg = w.shape[:2]
    kernel = w.shape[2:]
    og = o_ch // group
    outs = [out_size(i, k, s, p, d) for i, k, s, p, d in
            zip(x.shape[2:], kernel, stride, pad, dilation)]
    y = np.zeros((n_img, o_ch, *outs))
    for n in range(n_img):
        for o in range(o_ch):
            g = o // og
            for z in itertools.product(*map(range, outs)):
                acc = b[o] if b is not None else 0.0
                for c in range(cg):
                    for t in itertools.product(*map(range, kernel)):
                        pos = [zi * s - p + ti * d for zi, ti, s, p, d in
                               zip(z, t, stride, pad, dilation)]
                        if all(0 <= q < size for q, size in zip(pos, x.shape[2:])):
                            acc += w[(o, c) + t] * x[(n, g * cg + c) + tuple(pos)]
                y[(n, o) + z] = acc
    return y


def resolved(p, n):
    """(kernel, stride, pad, dilation) per axis from a params dict, as the test states them."""
    def axis_values(key, default):
        v = p.get(key, [])
        v = [v] if isinstance(v, int) else v
        return tuple(v) * n if len(v) == 1 else (tuple(v) if v else (default,) * n)

    kernel = (p["kernel_h"], p["kernel_w"]) if "kernel_h" in p else axis_values("kernel_size", 0)
    stride = (p["stride_h"], p["stride_w"]) if "stride_h" in p else axis_values("stride", 1)
    if "pad_h" in p or "pad_w" in p:
        pad = (p.get("pad_h", 0), p.get("pad_w", 0))
    else:
        pad = axis_values("pad", 0)
    return kernel, stride, pad, axis_values("dilation", 1)


# (bottom shape, params): 2-D unless said otherwise
CASES = {
    "square": ((2, 3, 6, 5), {"num_output": 4, "kernel_size": 3}),
    "rect_kernel": ((2, 2, 6, 7), {"num_output": 3, "kernel_h": 3, "kernel_w": 2}),
    "stride2_pad1": ((3, 2, 7, 6), {"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1}),
    "dilation2": ((2, 2, 8, 7), {"num_output": 2, "kernel_size": 3, "dilation": 2}),
    "groups2": ((2, 4, 7, 6), {"num_output": 6, "kernel_size": [3, 2], "stride": [2, 1],
                               "pad": [1, 0], "dilation": [1, 2], "group": 2}),
    "no_bias": ((2, 3, 5, 5), {"num_output": 2, "kernel_size": 2, "bias_term": False}),
    # (4 - 5) / 2 + 1: C truncation gives 1 output row (floor division would give 0)
    "truncation": ((2, 2, 4, 9), {"num_output": 2, "kernel_size": 5, "stride": 2}),
    "odd_sizes": ((2, 3, 7, 9), {"num_output": 2, "kernel_size": [2, 4], "stride": 3,
                                 "pad": 2}),
    "hw_keys": ((2, 2, 6, 7), {"num_output": 2, "kernel_h": 2, "kernel_w": 3, "stride_h": 2,
                               "stride_w": 1, "pad_h": 1}),
    "one_by_one": ((2, 4, 3, 5), {"num_output": 6, "kernel_size": 1, "group": 2}),
    "1x1_stride2": ((2, 3, 5, 4), {"num_output": 2, "kernel_size": 1, "stride": 2}),
    "1d": ((3, 2, 9), {"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1}),
    "3d": ((2, 2, 4, 5, 4), {"num_output": 3, "kernel_size": [2, 3, 2], "stride": [1, 2, 1],
                             "pad": [1, 0, 1], "dilation": [2, 1, 1]}),
}


def params_of(p):
    return {"bias_filler": GAUSS, **p}


def reference(x, layer, p):
    w = layer.params["weight"].data
    b = layer.params["bias"].data if "bias" in layer.params else None
    kernel, stride, pad, dilation = resolved(p, x.ndim - 2)
    assert w.shape[2:] == kernel
    return naive_conv(x, w, b, stride, pad, dilation, p.get("group", 1))


def test_registered():
    assert LAYERS.get("Convolution") is Convolution


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_the_loop_definition(lh, rng, name):
    shape, p = CASES[name]
    layer, tops = lh.make_layer(Convolution, [shape], **params_of(p))
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    want = reference(x, layer, p)
    assert tops == [want.shape] and y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_truncation_case_has_one_output_row(lh):
    """Caffe keeps a window that starts inside the input and overhangs it: its taps read 0."""
    layer, tops = lh.make_layer(Convolution, [(1, 1, 4, 9)], num_output=1, kernel_size=5,
                                stride=2)
    assert tops == [(1, 1, 1, 3)]


@pytest.mark.parametrize("threads", [1, 2])
def test_result_does_not_depend_on_the_thread_split(lh, rng, threads):
    """Images are shared out among Numba's threads, each with its own column buffer and
    weight-gradient slot: 1 or 2 threads give the one-image-at-a-time results."""
    shape, p = CASES["groups2"]
    shape = (5,) + shape[1:]
    x = rng.standard_normal(shape)
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        layer, _ = lh.make_layer(Convolution, [shape], **params_of(p))
        (y,) = layer.forward([x])
        dy = rng.standard_normal(y.shape)
        (dx,) = layer.backward([dy])
    finally:
        numba.set_num_threads(before)
    assert layer.slots == (threads if can_serialize_blas() else 1)
    np.testing.assert_allclose(y, reference(x, layer, p), rtol=1e-12, atol=1e-12)
    one, _ = lh.make_layer(Convolution, [(1,) + shape[1:]], **params_of(p))
    for n in range(shape[0]):
        one.forward([x[n:n + 1]])
        np.testing.assert_allclose(one.backward([dy[n:n + 1]])[0], dx[n:n + 1], rtol=1e-12)
    for name in layer.params:
        np.testing.assert_allclose(layer.params[name].grad, one.params[name].grad, rtol=1e-12)


@pytest.mark.parametrize("name,shape,p", [
    ("axis2", (2, 3, 4, 6, 5), {"num_output": 3, "kernel_size": 3, "axis": 2}),
    ("axis-3", (2, 4, 6, 5), {"num_output": 3, "kernel_size": 2, "axis": -3}),
])
def test_axes_before_the_channel_axis_are_batch_axes(lh, rng, name, shape, p):
    layer, tops = lh.make_layer(Convolution, [shape], **params_of(p))
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    axis = p["axis"] % len(shape)
    lead = shape[:axis]
    flat = x.reshape((-1,) + shape[axis:])
    want = reference(flat, layer, p)
    assert y.shape == tops[0] == lead + want.shape[1:]
    np.testing.assert_allclose(y.reshape(want.shape), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_shapes(lh, name):
    shape, p = CASES[name]
    layer, tops = lh.make_layer(Convolution, [shape], **p)
    kernel, stride, pad, dilation = resolved(p, len(shape) - 2)
    outs = tuple(out_size(*a) for a in zip(shape[2:], kernel, stride, pad, dilation))
    assert tops == [(shape[0], p["num_output"]) + outs]
    cg = shape[1] // p.get("group", 1)
    assert layer.params["weight"].shape == (p["num_output"], cg) + kernel
    if p.get("bias_term", True):
        assert layer.params["bias"].shape == (p["num_output"],)
    else:
        assert "bias" not in layer.params


GRAD_CASES = {
    "stride2_pad1": ((2, 2, 5, 4), {"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1}),
    "groups_rect_dil": ((1, 4, 5, 6), {"num_output": 4, "kernel_size": [2, 3], "stride": [1, 2],
                                       "pad": [1, 0], "dilation": [2, 1], "group": 2}),
    "no_bias": ((2, 2, 4, 4), {"num_output": 2, "kernel_size": 2, "bias_term": False}),
    "truncation": ((1, 2, 4, 5), {"num_output": 2, "kernel_size": 5, "stride": 2, "pad": 1}),
    "one_by_one": ((2, 4, 3, 3), {"num_output": 4, "kernel_size": 1, "group": 2}),
    "1d": ((2, 2, 7), {"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1}),
    "3d": ((1, 2, 3, 4, 3), {"num_output": 2, "kernel_size": 2, "stride": [1, 2, 1],
                             "pad": [0, 1, 1]}),
}


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradients(rng, name):
    shape, p = GRAD_CASES[name]
    res = gradcheck(Convolution, [rng.standard_normal(shape)], params_of(p))
    expected = {"bottom[0]", "weight"} | ({"bias"} if p.get("bias_term", True) else set())
    assert {e.name for e in res.entries} == expected
    assert all(e.checked > 0 for e in res.entries)


def test_two_bottoms_share_the_weights(lh, rng):
    shape, p = (2, 2, 5, 4), {"num_output": 3, "kernel_size": 2, "stride": [2, 1]}
    layer, tops = lh.make_layer(Convolution, [shape, shape], top_names=["t0", "t1"],
                                **params_of(p))
    assert tops == [(2, 3, 2, 3)] * 2
    x0, x1 = rng.standard_normal(shape), rng.standard_normal(shape)
    y0, y1 = (np.array(t) for t in layer.forward([x0, x1]))
    np.testing.assert_allclose(y0, reference(x0, layer, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y1, reference(x1, layer, p), rtol=1e-12, atol=1e-12)
    res = gradcheck(Convolution, [x0, x1], params_of(p), top_names=["t0", "t1"])
    assert {e.name for e in res.entries} == {"bottom[0]", "bottom[1]", "weight", "bias"}


def test_propagate_down_false_still_accumulates_param_grads(lh, rng):
    shape, p = (2, 2, 5, 5), {"num_output": 2, "kernel_size": 3, "pad": 1}
    layer, _ = lh.make_layer(Convolution, [shape], propagate_down=[False], **p)
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    dy = rng.standard_normal(y.shape)
    assert layer.backward([dy]) == [None]
    dw = layer.params["weight"].grad.copy()
    # dW[o, c, i, j] = sum_{n, y, x} dy[n, o, y, x] x_pad[n, c, y + i, x + j]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros_like(dw)
    for i, j in itertools.product(range(3), range(3)):
        want[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[:, :, i:i + 5, j:j + 5])
    np.testing.assert_allclose(dw, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.params["bias"].grad, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    layer.backward([dy])
    np.testing.assert_allclose(layer.params["weight"].grad, 2 * want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("new_shape", [(5, 2, 6, 7), (1, 2, 9, 5), (3, 2, 5, 5)])
def test_reshape_to_other_batch_and_image_sizes_equals_a_fresh_layer(lh, rng, new_shape):
    p = params_of({"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1, "group": 1})
    layer, _ = lh.make_layer(Convolution, [(2, 2, 6, 6)], **p)
    layer.forward([rng.standard_normal((2, 2, 6, 6))])
    top = layer.reshape([new_shape])
    fresh, fresh_top = lh.make_layer(Convolution, [new_shape], **p)
    for name, param in layer.params.items():
        fresh.params[name].data[...] = param.data
    assert top == fresh_top
    x = rng.standard_normal(new_shape)
    (y,) = layer.forward([x])
    (want,) = fresh.forward([x])
    np.testing.assert_array_equal(y, want)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward([dy])[0], fresh.backward([dy])[0])
    for name in layer.params:
        np.testing.assert_array_equal(layer.params[name].grad, fresh.params[name].grad)


@pytest.mark.parametrize("name", ["groups2", "stride2_pad1", "one_by_one", "3d"])
def test_float32_matches_float64(lh, rng, name):
    shape, p = CASES[name]
    lh.assert_float32_matches(Convolution, [rng.standard_normal(shape)], **params_of(p))


def test_float32_backward_matches_float64(lh, rng):
    shape, p = CASES["groups2"]
    x = rng.standard_normal(shape)
    l64, _ = lh.make_layer(Convolution, [shape], **params_of(p))
    l32, _ = lh.make_layer(Convolution, [shape], dtype=np.float32, **params_of(p))
    for name, param in l64.params.items():
        l32.params[name].data[...] = param.data
    (y,) = l64.forward([x])
    l32.forward([x.astype(np.float32)])
    dy = rng.standard_normal(y.shape)
    dx64, = l64.backward([dy])
    dx32, = l32.backward([dy.astype(np.float32)])
    assert dx32.dtype == np.float32
    lh.assert_close_rel(dx32, dx64, 1e-5)
    for name in l64.params:
        lh.assert_close_rel(l32.params[name].grad, l64.params[name].grad, 1e-5)


def test_default_fillers_xavier_weight_zero_bias(lh):
    layer, _ = lh.make_layer(Convolution, [(1, 8, 9, 9)], num_output=50, kernel_size=5)
    w = layer.params["weight"].data
    a = np.sqrt(3.0 / (8 * 25))  # xavier, fan_in = C/G kh kw
    assert w.max() <= a and w.max() > 0.98 * a and w.min() < -0.98 * a
    assert np.all(layer.params["bias"].data == 0)


def test_flops(lh):
    layer, _ = lh.make_layer(Convolution, [(2, 4, 7, 6)], **CASES["groups2"][1])
    # top (2, 6, 4, 4): each output sums (4/2) * 3 * 2 taps (2 flops each) plus the bias
    assert layer.flops([(2, 4, 7, 6)]) == 2 * 6 * 4 * 4 * (2 * 2 * 3 * 2 + 1)


@pytest.mark.parametrize("p", [
    {"num_output": 3, "kernel_size": 3},
    {"num_output": 4, "kernel_size": [3, 2], "stride": 2, "pad": [1, 0], "dilation": 2,
     "group": 2, "bias_term": False, "weight_filler": {"type": "msra"}, "axis": -3},
    {"num_output": 2, "kernel_h": 3, "kernel_w": 1, "stride_h": 2, "stride_w": 1, "pad_w": 1},
])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Convolution.Params(**p))


def test_one_value_is_a_list_of_one(lh):
    assert Convolution.Params(num_output=1, kernel_size=3, pad=0).kernel_size == [3]
    assert Convolution.Params(num_output=1, kernel_size=3, pad=0).pad == [0]


# ---- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("p,message", [
    ({"num_output": 2}, "no kernel: give kernel_size, or kernel_h and kernel_w"),
    ({"num_output": 2, "kernel_h": 3}, "kernel_h is set but kernel_w is not"),
    ({"num_output": 2, "kernel_w": 3}, "kernel_w is set but kernel_h is not"),
    ({"num_output": 2, "kernel_size": 3, "kernel_h": 3, "kernel_w": 3},
     "give kernel_size or kernel_h/kernel_w, not both"),
    ({"num_output": 2, "kernel_size": 3, "stride_h": 2}, "stride_h and stride_w go together"),
    ({"num_output": 2, "kernel_size": 3, "stride": 1, "stride_h": 2, "stride_w": 2},
     "give stride or stride_h/stride_w, not both"),
    ({"num_output": 2, "kernel_size": 3, "pad": 1, "pad_h": 1}, "give pad or pad_h/pad_w"),
    ({"num_output": 3, "kernel_size": 3, "group": 2}, "num_output 3 is not divisible by group 2"),
    ({"num_output": 2, "kernel_size": 3, "stride": 0}, "greater than or equal to 1"),
    ({"num_output": 2, "kernel_size": 0}, "greater than or equal to 1"),
    ({"num_output": 2, "kernel_size": 3, "pad": -1}, "greater than or equal to 0"),
    ({"num_output": 2, "kernel_size": 3, "dilation": 0}, "greater than or equal to 1"),
    ({"num_output": 0, "kernel_size": 3}, "greater than 0"),
    ({"num_output": 2, "kernel_size": 3, "engine": "CAFFE"}, "Extra inputs"),
])
def test_bad_params_rejected(p, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Convolution.Params(**p)


@pytest.mark.parametrize("shape,p,pattern", [
    ((2, 3, 4, 4), {"num_output": 2, "kernel_size": 5},
     r"layer conv1 \(Convolution\): kernel_size: the kernel extent 1 \* \(5 - 1\) \+ 1 on "
     r"spatial axis 0 is larger than the padded input 4 \+ 2 \* 0 \(bottom shape "
     r"\(2, 3, 4, 4\)\)"),
    ((2, 3, 9, 4), {"num_output": 2, "kernel_h": 3, "kernel_w": 3, "dilation": 2},
     r"conv1 \(Convolution\): kernel_h: the kernel extent 2 \* \(3 - 1\) \+ 1 on spatial axis "
     r"1 .*\(2, 3, 9, 4\)"),
    ((2, 3, 6, 6), {"num_output": 2, "kernel_size": 3, "group": 2},
     r"conv1 \(Convolution\): group: the bottom's 3 channels \(shape \(2, 3, 6, 6\), axis 1\) "
     r"are not divisible by group 2"),
    ((2, 3, 6, 6), {"num_output": 2, "kernel_size": [3, 3, 3]},
     r"conv1 \(Convolution\): kernel_size: 3 values \[3, 3, 3\] for the 2 spatial axes of "
     r"bottom shape \(2, 3, 6, 6\): give 1 or 2"),
    ((2, 3, 6, 6), {"num_output": 2, "kernel_size": 3, "stride": [1, 2, 1]},
     r"conv1 \(Convolution\): stride: 3 values"),
    ((2, 3, 6, 6), {"num_output": 2, "kernel_size": 3, "pad": [1, 2, 1]},
     r"conv1 \(Convolution\): pad: 3 values"),
    ((2, 3, 6, 6), {"num_output": 2, "kernel_size": 3, "dilation": [1, 2, 1]},
     r"conv1 \(Convolution\): dilation: 3 values"),
    ((2, 3, 6, 6, 6), {"num_output": 2, "kernel_h": 3, "kernel_w": 3},
     r"conv1 \(Convolution\): kernel_h: the _h/_w keys are for 2-D convolutions; bottom shape "
     r"\(2, 3, 6, 6, 6\) has 3 spatial axes"),
    ((2, 3, 6, 6, 6), {"num_output": 2, "kernel_size": 3, "pad_w": 1},
     r"conv1 \(Convolution\): pad_w: the _h/_w keys are for 2-D"),
    ((2, 3), {"num_output": 2, "kernel_size": 1},
     r"conv1 \(Convolution\): axis: bottom shape \(2, 3\) has 0 spatial axes"),
    ((2, 3, 2, 2, 2, 2), {"num_output": 2, "kernel_size": 1},
     r"conv1 \(Convolution\): axis: bottom shape \(2, 3, 2, 2, 2, 2\) has 4 spatial axes"),
    ((2, 3, 6), {"num_output": 2, "kernel_size": 1, "axis": 3},
     r"conv1 \(Convolution\): axis: 3 is out of range for bottom shape \(2, 3, 6\)"),
])
def test_shape_errors_name_the_layer_key_and_shape(lh, shape, p, pattern):
    with pytest.raises(UserError, match=pattern):
        lh.make_layer(Convolution, [shape], name="conv1", **p)


def test_bottoms_of_different_shapes(lh):
    with pytest.raises(UserError, match=r"conv1 \(Convolution\): bottoms must have identical "
                                        r"shapes, got a \(2, 3, 6, 6\), b \(2, 3, 6, 5\)"):
        lh.make_layer(Convolution, [(2, 3, 6, 6), (2, 3, 6, 5)], name="conv1",
                      bottom_names=["a", "b"], top_names=["t0", "t1"], num_output=2,
                      kernel_size=3)


def test_one_top_per_bottom(lh):
    with pytest.raises(UserError, match=r"conv1 \(Convolution\): 2 bottoms and 1 tops"):
        lh.make_layer(Convolution, [(2, 3, 6, 6)] * 2, name="conv1", top_names=["t"],
                      num_output=2, kernel_size=3)


@pytest.mark.parametrize("new_shape,pattern", [
    ((2, 4, 6, 6), r"bottom shape \(2, 4, 6, 6\) does not fit the weight, made for 4-D bottoms "
                   r"with 3 channels on axis 1"),
    ((2, 3, 6), r"bottom shape \(2, 3, 6\) does not fit the weight"),
    ((2, 3, 2, 6), r"kernel_size: the kernel extent .* \(bottom shape \(2, 3, 2, 6\)\)"),
])
def test_reshape_errors(lh, new_shape, pattern):
    layer, _ = lh.make_layer(Convolution, [(2, 3, 6, 6)], name="conv1", num_output=2,
                             kernel_size=3)
    with pytest.raises(UserError, match=r"layer conv1 \(Convolution\): " + pattern):
        layer.reshape([new_shape])


def test_errors_through_a_net_name_file_line_and_layer(tmp_path):
    text = """\
layers:
  - {name: data, type: Input, shape: [2, 3, 8, 8]}
  - {name: conv1, type: Convolution, num_output: 4, kernel_h: 3}
"""
    with pytest.raises(UserError, match=r"net\.yaml:3:.*conv1.*kernel_h is set but kernel_w "
                                        r"is not"):
        lf.Net.from_string(text, file=str(tmp_path / "net.yaml"))
    text = text.replace("kernel_h: 3", "kernel_size: 9")
    with pytest.raises(UserError, match=r"net\.yaml:3:5: layers\[1\] \(conv1\): kernel_size: "
                                        r"the kernel extent 1 \* \(9 - 1\) \+ 1 on spatial "
                                        r"axis 0 is larger than the padded input 8"):
        lf.Net.from_string(text, file=str(tmp_path / "net.yaml"))


def test_a_net_takes_other_batch_and_image_sizes(rng):
    """Feeding another batch and image size reshapes the convolutions (weights unchanged)."""
    net = lf.Net.from_string("""
layers:
  - {name: data, type: Input, shape: [2, 1, 8, 8]}
  - {name: conv1, type: Convolution, num_output: 3, kernel_size: 3, stride: 2, pad: 1,
     bias_filler: {type: gaussian}}
  - {name: conv2, type: Convolution, num_output: 2, kernel_size: 2, bias_filler: {type: gaussian}}
""", dtype="float64")
    params = {name: {k: v.data for k, v in ps.items()} for name, ps in net.params.items()}
    for shape in [(2, 1, 8, 8), (3, 1, 5, 7), (1, 1, 9, 4)]:
        x = rng.standard_normal(shape)
        y = net.forward({"data": x})["conv2"]
        h = naive_conv(x, params["conv1"]["weight"], params["conv1"]["bias"], (2, 2), (1, 1),
                       (1, 1), 1)
        want = naive_conv(h, params["conv2"]["weight"], params["conv2"]["bias"], (1, 1),
                          (0, 0), (1, 1), 1)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
