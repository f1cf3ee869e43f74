"""LRN: local response normalization, exactly as Caffe's LRNLayer (src/caffe/layers/lrn_layer.cpp).

Shapes: bottom x and top y (N, C, H, W), exactly 4 axes. n = local_size (odd), pre = (n-1)/2.

    ACROSS_CHANNELS   s_c = k + (alpha / n) * sum_{j = c-pre}^{c+pre} x_j^2,   y_c = x_c s_c^-beta
        Channels outside [0, C) count as zeros: the factor stays alpha / n at the borders, not
        alpha over the number of channels present (Caffe zero-pads the squared input).
        dx_c = dout_c s_c^-beta - (2 alpha beta / n) x_c sum_{j: c in window(j)} dout_j y_j / s_j
        (the window is symmetric, so j runs over c-pre..c+pre too).
    WITHIN_CHANNEL    s = 1 + alpha * avepool_n(x^2),   y = x s^-beta
        Caffe builds it from sub-layers: Power (x^2), AVE Pooling (kernel n, stride 1, pad
        pre), Power (shift 1, scale alpha, power -beta), Eltwise PROD with x. With that padding
        the AVE divisor is always n^2 (padding cells count), so
        s = 1 + (alpha / n^2) * sum of x^2 over the n x n window centred on (h, w), zeros
        outside the image. `k` is IGNORED: Caffe hard-codes the shift 1.
        dx = dout s^-beta - (2 alpha beta / n^2) x boxsum_n(dout y / s)   (the chain through
        those sub-layers; the box sum is its own adjoint, the window being symmetric).

The scale s is kept from forward (Caffe's scale_) and s^-beta recomputed in backward, as Caffe's
CPU code does. Window sums are taken directly over the window rather than Caffe's running
add-head/subtract-tail sum over channels, which in float32 loses the small terms after a large
one has left the window.

s^-beta: Numba has no vectorised pow here (no SVML), and a scalar pow call costs ~15x a
sqrt; so beta 0.75 (Caffe's default), 0.5 and 1 go through sqrt and division (within 2 ulp of
pow), every other beta through pow.

Kernels: prange over the (n, c) planes (ACROSS forward, both WITHIN passes) or the images
(ACROSS backward, which needs the ratios of the neighbouring channels); scratch is per thread
(`numba.get_thread_id()`), allocated at reshape. The inner loops run over whole rows or planes
with plain `range` indices, the form Numba vectorises.

Errors (UserError naming the layer): local_size even (Caffe's "LRN only supports odd values
for local_size"), a bottom without exactly 4 axes.
"""
from __future__ import annotations

from typing import Literal

import numba
import numpy as np
from numba import njit, prange
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer


@njit(cache=True, error_model="numpy")
def neg_pow(s, beta, out):
    """out[i] = s[i] ** -beta for 1-D s, out; sqrt/division for beta 0.75, 0.5 and 1."""
    one = s.dtype.type(1)
    if beta == s.dtype.type(0.75):
        for i in range(s.size):
            r = one / np.sqrt(s[i])
            out[i] = r * np.sqrt(r)
    elif beta == s.dtype.type(0.5):
        for i in range(s.size):
            out[i] = one / np.sqrt(s[i])
    elif beta == one:
        for i in range(s.size):
            out[i] = one / s[i]
    else:
        for i in range(s.size):
            out[i] = s[i] ** -beta


@njit(cache=True, parallel=True, error_model="numpy")
def lrn_across_forward(x, size, alpha_over_n, k, beta, scale, out):
    """scale[n, c] = k + alpha_over_n * sum of x[n, j]^2 over the channels j within
    (size-1)/2 of c; out = x * scale^-beta. x, scale, out: (N, C, H*W). prange over N*C
    planes: each output plane reads `size` input planes and nothing else."""
    n_img, n_ch, hw = x.shape
    pre = (size - 1) // 2
    for q in prange(n_img * n_ch):
        n = q // n_ch
        c = q - n * n_ch
        s = scale[n, c]
        for i in range(hw):
            s[i] = k
        for j in range(max(c - pre, 0), min(c + pre + 1, n_ch)):
            xj = x[n, j]
            for i in range(hw):
                s[i] += alpha_over_n * (xj[i] * xj[i])
        o = out[n, c]
        neg_pow(s, beta, o)
        xc = x[n, c]
        for i in range(hw):
            o[i] *= xc[i]


@njit(cache=True, parallel=True, error_model="numpy")
def lrn_across_backward(x, y, scale, dout, size, alpha_over_n, beta, ratio, dx):
    """dx[n, c] = dout[n, c] scale[n, c]^-beta - 2 alpha_over_n beta x[n, c]
                  * sum_{|j - c| <= pre} dout[n, j] y[n, j] / scale[n, j]

    x, y, scale, dout, dx: (N, C, H*W); ratio: (threads, C, H*W) scratch, one slab per thread
    holding dout y / scale of the image it works on. prange over N.
    """
    n_img, n_ch, hw = x.shape
    pre = (size - 1) // 2
    factor = x.dtype.type(2) * alpha_over_n * beta
    for n in prange(n_img):
        r = ratio[numba.get_thread_id()]
        for c in range(n_ch):
            for i in range(hw):
                r[c, i] = dout[n, c, i] * y[n, c, i] / scale[n, c, i]
        for c in range(n_ch):
            d = dx[n, c]
            neg_pow(scale[n, c], beta, d)
            for i in range(hw):
                d[i] *= dout[n, c, i]
            xc = x[n, c]
            for j in range(max(c - pre, 0), min(c + pre + 1, n_ch)):
                for i in range(hw):
                    d[i] -= factor * xc[i] * r[j, i]


@njit(cache=True, error_model="numpy")
def box_sum(a, b, c, pre, height):
    """c[h, w] = sum of a over the rows h-pre..h+pre and columns w-pre..w+pre, zeros outside.

    a, b, c: (H, Wp) planes whose image sits in columns pre..Wp-pre-1; a's pad columns hold
    zeros (they are never written), b is scratch. Both passes are long contiguous loops over
    the flattened plane, which Numba vectorises: the rows pass adds a shifted by d rows, the
    columns pass adds b shifted by d cells (the zero pad columns keep rows apart), so c is
    right in the image columns and meaningless in the pad columns.
    """
    wp = a.shape[1]
    n = height * wp
    af, bf, cf = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    for k in range(n):
        bf[k] = af[k]
    for d in range(1, min(pre, height - 1) + 1):
        m = (height - d) * wp
        below, upper = af[d * wp:], bf[:m]   # row h gets row h + d
        for k in range(m):
            upper[k] += below[k]
        above, lower = af[:m], bf[d * wp:]   # row h gets row h - d
        for k in range(m):
            lower[k] += above[k]
    for k in range(n):
        cf[k] = bf[k]
    for d in range(1, pre + 1):
        m = n - d
        right, left = bf[d:], cf[:m]
        for k in range(m):
            left[k] += right[k]
        before, after = bf[:m], cf[d:]
        for k in range(m):
            after[k] += before[k]


@njit(cache=True, parallel=True, error_model="numpy")
def lrn_within_forward(x, size, alpha_over_nn, beta, sq, scale, out):
    """scale[p] = 1 + alpha_over_nn * (sum of x[p]^2 over the size x size window centred on
    each cell, zeros outside); out = x * scale^-beta.

    x, scale, out: (P, H, W) with P = N*C planes; sq: (threads, 3, H, W + size - 1) scratch
    with zero pad columns (see `box_sum`). prange over planes.
    """
    n_planes, height, width = x.shape
    pre = (size - 1) // 2
    one = x.dtype.type(1)
    for p in prange(n_planes):
        t = numba.get_thread_id()
        a = sq[t, 0]
        for h in range(height):
            xr, ar = x[p, h], a[h, pre:pre + width]
            for w in range(width):
                ar[w] = xr[w] * xr[w]
        box_sum(a, sq[t, 1], sq[t, 2], pre, height)
        c = sq[t, 2]
        for h in range(height):
            cr, sr = c[h, pre:pre + width], scale[p, h]
            for w in range(width):
                sr[w] = one + alpha_over_nn * cr[w]
        sp, op, xp = scale[p].reshape(-1), out[p].reshape(-1), x[p].reshape(-1)
        neg_pow(sp, beta, op)
        for k in range(height * width):
            op[k] *= xp[k]


@njit(cache=True, parallel=True, error_model="numpy")
def lrn_within_backward(x, y, scale, dout, size, alpha_over_nn, beta, sq, dx):
    """dx[p] = dout scale^-beta - 2 alpha_over_nn beta x boxsum(dout y / scale), the box sum
    over the size x size window centred on each cell (zeros outside).

    x, y, scale, dout, dx: (P, H, W); sq: (threads, 3, H, W + size - 1) scratch as in
    `lrn_within_forward`. prange over planes.
    """
    n_planes, height, width = x.shape
    pre = (size - 1) // 2
    factor = x.dtype.type(2) * alpha_over_nn * beta
    plane = height * width
    for p in prange(n_planes):
        t = numba.get_thread_id()
        a = sq[t, 0]
        for h in range(height):
            dr, yr, sr, ar = dout[p, h], y[p, h], scale[p, h], a[h, pre:pre + width]
            for w in range(width):
                ar[w] = dr[w] * yr[w] / sr[w]
        box_sum(a, sq[t, 1], sq[t, 2], pre, height)
        powed = sq[t, 1].reshape(-1)[:plane]   # sq[t, 1] is free again: scale^-beta
        neg_pow(scale[p].reshape(-1), beta, powed)
        c = sq[t, 2]
        for h in range(height):
            cr, pr = c[h, pre:pre + width], powed[h * width:(h + 1) * width]
            dr, xr, dxr = dout[p, h], x[p, h], dx[p, h]
            for w in range(width):
                dxr[w] = dr[w] * pr[w] - factor * xr[w] * cr[w]


class LRNParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    local_size: int = Field(5, gt=0, description="n: channels summed (ACROSS_CHANNELS) or the "
                                                 "side of the square window (WITHIN_CHANNEL); "
                                                 "odd")
    alpha: float = Field(1.0, description="scaling of the sum of squares")
    beta: float = Field(0.75, description="exponent: y = x * scale^-beta")
    k: float = Field(1.0, description="constant of the scale (ACROSS_CHANNELS only; "
                                      "WITHIN_CHANNEL uses 1, as Caffe)")
    norm_region: Literal["ACROSS_CHANNELS", "WITHIN_CHANNEL"] = Field(
        "ACROSS_CHANNELS", description="ACROSS_CHANNELS | WITHIN_CHANNEL")


@register_layer
class LRN(Layer):
    Params = LRNParams

    def setup(self, bottom_shapes):
        n = self.p.local_size
        if n % 2 != 1:
            raise UserError(f"layer {self.name} (LRN): local_size: must be odd, got {n}")
        t = self.dtype.type
        self.across = self.p.norm_region == "ACROSS_CHANNELS"
        self.size = n
        self.beta = t(self.p.beta)
        self.alpha_over = t(self.p.alpha / n) if self.across else t(self.p.alpha / (n * n))
        self.k = t(self.p.k)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            bottom = self.bottom_names[0] if self.bottom_names else "bottom 0"
            raise UserError(f"layer {self.name} (LRN): bottom {bottom} has shape {shape}; LRN "
                            f"needs 4 axes (N, C, H, W)")
        n, c, height, width = shape
        threads = numba.config.NUMBA_NUM_THREADS  # get_thread_id() is below this
        self.shape = shape
        self.top = np.zeros(shape, self.dtype)
        self.scale = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        if self.across:
            self.scratch = np.zeros((threads, c, height * width), self.dtype)
        else:
            self.scratch = np.zeros((threads, 3, height, width + self.size - 1), self.dtype)
        return [shape]

    def _views(self, a):
        n, c, height, width = self.shape
        return a.reshape(n, c, height * width) if self.across else a.reshape(n * c, height, width)

    def forward(self, bottoms):
        self.x = np.ascontiguousarray(bottoms[0], self.dtype)
        x, scale, out = self._views(self.x), self._views(self.scale), self._views(self.top)
        if self.across:
            lrn_across_forward(x, self.size, self.alpha_over, self.k, self.beta, scale, out)
        else:
            lrn_within_forward(x, self.size, self.alpha_over, self.beta, self.scratch, scale,
                               out)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        dout = self._views(np.ascontiguousarray(top_diffs[0], self.dtype))
        args = (self._views(self.x), self._views(self.top), self._views(self.scale), dout,
                self.size, self.alpha_over, self.beta, self.scratch, self._views(self.dx))
        if self.across:
            lrn_across_backward(*args)
        else:
            lrn_within_backward(*args)
        return [self.dx]

    def flops(self, bottom_shapes):
        """Per element: 2 per window term (n across, 2n within), ~6 for the rest."""
        count = int(np.prod(bottom_shapes[0]))
        n = self.p.local_size
        return count * ((2 * n if self.across else 4 * n) + 6)
