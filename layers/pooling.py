"""Pooling: MAX, AVE or STOCHASTIC pooling over 2-D windows of every (n, c) plane, exactly as
Caffe's PoolingLayer (src/caffe/layers/pooling_layer.cpp; STOCHASTIC from pooling_layer.cu, the
only implementation Caffe has of it).

Shapes: bottom x (N, C, H, W), exactly 4 axes; top (N, C, PH, PW); with pool MAX an optional
second top, the argmax mask, of the same shape. Window (i, j) starts at row i * stride_h - pad_h
and column j * stride_w - pad_w and spans kernel_h x kernel_w cells (padding is never a value).

    PH = ceil((H + 2 pad_h - kernel_h) / stride_h) + 1      (round_mode CEIL, Caffe's default)
    PH = floor((H + 2 pad_h - kernel_h) / stride_h) + 1     (round_mode FLOOR)
    with padding, a last window that would start at or beyond H + pad_h is dropped (PH -= 1);
    the same for PW.

    MAX    y = the largest in-image value of the window; ties go to the first in row-major
           order (strict >). The mask holds its index h * W + w in the (unpadded) plane, as a
           float in the second top. Backward: dx[mask] += dout (overlapping windows add up).
    AVE    y = (sum of the in-image cells) / pool_size, where pool_size counts the window's
           cells up to H + pad_h and W + pad_w: padding cells count, the overhang past the
           padded border (that CEIL creates) does not. Backward: dout / pool_size to every
           in-image cell of the window.
    STOCHASTIC (no padding; inputs are meant to be non-negative, e.g. after a ReLU)
      train  one cell per window, drawn with probability x_cell / sum(window): with u uniform
             in (0, 1] (from self.rng), the first cell in row-major order whose running sum
             reaches u * sum. y = x at that cell; backward: dout to that cell only.
      test   y = sum(x^2) / sum(x) over the window (0 when sum(x) <= 0). Caffe has no backward
             for this phase (it reuses stale training indices); here it is the exact gradient
             dx_cell += dout * (2 x_cell - y) / sum(x) (0 when sum(x) <= 0).

Keys: Caffe's PoolingParameter fields, flattened onto the layer. kernel_size or both
kernel_h and kernel_w (Caffe silently prefers kernel_size when it is given with one of the
pair; here that is an error); stride / pad, or both of their _h and _w forms;
global_pooling takes the kernel from the bottom's H x W (at every reshape) and needs pad 0
and stride 1; padding needs pool MAX or AVE and pad < kernel on each axis.

Errors (UserError naming the layer): the key rules above, a second top with pool AVE or
STOCHASTIC, a bottom without exactly 4 axes, an input too small for a single window, and a
window with no input cell at all: CEIL without padding and a stride larger than
the kernel can start the last window past the input (Caffe then outputs -FLT_MAX with mask -1
and its backward writes out of bounds); round_mode FLOOR or a matching stride avoids it.

MAX seeds each window with -FLT_MAX as Caffe does; when no cell beats it (every cell NaN or
<= -FLT_MAX, where Caffe leaves the mask at -1), the first cell of the window is taken.
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from numba import njit, prange
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer

FLT_MAX = 3.4028234663852886e38


# ---- kernels: x (P, H, W) with P = N * C planes, out (P, PH, PW) -------------------------------
# Every kernel runs prange over the planes: the planes are independent, so threads never write
# the same cell, and a plane (a few KB in CIFAR/LeNet nets) stays in L1 for its windows. At one
# thread the parallel build runs as fast as a plain njit one; at two, the benchmark shapes ran
# up to 2x faster whenever both cores were free (benchmarks/bench_pool_lrn.py).
# Windows that lie wholly inside the image (most of them) take a fast path: one loop over the
# window's flat offsets dh * W + dw (`window_offsets`, made once per shape) from the window's
# first cell, in unsigned arithmetic. Numba cannot unroll the two short nested loops of unknown
# length and re-checks their signed indices; on CIFAR-10-quick's pool1 (one thread) the flat
# loop took MAX from 9.3 to 5.0 ms and AVE from 7.9 to 3.7 ms. Border windows take the clipped
# loops.

def window_offsets(kh, kw, width):
    """(kh * kw,) uint64: dh * width + dw in row-major window order (the MAX tie order).

    Unsigned, as the first cell's index is made in the kernels: Numba then skips its
    negative-index wraparound on every load (AVE on pool1: 5.0 -> 3.7 ms)."""
    return (np.arange(kh)[:, None] * width + np.arange(kw)[None, :]).ravel().astype(np.uint64)


@njit(cache=True)
def interior(pad, s, k, size, n):
    """[lo, hi): the windows (start j * s - pad) of the n on an axis that lie inside [0, size)."""
    lo = min((pad + s - 1) // s, n)
    return lo, max(min(n, (size - k + pad) // s + 1), lo)


@njit(cache=True, parallel=True)
def max_pool_forward(x, kh, kw, sh, sw, pad_h, pad_w, offsets, out, mask):
    """out[p, i, j] = max of x[p] over window (i, j); mask[p, i, j] = its index h * W + w.

    x: (P, H, W); out: (P, PH, PW), x's dtype; mask: (P, PH, PW) int32; offsets: from
    `window_offsets(kh, kw, W)`. Strict > in row-major order, seeded with -FLT_MAX as Caffe:
    the first of equal maxima wins; cells outside the image are never candidates.
    """
    n_planes, height, width = x.shape
    ph_n, pw_n = out.shape[1], out.shape[2]
    xf = x.reshape(n_planes, height * width)
    i_lo, i_hi = interior(pad_h, sh, kh, height, ph_n)
    j_lo, j_hi = interior(pad_w, sw, kw, width, pw_n)
    lowest = x.dtype.type(-FLT_MAX)
    for p in prange(n_planes):
        xp = xf[p]
        for i in range(ph_n):
            hs = i * sh - pad_h
            he = min(hs + kh, height)
            hs = max(hs, 0)
            inside = i_lo <= i < i_hi
            for j in range(pw_n):
                ws = j * sw - pad_w
                best = lowest
                arg = -1
                if inside and j_lo <= j < j_hi:
                    first = np.uint64(hs * width + ws)
                    pick = first
                    for t in range(offsets.size):
                        v = xp[first + offsets[t]]
                        if v > best:
                            best = v
                            pick = first + offsets[t]
                    if best > lowest:  # some cell won
                        arg = np.int64(pick)
                else:
                    we = min(ws + kw, width)
                    ws = max(ws, 0)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = xp[h * width + w]
                            if v > best:
                                best = v
                                arg = h * width + w
                if arg < 0:  # nothing above -FLT_MAX (NaN or -inf): the window's first cell
                    arg = hs * width + max(ws, 0)
                    best = xp[arg]
                out[p, i, j] = best
                mask[p, i, j] = arg


@njit(cache=True, parallel=True)
def scatter_pool_backward(dout, mask, dx):
    """dx[p] = 0, then dx[p, mask[p, i, j]] += dout[p, i, j] (MAX, and STOCHASTIC in train).

    dout, mask: (P, PH, PW); dx: (P, H * W), the bottom's planes flattened.
    """
    n_planes, ph_n, pw_n = dout.shape
    zero = dx.dtype.type(0)
    for p in prange(n_planes):
        for k in range(dx.shape[1]):
            dx[p, k] = zero
        for i in range(ph_n):
            for j in range(pw_n):
                dx[p, mask[p, i, j]] += dout[p, i, j]


@njit(cache=True, parallel=True, error_model="numpy")
def ave_pool_forward(x, kh, kw, sh, sw, pad_h, pad_w, offsets, out):
    """out[p, i, j] = sum of x[p] over the in-image cells of window (i, j) / pool_size, with
    pool_size = the window's cell count clipped at H + pad_h, W + pad_w (padding counts).

    x: (P, H, W); out: (P, PH, PW); offsets: from `window_offsets(kh, kw, W)`.
    """
    n_planes, height, width = x.shape
    ph_n, pw_n = out.shape[1], out.shape[2]
    xf = x.reshape(n_planes, height * width)
    i_lo, i_hi = interior(pad_h, sh, kh, height, ph_n)
    j_lo, j_hi = interior(pad_w, sw, kw, width, pw_n)
    zero = x.dtype.type(0)
    full = x.dtype.type(kh * kw)
    for p in prange(n_planes):
        xp = xf[p]
        for i in range(ph_n):
            hs = i * sh - pad_h
            he = min(hs + kh, height + pad_h)
            rows = he - hs
            hs = max(hs, 0)
            he = min(he, height)
            inside = i_lo <= i < i_hi
            for j in range(pw_n):
                ws = j * sw - pad_w
                s = zero
                if inside and j_lo <= j < j_hi:
                    first = np.uint64(hs * width + ws)
                    for t in range(offsets.size):
                        s += xp[first + offsets[t]]
                    out[p, i, j] = s / full
                else:
                    we = min(ws + kw, width + pad_w)
                    pool_size = rows * (we - ws)
                    ws = max(ws, 0)
                    we = min(we, width)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            s += xp[h * width + w]
                    out[p, i, j] = s / x.dtype.type(pool_size)


@njit(cache=True, parallel=True, error_model="numpy")
def ave_pool_backward(dout, kh, kw, sh, sw, pad_h, pad_w, offsets, dx):
    """dx[p] = 0, then every in-image cell of window (i, j) += dout[p, i, j] / pool_size.

    dout: (P, PH, PW); dx: (P, H, W); offsets: from `window_offsets(kh, kw, W)`.
    """
    n_planes, height, width = dx.shape
    ph_n, pw_n = dout.shape[1], dout.shape[2]
    dxf = dx.reshape(n_planes, height * width)
    i_lo, i_hi = interior(pad_h, sh, kh, height, ph_n)
    j_lo, j_hi = interior(pad_w, sw, kw, width, pw_n)
    zero = dx.dtype.type(0)
    full = dx.dtype.type(kh * kw)
    for p in prange(n_planes):
        dxp = dxf[p]
        for k in range(height * width):
            dxp[k] = zero
        for i in range(ph_n):
            hs = i * sh - pad_h
            he = min(hs + kh, height + pad_h)
            rows = he - hs
            hs = max(hs, 0)
            he = min(he, height)
            inside = i_lo <= i < i_hi
            for j in range(pw_n):
                ws = j * sw - pad_w
                if inside and j_lo <= j < j_hi:
                    g = dout[p, i, j] / full
                    first = np.uint64(hs * width + ws)
                    for t in range(offsets.size):
                        dxp[first + offsets[t]] += g
                else:
                    we = min(ws + kw, width + pad_w)
                    g = dout[p, i, j] / dx.dtype.type(rows * (we - ws))
                    ws = max(ws, 0)
                    we = min(we, width)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            dxp[h * width + w] += g


@njit(cache=True, parallel=True)
def stochastic_pool_forward_train(x, kh, kw, sh, sw, u, out, mask):
    """Sample one cell per window with probability proportional to its value (Caffe's
    StoPoolForwardTrain): threshold t = (1 - u) * sum(window), so the draw is in (0, 1] as
    curand's; pick the first cell, row-major, whose running sum is >= t.

    x: (P, H, W); u: (P, PH, PW) float64 in [0, 1); out: (P, PH, PW); mask: (P, PH, PW) int32,
    the picked index h * W + w. No padding. If no running sum reaches t (only possible when the
    window's sum is negative), the window's last cell is picked.
    """
    n_planes, height, width = x.shape
    ph_n, pw_n = out.shape[1], out.shape[2]
    zero = x.dtype.type(0)
    for p in prange(n_planes):
        for i in range(ph_n):
            hs = i * sh
            he = min(hs + kh, height)
            for j in range(pw_n):
                ws = j * sw
                we = min(ws + kw, width)
                total = zero
                for h in range(hs, he):
                    for w in range(ws, we):
                        total += x[p, h, w]
                threshold = x.dtype.type(1.0 - u[p, i, j]) * total
                arg = (he - 1) * width + we - 1
                running = zero
                found = False
                for h in range(hs, he):
                    for w in range(ws, we):
                        running += x[p, h, w]
                        if running >= threshold:
                            arg = h * width + w
                            found = True
                            break
                    if found:
                        break
                out[p, i, j] = x[p, arg // width, arg % width]
                mask[p, i, j] = arg


@njit(cache=True, parallel=True, error_model="numpy")
def stochastic_pool_forward_test(x, kh, kw, sh, sw, out):
    """out[p, i, j] = sum(x^2) / sum(x) over window (i, j), 0 when sum(x) <= 0 (Caffe's
    StoPoolForwardTest). x: (P, H, W); out: (P, PH, PW). No padding."""
    n_planes, height, width = x.shape
    ph_n, pw_n = out.shape[1], out.shape[2]
    zero = x.dtype.type(0)
    for p in prange(n_planes):
        for i in range(ph_n):
            hs = i * sh
            he = min(hs + kh, height)
            for j in range(pw_n):
                ws = j * sw
                we = min(ws + kw, width)
                s1 = zero
                s2 = zero
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = x[p, h, w]
                        s1 += v
                        s2 += v * v
                out[p, i, j] = s2 / s1 if s1 > zero else zero


@njit(cache=True, parallel=True, error_model="numpy")
def stochastic_pool_backward_test(x, out, dout, kh, kw, sh, sw, dx):
    """Gradient of the test-phase output y = S2 / S1 (S1 = sum x, S2 = sum x^2 over the
    window): dx_cell += dout * (2 x_cell - y) / S1, nothing where S1 <= 0.

    x, dx: (P, H, W); out (y), dout: (P, PH, PW). No padding.
    """
    n_planes, height, width = x.shape
    ph_n, pw_n = out.shape[1], out.shape[2]
    zero = x.dtype.type(0)
    two = x.dtype.type(2)
    for p in prange(n_planes):
        for h in range(height):
            for w in range(width):
                dx[p, h, w] = zero
        for i in range(ph_n):
            hs = i * sh
            he = min(hs + kh, height)
            for j in range(pw_n):
                ws = j * sw
                we = min(ws + kw, width)
                s1 = zero
                for h in range(hs, he):
                    for w in range(ws, we):
                        s1 += x[p, h, w]
                if not s1 > zero:
                    continue
                g = dout[p, i, j] / s1
                y = out[p, i, j]
                for h in range(hs, he):
                    for w in range(ws, we):
                        dx[p, h, w] += g * (two * x[p, h, w] - y)


# ---- the layer ----------------------------------------------------------------------------

class PoolingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool: Literal["MAX", "AVE", "STOCHASTIC"] = Field("MAX", description="MAX | AVE | STOCHASTIC")
    kernel_size: Optional[int] = Field(None, gt=0, description="window side (or kernel_h and "
                                                               "kernel_w)")
    kernel_h: Optional[int] = Field(None, gt=0, description="window height (with kernel_w)")
    kernel_w: Optional[int] = Field(None, gt=0, description="window width (with kernel_h)")
    stride: Optional[int] = Field(None, gt=0, description="step between windows (default 1)")
    stride_h: Optional[int] = Field(None, gt=0, description="vertical step (with stride_w)")
    stride_w: Optional[int] = Field(None, gt=0, description="horizontal step (with stride_h)")
    pad: Optional[int] = Field(None, ge=0, description="implicit border on each side, never a "
                                                       "value (default 0; MAX and AVE only)")
    pad_h: Optional[int] = Field(None, ge=0, description="top and bottom border (with pad_w)")
    pad_w: Optional[int] = Field(None, ge=0, description="left and right border (with pad_h)")
    global_pooling: bool = Field(False, description="one window over the whole H x W plane")
    round_mode: Literal["CEIL", "FLOOR"] = Field("CEIL", description="rounding of the output "
                                                                     "size: CEIL | FLOOR")


@register_layer
class Pooling(Layer):
    Params = PoolingParams
    num_tops = (1, 2)

    def _error(self, msg: str) -> UserError:
        return UserError(f"layer {self.name} (Pooling): {msg}")

    def _pair(self, key: str, prefix: str, default: int | None):
        """(h, w, key_h, key_w) from `key` or from `<prefix>_h` and `<prefix>_w`, with the keys
        the values came from; Caffe's rule: one or the pair, never both, never half a pair."""
        p = self.p
        kh, kw = f"{prefix}_h", f"{prefix}_w"
        one, h, w = getattr(p, key), getattr(p, kh), getattr(p, kw)
        given = ", ".join(f"{k}={v}" for k, v in ((key, one), (kh, h), (kw, w)) if v is not None)
        if one is not None and (h is not None or w is not None):
            raise self._error(f"{key}: give {key} or both {kh} and {kw}, not both (got {given})")
        if one is None and (h is None) != (w is None):
            raise self._error(f"{kh}/{kw}: give both {kh} and {kw}, or {key} (got {given})")
        if one is not None:
            return one, one, key, key
        if h is not None:
            return h, w, kh, kw
        return default, default, key, key

    def setup(self, bottom_shapes):
        p = self.p
        n_tops = len(self.top_names) or 1
        if n_tops == 2 and p.pool != "MAX":
            raise self._error(f"pool: a second top (the argmax mask) exists only for pool MAX, "
                              f"got pool {p.pool} with tops {self.top_names}")
        if p.global_pooling:
            given = [f"{k}={getattr(p, k)}" for k in ("kernel_size", "kernel_h", "kernel_w")
                     if getattr(p, k) is not None]
            if given:
                raise self._error(f"global_pooling: the kernel is the bottom's H x W; remove "
                                  f"{', '.join(given)}")
            self.kernel = self.kernel_keys = None
        else:
            kh, kw, key_h, key_w = self._pair("kernel_size", "kernel", None)
            if kh is None:
                raise self._error("kernel_size: missing; give kernel_size, or kernel_h and "
                                  "kernel_w (or global_pooling: true)")
            self.kernel, self.kernel_keys = (kh, kw), (key_h, key_w)
        pad_h, pad_w, pad_key_h, pad_key_w = self._pair("pad", "pad", 0)
        sh, sw, _, _ = self._pair("stride", "stride", 1)
        self.pad, self.stride = (pad_h, pad_w), (sh, sw)
        if p.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self._error(f"global_pooling: needs pad 0 and stride 1, got pad "
                              f"{self.pad} and stride {self.stride} (h, w)")
        if self.pad != (0, 0):
            if p.pool not in ("MAX", "AVE"):
                raise self._error(f"pad: padding works only with pool MAX or AVE, got pool "
                                  f"{p.pool} with pad {self.pad} (h, w)")
            for axis, (pad, k, pkey, kkey) in enumerate(
                    zip(self.pad, self.kernel, (pad_key_h, pad_key_w), self.kernel_keys)):
                if pad >= k:
                    raise self._error(f"{pkey}: must be smaller than {kkey}, got {pkey}={pad} "
                                      f"and {kkey}={k}")

    def _pooled(self, size: int, k: int, s: int, pad: int, axis: str, shape) -> int:
        """Caffe's output size on one axis: CEIL or FLOOR, then the last-window rule."""
        span = size + 2 * pad - k
        n = (-(-span // s) if self.p.round_mode == "CEIL" else span // s) + 1
        if pad > 0 and (n - 1) * s >= size + pad:
            n -= 1  # the last window would start in the trailing padding: Caffe drops it
        if n < 1:
            raise self._error(f"kernel {k} leaves no window on the input {axis} {size} + "
                              f"2*{pad} padding (stride {s}, round_mode {self.p.round_mode}) "
                              f"of bottom shape {shape}")
        if (n - 1) * s - pad >= size:
            raise self._error(f"stride {s} > kernel {k} with round_mode CEIL leaves the last "
                              f"window (start {(n - 1) * s - pad}) outside the input {axis} "
                              f"{size} of bottom shape {shape}; use round_mode FLOOR or "
                              f"another stride")
        return n

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            bottom = self.bottom_names[0] if self.bottom_names else "bottom 0"
            raise self._error(f"bottom {bottom} has shape {shape}; Pooling needs 4 axes "
                              f"(N, C, H, W)")
        n, c, height, width = shape
        kh, kw = self.kernel if self.kernel is not None else (height, width)
        (pad_h, pad_w), (sh, sw) = self.pad, self.stride
        ph = self._pooled(height, kh, sh, pad_h, "height", shape)
        pw = self._pooled(width, kw, sw, pad_w, "width", shape)
        self.window = (kh, kw, sh, sw, pad_h, pad_w)
        self.offsets = window_offsets(kh, kw, width)
        self.bottom_shape = shape
        top_shape = (n, c, ph, pw)
        self.top = np.zeros(top_shape, self.dtype)
        self.mask = np.zeros(top_shape, np.int32)
        self.dx = np.zeros(shape, self.dtype)
        self.u = np.zeros(top_shape, np.float64) if self.p.pool == "STOCHASTIC" else None
        two_tops = len(self.top_names) == 2
        self.top_mask = np.zeros(top_shape, self.dtype) if two_tops else None
        return [top_shape] * (2 if self.top_mask is not None else 1)

    def forward(self, bottoms):
        n, c, height, width = self.bottom_shape
        ph, pw = self.top.shape[2:]
        self.x = np.ascontiguousarray(bottoms[0], self.dtype)
        x = self.x.reshape(n * c, height, width)
        out = self.top.reshape(n * c, ph, pw)
        mask = self.mask.reshape(n * c, ph, pw)
        kh, kw, sh, sw, pad_h, pad_w = self.window
        pool = self.p.pool
        if pool == "MAX":
            max_pool_forward(x, kh, kw, sh, sw, pad_h, pad_w, self.offsets, out, mask)
            if self.top_mask is not None:
                np.copyto(self.top_mask, self.mask)
                return [self.top, self.top_mask]
        elif pool == "AVE":
            ave_pool_forward(x, kh, kw, sh, sw, pad_h, pad_w, self.offsets, out)
        elif self.phase == "train":
            self.rng.random(out=self.u)
            stochastic_pool_forward_train(x, kh, kw, sh, sw, self.u.reshape(n * c, ph, pw),
                                          out, mask)
        else:
            stochastic_pool_forward_test(x, kh, kw, sh, sw, out)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        n, c, height, width = self.bottom_shape
        ph, pw = self.top.shape[2:]
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(n * c, ph, pw)
        kh, kw, sh, sw, pad_h, pad_w = self.window
        pool = self.p.pool
        if pool == "MAX" or (pool == "STOCHASTIC" and self.phase == "train"):
            scatter_pool_backward(dout, self.mask.reshape(n * c, ph, pw),
                                  self.dx.reshape(n * c, height * width))
        elif pool == "AVE":
            ave_pool_backward(dout, kh, kw, sh, sw, pad_h, pad_w, self.offsets,
                              self.dx.reshape(n * c, height, width))
        else:
            stochastic_pool_backward_test(self.x.reshape(n * c, height, width),
                                          self.top.reshape(n * c, ph, pw), dout, kh, kw, sh,
                                          sw, self.dx.reshape(n * c, height, width))
        return [self.dx]

    def flops(self, bottom_shapes):
        """One add or compare per window cell (STOCHASTIC: a few)."""
        n, c, height, width = bottom_shapes[0]
        kh, kw = self.kernel if self.kernel is not None else (height, width)
        (pad_h, pad_w), (sh, sw) = self.pad, self.stride
        ph = self._pooled(height, kh, sh, pad_h, "height", tuple(bottom_shapes[0]))
        pw = self._pooled(width, kw, sw, pad_w, "width", tuple(bottom_shapes[0]))
        return n * c * ph * pw * kh * kw
