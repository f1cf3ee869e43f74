"""The ONNX mappings of the built-in layers (opset 17), registered with `register_onnx`.

Each reproduces the layer's forward in the test phase exactly (up to float rounding), with the
batch axis free: a Reshape copies it (0) or infers it (-1), never bakes in the built batch.
The other axes are those of the built net. Layers that only train or evaluate (data layers,
losses, Accuracy) never reach a deploy net and have no mapping.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..registry import register_onnx


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _reshape(g, x: str, top_shape: tuple[int, ...], y: str | None = None,
             batch_kept: bool = True) -> str:
    """Reshape x to `top_shape`, whose axis 0 is the batch: copied (0) when the bottom's axis 0
    stays axis 0, else inferred (-1: the batch was merged into axis 0)."""
    dims = [0 if batch_kept else -1] + list(top_shape[1:])
    return g.node("Reshape", [x, g.shape_const(dims)], [y] if y else None)


def _trailing(shape, axis: int, k: int, ndim: int) -> tuple[int, ...]:
    """`shape` (covering axes axis .. axis+k-1 of an ndim array) padded with 1s on the right,
    so numpy-style broadcasting lines it up with those axes."""
    return tuple(shape) + (1,) * (ndim - axis - k)


# ---- elementwise -------------------------------------------------------------------------

@register_onnx("ReLU")
def relu(layer, g):
    slope = layer.p.negative_slope
    if slope == 0:
        g.node("Relu", g.bottoms, g.tops)
    else:
        g.node("LeakyRelu", g.bottoms, g.tops, alpha=float(slope))


@register_onnx("Sigmoid")
def sigmoid(layer, g):
    g.node("Sigmoid", g.bottoms, g.tops)


@register_onnx("TanH")
def tanh(layer, g):
    g.node("Tanh", g.bottoms, g.tops)


@register_onnx("AbsVal")
def absval(layer, g):
    g.node("Abs", g.bottoms, g.tops)


@register_onnx("BNLL")
def bnll(layer, g):
    g.node("Softplus", g.bottoms, g.tops)


@register_onnx("ELU")
def elu(layer, g):
    g.node("Elu", g.bottoms, g.tops, alpha=float(layer.p.alpha))


@register_onnx("PReLU")
def prelu(layer, g):
    ndim = len(g.bottom_shapes[0])
    slope = layer.params["weight"].data
    shape = (1,) if layer.p.channel_shared else _trailing(slope.shape, 1, 1, ndim)
    g.node("PRelu", [g.bottoms[0], g.param("weight", shape)], g.tops)


@register_onnx("Threshold")
def threshold(layer, g):
    above = g.node("Greater", [g.bottoms[0], g.const(layer.p.threshold)])
    g.node("Cast", [above], g.tops, to=1 if g.dtype == np.float32 else 11)


@register_onnx("Power")
def power(layer, g):
    """y = (shift + scale x)^power; Caffe's constant output when power * scale == 0."""
    (x,), (y,) = g.bottoms, g.tops
    if layer.constant:
        g.node("ConstantOfShape", [g.node("Shape", [x])], [y],
               value=np.asarray([layer.value], g.dtype))
        return
    t = x
    if layer.p.scale != 1:
        t = g.node("Mul", [t, g.const(layer.p.scale)])
    if layer.p.shift != 0:
        t = g.node("Add", [t, g.const(layer.p.shift)])
    if layer.p.power == 1:
        g.identity(t, y)
    else:
        g.node("Pow", [t, g.const(layer.p.power)], [y])


@register_onnx("Exp")
def exp(layer, g):
    """y = base^(shift + scale x) = outer * exp(inner x), inner = scale ln(base)."""
    (x,), (y,) = g.bottoms, g.tops
    t = g.node("Mul", [x, g.const(layer.inner)]) if layer.inner != 1 else x
    if layer.outer == 1:
        g.node("Exp", [t], [y])
    else:
        g.node("Mul", [g.node("Exp", [t]), g.const(layer.outer)], [y])


@register_onnx("Log")
def log(layer, g):
    """y = log(shift + scale x) / ln(base)."""
    (x,), (y,) = g.bottoms, g.tops
    t = g.node("Mul", [x, g.const(layer.p.scale)]) if layer.p.scale != 1 else x
    t = g.node("Add", [t, g.const(layer.p.shift)]) if layer.p.shift != 0 else t
    if layer.base_scale == 1:
        g.node("Log", [t], [y])
    else:
        g.node("Mul", [g.node("Log", [t]), g.const(layer.base_scale)], [y])


@register_onnx("Dropout")
def dropout(layer, g):
    """The test phase: the identity, or x (1 - p) with scale_train false."""
    if layer.test_scale is None:
        g.identity(g.bottoms[0], g.tops[0])
    else:
        g.node("Mul", [g.bottoms[0], g.const(layer.test_scale)], g.tops)


@register_onnx("Transform")
def transform(layer, g):
    """The data layer's test-phase transform as the graph's first nodes: a centre crop (Slice
    of the spatial axes at the offsets of the exported input size), then (x - mean) * scale
    with the mean cropped the same way (so a full-size mean file stays indexed at the
    uncropped position)."""
    (x,), (y,) = g.bottoms, g.tops
    mean = layer.mean.reshape(layer.sample_shape)
    t = x
    if layer.p.crop_size:
        ho, wo, h, w = layer.window
        t = g.node("Slice", [t, g.const(np.asarray([ho, wo], np.int64)),
                             g.const(np.asarray([ho + h, wo + w], np.int64)),
                             g.const(np.asarray([2, 3], np.int64))])
        mean = mean[:, ho:ho + h, wo:wo + w]
    if np.any(mean != 0):
        if np.all(mean == mean.reshape(-1)[0]):
            mean = mean.reshape(-1)[:1]
        t = g.node("Sub", [t, g.const(np.ascontiguousarray(mean))])
    if layer.p.scale != 1:
        g.node("Mul", [t, g.const(layer.p.scale)], [y])
    else:
        g.identity(t, y)


# ---- combining and cutting ---------------------------------------------------------------

@register_onnx("Eltwise")
def eltwise(layer, g):
    op = layer.p.operation
    if op == "PROD":
        t = g.bottoms[0]
        for i, x in enumerate(g.bottoms[1:], 1):  # a chain of Mul, in the layer's order
            t = g.node("Mul", [t, x], g.tops if i == len(g.bottoms) - 1 else None)
        return
    if op == "MAX":
        g.node("Max", g.bottoms, g.tops)
        return
    coeff = layer.p.coeff or [1.0] * len(g.bottoms)
    terms = [x if c == 1 else g.node("Mul", [x, g.const(c)]) for x, c in zip(g.bottoms, coeff)]
    g.node("Sum", terms, g.tops)


def _join_axis(p, legacy: str, ndim: int) -> int:
    """Concat's / Slice's axis: `axis` (default 1, negative from the end) or the legacy key."""
    axis = getattr(p, legacy)
    if axis is None:
        axis = 1 if p.axis is None else p.axis
    return axis % ndim


@register_onnx("Concat")
def concat(layer, g):
    if len(g.bottoms) == 1:
        g.identity(g.bottoms[0], g.tops[0])
        return
    g.node("Concat", g.bottoms, g.tops,
           axis=_join_axis(layer.p, "concat_dim", len(g.bottom_shapes[0])))


@register_onnx("Slice")
def slice_(layer, g):
    if len(g.tops) == 1:
        g.identity(g.bottoms[0], g.tops[0])
        return
    axis = _join_axis(layer.p, "slice_dim", len(g.bottom_shapes[0]))
    sizes = [t[axis] for t in g.top_shapes]
    g.node("Split", [g.bottoms[0], g.const(np.asarray(sizes, np.int64))], g.tops, axis=axis)


@register_onnx("Split")
def split(layer, g):
    for t in g.tops:
        g.identity(g.bottoms[0], t)


@register_onnx("Flatten")
def flatten(layer, g):
    shape = g.bottom_shapes[0]
    axis = _axis(layer.p.axis, len(shape))
    _reshape(g, g.bottoms[0], g.top_shapes[0], g.tops[0], batch_kept=axis >= 1)


@register_onnx("Reshape")
def reshape(layer, g):
    """Axes from 1 on: the built top shape with the batch copied. A reshape of axis 0 uses
    the layer's own spec (0 copies, -1 infers, as in ONNX) for the axes it replaces."""
    shape, top = g.bottom_shapes[0], g.top_shapes[0]
    start = layer.p.axis if layer.p.axis >= 0 else len(shape) + layer.p.axis + 1
    if start >= 1:
        _reshape(g, g.bottoms[0], top, g.tops[0])
        return
    spec = list(layer.p.shape)
    end = len(shape) if layer.p.num_axes == -1 else layer.p.num_axes
    dims = spec + list(shape[end:])
    g.node("Reshape", [g.bottoms[0], g.shape_const(dims)], g.tops)


@register_onnx("Crop")
def crop(layer, g):
    shape0 = g.bottom_shapes[0]
    start = _axis(layer.p.axis, len(shape0))
    axes, starts, ends = [], [], []
    for i, d1 in enumerate(g.bottom_shapes[1]):
        if i < start:
            continue
        off = layer.p.offset[0 if len(layer.p.offset) == 1 else i - start] \
            if layer.p.offset else 0
        axes.append(i)
        starts.append(off)
        ends.append(off + d1 if i > 0 else np.iinfo(np.int64).max)
    if start == 0 and starts[0] != 0:
        raise UserError("a crop of the batch axis at an offset depends on the batch")
    g.node("Slice", [g.bottoms[0], g.const(np.asarray(starts)), g.const(np.asarray(ends)),
                     g.const(np.asarray(axes))], g.tops)


# ---- with params -------------------------------------------------------------------------

@register_onnx("InnerProduct")
def inner_product(layer, g):
    """y = flatten(x, axis) W^T + b as Gemm (transB); Flatten or Reshape around it when the
    bottom is not (N, K) already."""
    (x,), (y,) = g.bottoms, g.tops
    shape = g.bottom_shapes[0]
    axis = _axis(layer.p.axis, len(shape))
    k = int(np.prod(shape[axis:]))
    inputs = [g.param("weight")] + ([g.param("bias")] if layer.p.bias_term else [])
    if axis == 1:
        x2 = x if len(shape) == 2 else g.node("Flatten", [x], axis=1)
        g.node("Gemm", [x2, *inputs], [y], transB=1)
        return
    x2 = g.node("Reshape", [x, g.shape_const([-1, k])])
    out = g.node("Gemm", [x2, *inputs], transB=1)
    _reshape(g, out, g.top_shapes[0], y, batch_kept=False)


@register_onnx("Scale")
def scale(layer, g):
    _scale_or_bias(layer, g, "Mul", "weight")


@register_onnx("Bias")
def bias(layer, g):
    _scale_or_bias(layer, g, "Add", "bias")


def _scale_or_bias(layer, g, op: str, pname: str):
    """y = x (op) w, w broadcast over the axes it does not cover; Scale's bias added after."""
    x, y = g.bottoms[0], g.tops[0]
    ndim = len(g.bottom_shapes[0])
    if len(g.bottoms) == 2:
        w_shape = g.bottom_shapes[1]
        axis = 0 if len(w_shape) == 0 else _axis(layer.p.axis, ndim)
        dims = _trailing(w_shape, axis, len(w_shape), ndim)
        if axis == 0 and dims:
            dims = (0,) + dims[1:]  # the batch axis of bottom[1]: copied
        w = g.node("Reshape", [g.bottoms[1], g.shape_const(dims)])
        k = len(w_shape)
    else:
        w_shape = layer.params[pname].shape
        axis = 0 if len(w_shape) == 0 else _axis(layer.p.axis, ndim)
        k = len(w_shape)
        w = g.param(pname, _trailing(w_shape, axis, k, ndim) if w_shape else ())
    has_bias = op == "Mul" and layer.p.bias_term
    out = g.node(op, [x, w], None if has_bias else [y])
    if has_bias:
        b_shape = layer.params["bias"].shape
        g.node("Add", [out, g.param("bias", _trailing(b_shape, axis, k, ndim)
                                    if b_shape else ())], [y])


@register_onnx("BatchNorm")
def batch_norm(layer, g):
    """The stored statistics (mean / scale_factor, variance / scale_factor) as ONNX's
    BatchNormalization: its scale and bias those of the Scale layer that alone follows (Caffe's
    BatchNorm + Scale pair, one node), else 1 and 0. Batch statistics (use_global_stats
    false) as explicit reductions."""
    (x,), (y,) = g.bottoms, g.tops
    shape = g.bottom_shapes[0]
    c = shape[1]
    eps = float(layer.p.eps)
    if layer.use_global:
        p = layer.params
        sf = float(p["scale_factor"].data[0])
        f = 0.0 if sf == 0 else 1.0 / sf
        mean = np.asarray(p["mean"].data, np.float64) * f
        var = np.asarray(p["variance"].data, np.float64) * f
        gamma = beta = None
        scale = g.next_layer()
        if scale is not None and _is_channel_scale(scale, c):
            # Caffe's BatchNorm + Scale pair: gamma and beta of one BatchNormalization
            gamma = scale.param("weight")
            if scale.layer.p.bias_term:
                beta = scale.param("bias")
            y = scale.tops[0]
            g.absorb(scale)
        # ones and zeros only where no Scale gives them: an unused constant is an initializer
        # that ONNX Runtime warns about when it loads the model
        gamma = g.const(np.ones(c)) if gamma is None else gamma
        beta = g.const(np.zeros(c)) if beta is None else beta
        g.node("BatchNormalization", [x, gamma, beta, g.const(mean), g.const(var)], [y],
               epsilon=eps)
        return
    reduced = [0] + list(range(2, len(shape)))

    def mean(v):  # the axes are an input from opset 18 on, an attribute before
        if g.opset >= 18:
            return g.node("ReduceMean", [v, g.const(np.asarray(reduced, np.int64))], keepdims=1)
        return g.node("ReduceMean", [v], keepdims=1, axes=reduced)

    mu = mean(x)
    d = g.node("Sub", [x, mu])
    sq = g.node("Mul", [d, d])
    var = mean(sq)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(eps)])])
    g.node("Div", [d, std], [y])


def _is_channel_scale(g, channels: int) -> bool:
    """A Scale layer with a learned (C,) weight on axis 1 (what follows Caffe's BatchNorm)."""
    layer = g.layer
    return (layer.type == "Scale" and len(g.bottoms) == 1 and len(g.bottom_shapes[0]) >= 2
            and _axis(layer.p.axis, len(g.bottom_shapes[0])) == 1
            and layer.params["weight"].shape == (channels,))


@register_onnx("Softmax")
def softmax(layer, g):
    g.node("Softmax", g.bottoms, g.tops, axis=_axis(layer.p.axis, len(g.bottom_shapes[0])))


# ---- vision ------------------------------------------------------------------------------

def _end_pads(size: int, out: int, k: int, s: int, pad: int) -> int:
    """Extra padding at the end so that ONNX's floor rounding gives Caffe's `out` windows
    (Caffe rounds up, then drops a last window starting in the padding)."""
    return max(0, (out - 1) * s + k - size - 2 * pad)


@register_onnx("Pooling")
def pooling(layer, g):
    """MAX -> MaxPool, AVE -> AveragePool, STOCHASTIC (test phase) -> sum(x^2) / sum(x).

    Caffe's output size is rounded up (round_mode CEIL) and drops a last window that would
    start in the padding; ONNX's ceil_mode rule has differed between runtimes on that, so the
    export rounds down (ceil_mode 0) over explicit end padding chosen to give Caffe's size.
    MAX never takes a padding cell in either. AVE: Caffe's divisor counts padding cells but
    stops at H + pad (a window overhanging the padded border counts less); AveragePool with
    count_include_pad counts the whole kernel, so windows that overhang are multiplied back by
    kernel / Caffe's divisor (a constant map over the output), which reproduces Caffe exactly.
    """
    if len(g.tops) > 1:
        raise UserError("the second top (the argmax mask) has no ONNX export")
    kh, kw, sh, sw, ph, pw = layer.window
    _, _, h, w = g.bottom_shapes[0]
    oh, ow = g.top_shapes[0][2:]
    eh, ew = _end_pads(h, oh, kh, sh, ph), _end_pads(w, ow, kw, sw, pw)
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph + eh, pw + ew])
    (x,), (y,) = g.bottoms, g.tops
    pool = layer.p.pool
    if pool == "MAX":
        g.node("MaxPool", [x], [y], **attrs)
        return
    if pool == "STOCHASTIC":  # test phase: sum(x^2) / sum(x) over the window, 0 if sum <= 0
        sum_x = g.node("AveragePool", [x], **attrs)
        sum_sq = g.node("AveragePool", [g.node("Mul", [x, x])], **attrs)
        ratio = g.node("Div", [sum_sq, sum_x])
        g.node("Where", [g.node("Greater", [sum_x, g.const(0.0)]), ratio, g.const(0.0)], [y])
        return
    if eh == 0 and ew == 0:
        g.node("AveragePool", [x], [y], count_include_pad=1, **attrs)
        return
    rows = [kh / (min(i * sh - ph + kh, h + ph) - (i * sh - ph)) for i in range(oh)]
    cols = [kw / (min(j * sw - pw + kw, w + pw) - (j * sw - pw)) for j in range(ow)]
    fix = np.outer(rows, cols).reshape(1, 1, oh, ow)
    avg = g.node("AveragePool", [x], count_include_pad=1, **attrs)
    g.node("Mul", [avg, g.const(fix)], [y])


@register_onnx("LRN")
def lrn(layer, g):
    """ACROSS_CHANNELS -> LRN (the same window and alpha / n); WITHIN_CHANNEL -> Caffe's own
    chain: x * (1 + alpha * avgpool_n(x^2))^-beta, the pool padded by (n - 1) / 2 with
    padding counted (divisor n^2), k unused as in Caffe."""
    (x,), (y,) = g.bottoms, g.tops
    p = layer.p
    n = p.local_size
    if p.norm_region == "ACROSS_CHANNELS":
        g.node("LRN", [x], [y], size=n, alpha=float(p.alpha), beta=float(p.beta),
               bias=float(p.k))
        return
    pre = (n - 1) // 2
    avg = g.node("AveragePool", [g.node("Mul", [x, x])], kernel_shape=[n, n], strides=[1, 1],
                 pads=[pre, pre, pre, pre], count_include_pad=1)
    s = g.node("Add", [g.node("Mul", [avg, g.const(p.alpha)]), g.const(1.0)])
    g.node("Mul", [x, g.node("Pow", [s, g.const(-p.beta)])], [y])


def _conv_attrs(layer, g) -> dict:
    geom = layer.geom
    if geom.axis != 1:
        raise UserError(f"axis {layer.p.axis}: ONNX convolves (N, C, ...) blobs, the channel "
                        f"axis must be 1")
    return dict(kernel_shape=list(geom.kernel), strides=list(geom.stride),
                pads=list(geom.pad) * 2, dilations=list(geom.dilation), group=layer.p.group)


@register_onnx("Convolution")
def convolution(layer, g):
    """Conv, one per bottom (bottom i -> top i, the weights shared); Caffe's output size is
    ONNX's floor rounding with symmetric pads."""
    attrs = _conv_attrs(layer, g)
    inputs = [g.param("weight")] + ([g.param("bias")] if layer.p.bias_term else [])
    for x, y in zip(g.bottoms, g.tops):
        g.node("Conv", [x, *inputs], [y], **attrs)


@register_onnx("Deconvolution")
def deconvolution(layer, g):
    """ConvTranspose, whose weight layout (C, O / G, *k) is Caffe's deconvolution weight and
    whose output size stride (in - 1) + dilation (k - 1) + 1 - 2 pad is Caffe's."""
    attrs = _conv_attrs(layer, g)
    inputs = [g.param("weight")] + ([g.param("bias")] if layer.p.bias_term else [])
    for x, y in zip(g.bottoms, g.tops):
        g.node("ConvTranspose", [x, *inputs], [y], **attrs)
