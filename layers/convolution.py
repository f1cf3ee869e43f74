"""Convolution: Caffe's convolution layer (a cross-correlation, the kernel is not flipped), with
1, 2 or 3 spatial axes, groups, dilation and several bottoms sharing the weights.

Shapes (G = group, k = kernel, one entry per spatial axis):
    bottom x (N, C, *in), weight w (O, C/G, *k), bias b (O,), top y (N, O, *out) with
    out = (in + 2 pad - (dilation (k - 1) + 1)) / stride + 1   (C's int division, toward 0).
Axes before `axis` are all batch axes (flattened into N); the axes after the channel axis are
spatial, so a 5-D bottom gives a 3-D convolution.

    y[n, o, z] = b[o] + sum_{c in group of o, t} w[o, c, t] x[n, c, z * stride - pad + t * dilation]

(x is 0 outside the image). Computed as Caffe does (base_conv_layer.cpp, im2col.cpp): per
image, im2col gathers the patches into a column buffer col (C/G * prod(k), prod(out)) whose rows
are (channel, kernel row, kernel col), then one GEMM per group: y[n, g] = w[g] @ col[g] + b.
Backward: dW += dy[n] @ col^T, db += sum of dy over batch and space, dx[n] = col2im(w^T @ dy[n]).
A 1x1 kernel with stride 1 and pad 0 uses x itself as the column buffer (Caffe's shortcut).

Speed (measured on 2 Zen 4 cores for the conv layers of LeNet and CIFAR-10 quick; numbers in
benchmarks/bench_conv.py's report): images are split among Numba's threads, each with its own
column buffer, its GEMMs held to one BLAS thread (`serial_blas`): 2 threads run a step 2.0x
faster than 1, where 2 BLAS threads per small per-image GEMM gained nothing. Caffe's per-image
GEMMs beat folding several images into one GEMM (2 to 16 images: the bigger GEMMs gain less
than the transposes in and out of the folded layout cost; the whole batch: its column buffer,
up to 82 MB, falls out of cache). im2col and col2im take about a fifth of a step.

The kernels are shared with Deconvolution (whose forward is this layer's data gradient), which
calls them from Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import numba
import numpy as np
from numba import njit, prange, uint64
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from layerflow import FillerSpec, Layer, UserError, register_layer
from layerflow.blas import can_serialize_blas, gemm, serial_blas
from layerflow.layers.bias import bias_backward

# ---- kernels -----------------------------------------------------------------------------
# Geometry arguments are 3-tuples (depth, height, width): k kernel, s stride, p pad, d dilation,
# o the output size of the convolution (the column side); 1- and 2-D convolutions have leading
# axes of size 1 (kernel 1, stride 1, pad 0).


@njit(cache=True)
def _valid_range(out_len, in_len, stride, pad, offset):
    """[lo, hi): the outputs o whose input o * stride - pad + offset lies in [0, in_len)."""
    lo = 0
    if pad - offset > 0:
        lo = (pad - offset + stride - 1) // stride
    end = in_len + pad - offset
    hi = (end - 1) // stride + 1 if end > 0 else 0
    hi = min(hi, out_len)
    lo = min(lo, hi)
    return lo, hi


@njit(cache=True)
def im2col(x, n, k, s, p, d, o, col):
    """col (C * kd * kh * kw, od * oh * ow) = the patches of image n of x (N, C, D, H, W).

    col[((c * kd + a) * kh + i) * kw + j, (z * oh + y) * ow + q] =
        x[n, c, z * sd - pd + a * dd, y * sh - ph + i * dh, q * sw - pw + j * dw], 0 outside x.
    Rows in Caffe's order (channel, kernel depth, row, col), so w (O, C * kd * kh * kw) @ col
    is the convolution.
    """
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    kd, kh, kw = k
    sd, sh, sw = s
    pd, ph, pw = p
    dd, dh, dw = d
    od, oh, ow = o
    P = od * oh * ow
    # Flat views indexed by unsigned ints: no negative-index wraparound test per element, so
    # the short copy loops vectorize (4-5x faster on 8- to 16-wide rows).
    xf = x.reshape(-1)
    cf = col.reshape(-1)
    zero = x.dtype.type(0)
    for c in range(C):
        for a in range(kd):
            zlo, zhi = _valid_range(od, D, sd, pd, a * dd)
            for i in range(kh):
                ylo, yhi = _valid_range(oh, H, sh, ph, i * dh)
                for j in range(kw):
                    xlo, xhi = _valid_range(ow, W, sw, pw, j * dw)
                    row = (((c * kd + a) * kh + i) * kw + j) * P
                    if zlo > 0 or zhi < od or ylo > 0 or yhi < oh or xlo > 0 or xhi < ow:
                        for q in range(P):  # some taps fall in the padding: they read 0
                            cf[uint64(row + q)] = zero
                    for z in range(zlo, zhi):
                        iz = z * sd - pd + a * dd
                        for y in range(ylo, yhi):
                            iy = y * sh - ph + i * dh
                            dst = row + (z * oh + y) * ow
                            src = (((n * C + c) * D + iz) * H + iy) * W + j * dw - pw
                            if sw == 1:
                                for q in range(xlo, xhi):
                                    cf[uint64(dst + q)] = xf[uint64(src + q)]
                            else:
                                for q in range(xlo, xhi):
                                    cf[uint64(dst + q)] = xf[uint64(src + q * sw)]


@njit(cache=True)
def col2im(col, n, k, s, p, d, o, b, dx):
    """dx[n, c] = b[c] + the entries of col (C * kd * kh * kw, od * oh * ow) added back where
    im2col took them (the adjoint of im2col: overlapping patches add up; padding is dropped).
    dx: (N, C, D, H, W), b: (C,)."""
    C, D, H, W = dx.shape[1], dx.shape[2], dx.shape[3], dx.shape[4]
    kd, kh, kw = k
    sd, sh, sw = s
    pd, ph, pw = p
    dd, dh, dw = d
    od, oh, ow = o
    P = od * oh * ow
    xf = dx.reshape(-1)
    cf = col.reshape(-1)
    plane = D * H * W
    for c in range(C):
        start = (n * C + c) * plane
        bc = b[c]
        for q in range(plane):
            xf[uint64(start + q)] = bc
        for a in range(kd):
            zlo, zhi = _valid_range(od, D, sd, pd, a * dd)
            for i in range(kh):
                ylo, yhi = _valid_range(oh, H, sh, ph, i * dh)
                for j in range(kw):
                    xlo, xhi = _valid_range(ow, W, sw, pw, j * dw)
                    row = (((c * kd + a) * kh + i) * kw + j) * P
                    for z in range(zlo, zhi):
                        iz = z * sd - pd + a * dd
                        for y in range(ylo, yhi):
                            iy = y * sh - ph + i * dh
                            src = row + (z * oh + y) * ow
                            dst = (((n * C + c) * D + iz) * H + iy) * W + j * dw - pw
                            if sw == 1:
                                for q in range(xlo, xhi):
                                    xf[uint64(dst + q)] += cf[uint64(src + q)]
                            else:
                                for q in range(xlo, xhi):
                                    xf[uint64(dst + q * sw)] += cf[uint64(src + q)]


@njit(parallel=True, cache=True)
def conv_im2col_gemm(x, w, b, k, s, p, d, o, one_by_one, cols, out, dy, dwt, do_out, do_dw):
    """Per image n of x (N, C, D, H, W): col = im2col(x[n]) as (G, K, P), K = C/G prod(k), then

        do_out: out[n, g] (Og, P) = w[g] (Og, K) @ col[g] + b      (convolution forward)
        do_dw:  dwt[t, g] (K, Og) = sum over the thread's images of col[g] @ dy[n, g].T

    w: (G, Og, K); b: (G * Og,); out, dy: (N, G, Og, P); cols: (T, G, K, P) one column buffer
    per thread slot t, each taking a contiguous share of the images; dwt: (T, G, K, Og), the
    weight gradient transposed, per slot (zeroed here; `add_transposed` sums the slots into dW:
    col @ dy.T is the faster GEMM, and slots keep threads from racing on dW).
    one_by_one: kernel 1, stride 1, pad 0: x[n] is the column buffer. Unused outputs (out when
    not do_out, dy and dwt when not do_dw) may be any arrays of those types.
    """
    N = x.shape[0]
    T = cols.shape[0]
    G, og, K = w.shape
    P = dy.shape[3]
    zero = x.dtype.type(0)
    for t in prange(T):
        col = cols[t]
        if do_dw:
            dwt[t].fill(zero)
        for n in range(t * N // T, (t + 1) * N // T):
            if one_by_one:
                col = x[n].reshape(G, K, P)
            else:
                im2col(x, n, k, s, p, d, o, col.reshape(G * K, P))
            if do_out:
                for g in range(G):
                    out_g = out[n, g]
                    for c in range(og):
                        bc = b[g * og + c]
                        for q in range(P):
                            out_g[c, q] = bc
                    gemm(w[g], col[g], out_g, False, False, 1.0, 1.0)
            if do_dw:
                for g in range(G):
                    gemm(col[g], dy[n, g], dwt[t, g], False, True, 1.0, 1.0)


@njit(parallel=True, cache=True)
def conv_gemm_col2im(dy, w, b, k, s, p, d, o, one_by_one, cols, dx):
    """Per image n: col[g] (K, P) = w[g].T (K, Og) @ dy[n, g] (Og, P), then
    dx[n] = col2im(col) + b (per channel): the convolution's data gradient (b = 0), and the
    Deconvolution's forward.

    dy: (N, G, Og, P); w: (G, Og, K); b: (C,); cols: (T, G, K, P); dx: (N, C, D, H, W).
    """
    N = dx.shape[0]
    T = cols.shape[0]
    G, og, K = w.shape
    P = dy.shape[3]
    for t in prange(T):
        col = cols[t]
        for n in range(t * N // T, (t + 1) * N // T):
            if one_by_one:
                dx_n = dx[n].reshape(G, K, P)
                for g in range(G):
                    for c in range(K):
                        bc = b[g * K + c]
                        for q in range(P):
                            dx_n[g, c, q] = bc
                    gemm(w[g], dy[n, g], dx_n[g], True, False, 1.0, 1.0)
            else:
                for g in range(G):
                    gemm(w[g], dy[n, g], col[g], True, False, 1.0, 0.0)
                col2im(col.reshape(G * K, P), n, k, s, p, d, o, b, dx)


@njit(cache=True)
def add_transposed(dwt, dw):
    """dw[g] (Og, K) += sum_t dwt[t, g].T; dwt: (T, G, K, Og)."""
    T, G, K, og = dwt.shape
    for t in range(T):
        for g in range(G):
            for r in range(og):
                for c in range(K):
                    dw[g, r, c] += dwt[t, g, c, r]



# ---- parameters and geometry (shared with Deconvolution) -------------------------------

NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
_PER_AXIS = ("one value for every spatial axis or one per axis")


class ConvolutionParams(BaseModel):
    """Caffe's ConvolutionParameter, flat on the layer."""

    model_config = ConfigDict(extra="forbid")
    num_output: int = Field(gt=0, description="number of output channels O")
    bias_term: bool = Field(True, description="add a learned bias per output channel")
    kernel_size: list[Positive] = Field(default_factory=list,
                                        description=f"kernel size: {_PER_AXIS}")
    stride: list[Positive] = Field(default_factory=list,
                                   description=f"stride: {_PER_AXIS} (default 1)")
    pad: list[NonNegative] = Field(default_factory=list,
                                   description=f"zero padding: {_PER_AXIS} (default 0)")
    dilation: list[Positive] = Field(default_factory=list,
                                     description=f"kernel dilation: {_PER_AXIS} (default 1)")
    kernel_h: Optional[Positive] = Field(None, description="2-D only: kernel height (with "
                                                           "kernel_w, instead of kernel_size)")
    kernel_w: Optional[Positive] = Field(None, description="2-D only: kernel width")
    stride_h: Optional[Positive] = Field(None, description="2-D only: stride along the height "
                                                           "(with stride_w, instead of stride)")
    stride_w: Optional[Positive] = Field(None, description="2-D only: stride along the width")
    pad_h: Optional[NonNegative] = Field(None, description="2-D only: padding of the height "
                                                           "(instead of pad; pad_w defaults to 0)")
    pad_w: Optional[NonNegative] = Field(None, description="2-D only: padding of the width "
                                                           "(pad_h defaults to 0)")
    group: int = Field(1, ge=1, description="channel groups: input and output channels are cut "
                                            "into `group` blocks, block g sees only block g")
    weight_filler: FillerSpec = Field(
        default_factory=lambda: FillerSpec(type="xavier"),
        description="filler of the weight (default xavier, as InnerProduct; Caffe's default "
                    "is constant 0)")
    bias_filler: FillerSpec = Field(default_factory=FillerSpec,
                                    description="filler of the bias (default constant 0)")
    axis: int = Field(1, description="the channel axis; axes before it are batch axes, the "
                                     "axes after it spatial (negative counts from the end)")

    @field_validator("kernel_size", "stride", "pad", "dilation", mode="before")
    @classmethod
    def _one_or_list(cls, v):
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _caffe_rules(self):
        """Caffe's rules that do not depend on the bottom (base_conv_layer.cpp LayerSetUp)."""
        if (self.kernel_h is None) != (self.kernel_w is None):
            given, other = ("kernel_h", "kernel_w") if self.kernel_w is None else \
                ("kernel_w", "kernel_h")
            raise ValueError(f"{given} is set but {other} is not: give both, or kernel_size")
        if self.kernel_h is not None and self.kernel_size:
            raise ValueError("give kernel_size or kernel_h/kernel_w, not both")
        if self.kernel_h is None and not self.kernel_size:
            raise ValueError("no kernel: give kernel_size, or kernel_h and kernel_w")
        if (self.stride_h is None) != (self.stride_w is None):
            raise ValueError("stride_h and stride_w go together: give both, or stride")
        if self.stride_h is not None and self.stride:
            raise ValueError("give stride or stride_h/stride_w, not both")
        if (self.pad_h is not None or self.pad_w is not None) and self.pad:
            raise ValueError("give pad or pad_h/pad_w, not both")
        if self.num_output % self.group:
            raise ValueError(f"num_output {self.num_output} is not divisible by group "
                             f"{self.group}")
        return self


@dataclass(frozen=True)
class ConvGeometry:
    """What one convolution needs of a bottom shape: batch, channel and spatial sizes, and
    kernel, stride, pad and dilation per spatial axis (Caffe's rules applied)."""

    axis: int
    ndim: int
    channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]

    def padded(self) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, pad, dilation) as 3-tuples for the kernels: leading axes of size 1."""
        lead = 3 - len(self.kernel)
        return ((1,) * lead + self.kernel, (1,) * lead + self.stride,
                (0,) * lead + self.pad, (1,) * lead + self.dilation)

    @property
    def one_by_one(self) -> bool:
        """Caffe's 1x1 shortcut: every kernel dim 1, stride 1, pad 0 (dilation does not matter)."""
        return all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) and \
            all(p == 0 for p in self.pad)


def param_error(layer, key: str, what: str) -> UserError:
    """A UserError naming the layer, its type and the key."""
    return UserError(f"layer {layer.name} ({layer.type}): {key}: {what}")


def conv_geometry(layer, shape: tuple[int, ...]) -> ConvGeometry:
    """Resolve the layer's kernel, stride, pad and dilation for a bottom of `shape`.

    Raises UserError (naming the layer, the key and the shape) where Caffe would abort: a
    per-axis list whose length is neither 1 nor the number of spatial axes, an _h/_w key on a
    bottom that is not 2-D, channels not divisible by group, no spatial axis or more than 3.
    """
    p = layer.p
    axis = p.axis + len(shape) if p.axis < 0 else p.axis
    if not 0 <= axis < len(shape):
        raise param_error(layer, "axis", f"{p.axis} is out of range for bottom shape {shape}")
    n = len(shape) - axis - 1
    if not 1 <= n <= 3:
        raise param_error(layer, "axis", f"bottom shape {shape} has {n} spatial axes after "
                                         f"the channel axis {axis}; layerflow convolves 1, 2 "
                                         f"or 3")
    channels = shape[axis]
    if channels % p.group:
        raise param_error(layer, "group", f"the bottom's {channels} channels (shape {shape}, "
                                          f"axis {axis}) are not divisible by group {p.group}")

    def per_axis(key, values, default):
        if not values:
            return (default,) * n
        if len(values) == 1:
            return (values[0],) * n
        if len(values) == n:
            return tuple(values)
        raise param_error(layer, key, f"{len(values)} values {values} for the {n} spatial axes "
                                      f"of bottom shape {shape}: give 1 or {n}")

    def pair(key, h, w):
        if n != 2:
            raise param_error(layer, key, f"the _h/_w keys are for 2-D convolutions; bottom "
                                          f"shape {shape} has {n} spatial axes")
        return (h, w)

    kernel = pair("kernel_h", p.kernel_h, p.kernel_w) if p.kernel_h is not None else \
        per_axis("kernel_size", p.kernel_size, 0)
    stride = pair("stride_h", p.stride_h, p.stride_w) if p.stride_h is not None else \
        per_axis("stride", p.stride, 1)
    if p.pad_h is not None or p.pad_w is not None:
        pad = pair("pad_h" if p.pad_h is not None else "pad_w", p.pad_h or 0, p.pad_w or 0)
    else:
        pad = per_axis("pad", p.pad, 0)
    dilation = per_axis("dilation", p.dilation, 1)
    return ConvGeometry(axis, len(shape), channels, kernel, stride, pad, dilation)


def conv_output_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """(size + 2p - (d (k - 1) + 1)) / s + 1 with C's int division (toward zero, not floor)."""
    num = size + 2 * p - (d * (k - 1) + 1)
    return (num // s if num >= 0 else -(-num // s)) + 1


def check_bottoms_alike(layer, bottom_shapes, geom: ConvGeometry) -> tuple[int, ...]:
    """All bottoms have one shape (Caffe: bottom i -> top i with shared weights), with the rank
    and channel count the weight was made for; returns that shape."""
    shapes = [tuple(s) for s in bottom_shapes]
    if any(s != shapes[0] for s in shapes):
        names = layer.bottom_names or [f"bottom[{i}]" for i in range(len(shapes))]
        raise UserError(f"layer {layer.name} ({layer.type}): bottoms must have identical "
                        f"shapes, got " + ", ".join(f"{n} {s}" for n, s in zip(names, shapes)))
    shape = shapes[0]
    if len(shape) != geom.ndim or shape[geom.axis] != geom.channels:
        raise UserError(f"layer {layer.name} ({layer.type}): bottom shape {shape} does not fit "
                        f"the weight, made for {geom.ndim}-D bottoms with {geom.channels} "
                        f"channels on axis {geom.axis}")
    if len(layer.top_names) not in (0, len(shapes)):
        raise UserError(f"layer {layer.name} ({layer.type}): {len(shapes)} bottoms and "
                        f"{len(layer.top_names)} tops; give one top per bottom")
    return shape


def thread_slots(batch: int) -> int:
    """How many images run at once: one per Numba thread when the BLAS can be held to one
    thread per call (`serial_blas`), else 1 (images in turn, the BLAS threads each GEMM)."""
    threads = numba.get_num_threads() if can_serialize_blas() else 1
    return max(1, min(threads, batch))


# ---- the layer -----------------------------------------------------------------------------

@register_layer
class Convolution(Layer):
    Params = ConvolutionParams
    num_bottoms = (1, None)
    num_tops = (1, None)

    def setup(self, bottom_shapes):
        p = self.p
        self.geom = geom = conv_geometry(self, tuple(bottom_shapes[0]))
        self.add_param("weight", (p.num_output, geom.channels // p.group) + geom.kernel,
                       p.weight_filler)
        if p.bias_term:
            self.add_param("bias", (p.num_output,), p.bias_filler)
        self.zero_bias = np.zeros(p.num_output, self.dtype)  # forward without a bias term
        self.zero_bias_dx = np.zeros(geom.channels, self.dtype)  # col2im adds no bias to dx

    def reshape(self, bottom_shapes):
        g, p = self.geom, self.p
        shape = check_bottoms_alike(self, bottom_shapes, g)
        spatial = shape[g.axis + 1:]
        out = []
        for i, size in enumerate(spatial):
            o = conv_output_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
            if o < 1:
                key = "kernel_h" if p.kernel_h is not None else "kernel_size"
                raise param_error(self, key, f"the kernel extent {g.dilation[i]} * "
                                  f"({g.kernel[i]} - 1) + 1 on spatial axis {i} is larger than "
                                  f"the padded input {size} + 2 * {g.pad[i]} (bottom shape "
                                  f"{shape})")
            out.append(o)
        self.batch = int(np.prod(shape[:g.axis], dtype=np.int64))
        self.bottom_shape = shape
        self.in5 = (self.batch, g.channels) + (1,) * (3 - len(spatial)) + spatial
        self.out3 = (1,) * (3 - len(out)) + tuple(out)
        groups, og = p.group, p.num_output // p.group
        k = g.channels // groups * int(np.prod(g.kernel))
        positions = int(np.prod(out))
        self.slots = thread_slots(self.batch)
        self.w3 = (groups, og, k)
        self.out4 = (self.batch, groups, og, positions)
        top_shape = shape[:g.axis] + (p.num_output,) + tuple(out)
        self.tops = [np.zeros(top_shape, self.dtype) for _ in bottom_shapes]
        self.dxs = [np.zeros(shape, self.dtype) for _ in bottom_shapes]
        self.cols = np.zeros((self.slots, groups, k, 0 if g.one_by_one else positions),
                             self.dtype)
        self.dwt = np.zeros((self.slots, groups, k, og), self.dtype)
        return [top_shape] * len(bottom_shapes)

    def forward(self, bottoms):
        w = self.params["weight"].data.reshape(self.w3)
        b = self.params["bias"].data if self.p.bias_term else self.zero_bias
        k, s, p, d = self.geom.padded()
        self.xs = [np.ascontiguousarray(x, self.dtype).reshape(self.in5) for x in bottoms]
        with serial_blas(self.slots > 1):
            for x, top in zip(self.xs, self.tops):
                out = top.reshape(self.out4)
                conv_im2col_gemm(x, w, b, k, s, p, d, self.out3, self.geom.one_by_one,
                                 self.cols, out, out, self.dwt, True, False)
        return self.tops

    def backward(self, top_diffs):
        weight = self.params["weight"]
        w = weight.data.reshape(self.w3)
        k, s, p, d = self.geom.padded()
        one = self.geom.one_by_one
        dxs = []
        with serial_blas(self.slots > 1):
            for i, (x, dtop) in enumerate(zip(self.xs, top_diffs)):
                dy = np.ascontiguousarray(dtop, self.dtype).reshape(self.out4)
                conv_im2col_gemm(x, w, self.zero_bias, k, s, p, d, self.out3, one, self.cols,
                                 dy, dy, self.dwt, False, True)
                add_transposed(self.dwt, weight.grad.reshape(self.w3))
                if self.p.bias_term:
                    bias_backward(dy.reshape(self.batch, self.p.num_output, -1),
                                  self.params["bias"].grad)
                if not self.propagate_down[i]:
                    dxs.append(None)
                    continue
                dx = self.dxs[i].reshape(self.in5)
                conv_gemm_col2im(dy, w, self.zero_bias_dx, k, s, p, d, self.out3, one,
                                 self.cols, dx)
                dxs.append(self.dxs[i])
        return dxs

    def flops(self, bottom_shapes):
        """2 flops (multiply, add) per weight tap and output, plus the bias, per bottom."""
        g, shape = self.geom, tuple(bottom_shapes[0])
        outputs = int(np.prod(shape[:g.axis], dtype=np.int64)) * self.p.num_output
        for i, size in enumerate(shape[g.axis + 1:]):
            outputs *= conv_output_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
        per_output = 2 * g.channels // self.p.group * int(np.prod(g.kernel))
        return len(bottom_shapes) * outputs * (per_output + int(self.p.bias_term))
