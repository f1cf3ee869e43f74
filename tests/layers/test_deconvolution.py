"""Deconvolution against a direct loop definition of the transposed convolution, the adjoint
identity <conv(y), x> = <y, deconv(x)> with Convolution, and bilinear upsampling."""
import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.convolution import Convolution
from layerflow.layers.deconvolution import Deconvolution
from layerflow.registry import LAYERS

GAUSS = {"type": "gaussian", "std": 1.0}


def per_axis(p, key, n, default):
    v = p.get(key, [])
    v = [v] if isinstance(v, int) else v
    return tuple(v) * n if len(v) == 1 else (tuple(v) if v else (default,) * n)


def naive_deconv(x, w, b, stride, pad, dilation, group):
    """Every input x[n, c, z] adds w[c, o, t] x[n, c, z] to y[n, g(c) O/G + o,
    z * stride - pad + t * dilation] when that lies inside y; then + b. x (N, C, *in),
    w (C, O/G, *k); out = stride (in - 1) + dilation (k - 1) + 1 - 2 pad."""
    n_img, channels = x.shape[:2]
    og = w.shape[1]
    kernel = w.shape[2:]
    cg = channels // group
    outs = [s * (i - 1) + d * (k - 1) + 1 - 2 * p
            for i, k, s, p, d in zip(x.shape[2:], kernel, stride, pad, dilation)]
    y = np.zeros((n_img, og * group, *outs))
    for n in range(n_img):
        for c in range(channels):
            g = c // cg
            for z in itertools.product(*map(range, x.shape[2:])):
                for o in range(og):
                    for t in itertools.product(*map(range, kernel)):
                        pos = [zi * s - p + ti * d for zi, ti, s, p, d in
                               zip(z, t, stride, pad, dilation)]
                        if all(0 <= q < size for q, size in zip(pos, outs)):
                            y[(n, g * og + o) + tuple(pos)] += w[(c, o) + t] * x[(n, c) + z]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(outs))
    return y


CASES = {
    "square": ((2, 3, 4, 3), {"num_output": 2, "kernel_size": 3}),
    "stride2_pad1": ((2, 2, 4, 5), {"num_output": 3, "kernel_size": 4, "stride": 2, "pad": 1}),
    "rect_dilation": ((2, 2, 3, 4), {"num_output": 2, "kernel_h": 2, "kernel_w": 3,
                                     "dilation": 2, "stride_h": 1, "stride_w": 3}),
    "groups2": ((2, 4, 3, 4), {"num_output": 6, "kernel_size": [3, 2], "stride": [2, 1],
                               "pad": [1, 0], "dilation": [1, 2], "group": 2}),
    "no_bias": ((2, 3, 3, 3), {"num_output": 2, "kernel_size": 2, "stride": 3,
                               "bias_term": False}),
    "one_by_one": ((2, 4, 3, 2), {"num_output": 6, "kernel_size": 1, "group": 2}),
    "1d": ((2, 2, 5), {"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1}),
    "3d": ((1, 2, 2, 3, 2), {"num_output": 2, "kernel_size": [2, 3, 2], "stride": [2, 1, 2],
                             "pad": [0, 1, 1]}),
}


def params_of(p):
    return {"bias_filler": GAUSS, **p}


def reference(x, layer, p):
    n = x.ndim - 2
    w = layer.params["weight"].data
    b = layer.params["bias"].data if "bias" in layer.params else None
    kernel = (p["kernel_h"], p["kernel_w"]) if "kernel_h" in p else \
        per_axis(p, "kernel_size", n, 0)
    stride = (p["stride_h"], p["stride_w"]) if "stride_h" in p else per_axis(p, "stride", n, 1)
    assert w.shape[2:] == kernel
    return naive_deconv(x, w, b, stride, per_axis(p, "pad", n, 0),
                        per_axis(p, "dilation", n, 1), p.get("group", 1))


def test_registered():
    assert LAYERS.get("Deconvolution") is Deconvolution


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_the_loop_definition(lh, rng, name):
    shape, p = CASES[name]
    layer, tops = lh.make_layer(Deconvolution, [shape], **params_of(p))
    assert layer.params["weight"].shape[:2] == (shape[1], p["num_output"] // p.get("group", 1))
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    want = reference(x, layer, p)
    assert tops == [want.shape] and y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_deconvolution_is_the_adjoint_of_convolution(lh, rng, name):
    """With one weight (conv (O', C', k) is deconv's (C, O, k) for C = O', O = C'):
    <conv(y), x> == <y, deconv(x)>, and conv maps deconv's output shape back to its input."""
    x_shape, p = CASES[name]
    p = {**p, "bias_term": False}
    dec, (y_shape,) = lh.make_layer(Deconvolution, [x_shape], **p)
    conv, (back,) = lh.make_layer(Convolution, [y_shape], **{**p, "num_output": x_shape[1]})
    assert back == x_shape
    conv.params["weight"].data[...] = dec.params["weight"].data
    x, y = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    (cy,) = conv.forward([y])
    (dx,) = dec.forward([x])
    assert abs(np.vdot(cy, x) - np.vdot(y, dx)) <= 1e-12 * max(1.0, abs(np.vdot(cy, x)))
    # and deconv's data gradient is conv's forward
    dec.forward([x])
    (grad,) = dec.backward([y])
    np.testing.assert_allclose(grad, cy, rtol=1e-12, atol=1e-12)


GRAD_CASES = {
    "stride2_pad1": ((2, 2, 3, 2), {"num_output": 2, "kernel_size": 4, "stride": 2, "pad": 1}),
    "groups_rect_dil": ((1, 4, 3, 2), {"num_output": 2, "kernel_size": [2, 3],
                                       "stride": [1, 2], "pad": [1, 0], "dilation": [2, 1],
                                       "group": 2}),
    "no_bias": ((2, 2, 2, 3), {"num_output": 2, "kernel_size": 2, "bias_term": False}),
    "one_by_one": ((2, 4, 2, 3), {"num_output": 4, "kernel_size": 1, "group": 2}),
    "1d": ((2, 2, 4), {"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1}),
    "3d": ((1, 2, 2, 2, 3), {"num_output": 2, "kernel_size": 2, "stride": [2, 1, 1],
                             "pad": [0, 1, 0]}),
}


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradients(rng, name):
    shape, p = GRAD_CASES[name]
    res = gradcheck(Deconvolution, [rng.standard_normal(shape)], params_of(p))
    expected = {"bottom[0]", "weight"} | ({"bias"} if p.get("bias_term", True) else set())
    assert {e.name for e in res.entries} == expected
    assert all(e.checked > 0 for e in res.entries)


def test_two_bottoms_share_the_weights(lh, rng):
    shape, p = (2, 2, 3, 2), {"num_output": 3, "kernel_size": 2, "stride": 2}
    layer, tops = lh.make_layer(Deconvolution, [shape, shape], top_names=["t0", "t1"],
                                **params_of(p))
    assert tops == [(2, 3, 6, 4)] * 2
    x0, x1 = rng.standard_normal(shape), rng.standard_normal(shape)
    y0, y1 = (np.array(t) for t in layer.forward([x0, x1]))
    np.testing.assert_allclose(y0, reference(x0, layer, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y1, reference(x1, layer, p), rtol=1e-12, atol=1e-12)
    res = gradcheck(Deconvolution, [x0, x1], params_of(p), top_names=["t0", "t1"])
    assert {e.name for e in res.entries} == {"bottom[0]", "bottom[1]", "weight", "bias"}


def test_propagate_down_false_still_accumulates_param_grads(lh, rng):
    shape, p = (2, 2, 3, 3), {"num_output": 2, "kernel_size": 2, "stride": 2}
    layer, _ = lh.make_layer(Deconvolution, [shape], propagate_down=[False], **p)
    x = rng.standard_normal(shape)
    (y,) = layer.forward([x])
    dy = rng.standard_normal(y.shape)
    assert layer.backward([dy]) == [None]
    # kernel 2 = stride 2: y[n, o, 2h + i, 2w + j] = sum_c w[c, o, i, j] x[n, c, h, w] + b[o]
    for i, j in itertools.product(range(2), range(2)):
        want = np.einsum("nchw,nohw->co", x, dy[:, :, i::2, j::2])
        np.testing.assert_allclose(layer.params["weight"].grad[:, :, i, j], want, rtol=1e-12)
    np.testing.assert_allclose(layer.params["bias"].grad, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("new_shape", [(5, 2, 4, 3), (1, 2, 2, 6)])
def test_reshape_to_other_batch_and_image_sizes_equals_a_fresh_layer(lh, rng, new_shape):
    p = params_of({"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1})
    layer, _ = lh.make_layer(Deconvolution, [(2, 2, 3, 3)], **p)
    layer.forward([rng.standard_normal((2, 2, 3, 3))])
    top = layer.reshape([new_shape])
    fresh, fresh_top = lh.make_layer(Deconvolution, [new_shape], **p)
    for name, param in layer.params.items():
        fresh.params[name].data[...] = param.data
    assert top == fresh_top
    x = rng.standard_normal(new_shape)
    (y,) = layer.forward([x])
    np.testing.assert_array_equal(y, fresh.forward([x])[0])
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward([dy])[0], fresh.backward([dy])[0])
    for name in layer.params:
        np.testing.assert_array_equal(layer.params[name].grad, fresh.params[name].grad)


@pytest.mark.parametrize("name", ["groups2", "stride2_pad1", "3d"])
def test_float32_matches_float64(lh, rng, name):
    shape, p = CASES[name]
    lh.assert_float32_matches(Deconvolution, [rng.standard_normal(shape)], **params_of(p))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_upsampling_of_a_constant_and_of_a_ramp(lh, factor):
    """Caffe's recipe: kernel 2f - f % 2, stride f, pad ceil((f - 1) / 2), group = C, bilinear
    weights, no bias. A constant image stays constant away from the border; a linear ramp
    becomes the ramp sampled at the output pixel centres, (u + 1/2) / f - 1/2."""
    c, size = 2, 6
    k, pad = 2 * factor - factor % 2, -(-(factor - 1) // 2)
    layer, (top,) = lh.make_layer(Deconvolution, [(1, c, size, size)], num_output=c, group=c,
                                  kernel_size=k, stride=factor, pad=pad, bias_term=False,
                                  weight_filler={"type": "bilinear"})
    assert top == (1, c, factor * size, factor * size)
    inner = slice(factor, factor * (size - 1))  # pixels whose taps all fall inside the input
    (y,) = layer.forward([np.full((1, c, size, size), 3.5)])
    np.testing.assert_allclose(y[:, :, inner, inner], 3.5, rtol=1e-12)
    ramp = np.broadcast_to(np.arange(size, dtype=float), (1, c, size, size))
    (y,) = layer.forward([ramp])
    u = np.arange(factor * size)
    want = np.broadcast_to((u + 0.5) / factor - 0.5, y.shape)
    np.testing.assert_allclose(y[:, :, inner, inner], want[:, :, inner, inner], rtol=1e-12,
                               atol=1e-12)


def test_flops(lh):
    layer, _ = lh.make_layer(Deconvolution, [(2, 4, 3, 4)], **CASES["groups2"][1])
    # 2 * 4 * 12 inputs, each times (6/2) * 3 * 2 taps, 2 flops each; bias on top (2, 6, 5, 6)
    assert layer.flops([(2, 4, 3, 4)]) == 2 * 4 * 12 * 3 * 3 * 2 * 2 + 2 * 6 * 5 * 6


def test_config_roundtrip(lh):
    lh.assert_roundtrip(Deconvolution.Params(num_output=4, kernel_size=[4, 2], stride=2,
                                             group=2, weight_filler={"type": "bilinear"}))


def test_bad_params_rejected():
    with pytest.raises(ValidationError, match="no kernel"):
        Deconvolution.Params(num_output=2)


@pytest.mark.parametrize("shape,p,pattern", [
    ((2, 3, 1, 4), {"num_output": 2, "kernel_size": 1, "pad": 1},
     r"layer up \(Deconvolution\): pad: the output would have size -1 on spatial axis 0: "
     r"1 \* \(1 - 1\) \+ 1 \* \(1 - 1\) \+ 1 - 2 \* 1 \(bottom shape \(2, 3, 1, 4\)\)"),
    ((2, 3, 4, 4), {"num_output": 2, "kernel_size": 3, "group": 2},
     r"layer up \(Deconvolution\): group: the bottom's 3 channels"),
    ((2, 4, 4, 4), {"num_output": 2, "kernel_size": [3, 3, 3]},
     r"layer up \(Deconvolution\): kernel_size: 3 values"),
])
def test_shape_errors_name_the_layer_key_and_shape(lh, shape, p, pattern):
    with pytest.raises(UserError, match=pattern):
        lh.make_layer(Deconvolution, [shape], name="up", **p)


def test_bilinear_filler_needs_a_square_kernel(lh):
    with pytest.raises(UserError, match=r"bilinear: needs a 4-D weight with a square kernel, got "
                                        r"shape \(2, 1, 4, 2\)"):
        lh.make_layer(Deconvolution, [(1, 2, 3, 3)], num_output=2, group=2,
                      kernel_size=[4, 2], weight_filler={"type": "bilinear"})
