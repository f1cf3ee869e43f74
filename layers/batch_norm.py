"""BatchNorm: Caffe's batch normalization, y = (x - mean) / sqrt(var + eps), with no affine part
(follow it with a Scale layer with bias_term: true for gamma and beta).

Shapes: the bottom is (N, C) or (N, C, ...) and is viewed as x: (N, C, S), S the product of the
axes after C; statistics are per channel, over the m = N*S values of (N, S). The top has the
bottom's shape.

Params (Caffe's three blobs, all starting at 0, created `learnable=False`: lr_mult and
decay_mult are forced to 0 and the solver never changes them; only forward does):
    mean (C,)          running SUM of batch means
    variance (C,)      running SUM of unbiased batch variances
    scale_factor (1,)  running sum of the weights; the statistics are mean / scale_factor and
                       variance / scale_factor (both 0 when scale_factor is 0)

Batch statistics (use_global_stats false; Caffe's default in the train phase):
    mu = mean_{n,s} x,  var = mean_{n,s} (x - mu)^2  (biased, to normalize),
    y = (x - mu) / sqrt(var + eps), then the running sums (every such forward, so iter_size k
    updates them k times per iteration):
    scale_factor = maf * scale_factor + 1
    mean         = maf * mean + mu
    variance     = maf * variance + m / (m - 1) * var   (unbiased; the factor is 1 when m = 1)
    dx = (dout - mean_{n,s}(dout) - mean_{n,s}(dout * y) * y) / sqrt(var + eps)
Global statistics (use_global_stats true; Caffe's default in the test phase):
    f = 0 if scale_factor == 0 else 1 / scale_factor
    y = (x - f*mean) / sqrt(f*variance + eps),   dx = dout / sqrt(f*variance + eps)
The statistics params get no gradient (their grads stay 0).

Source: Caffe's batch_norm_layer.cpp. Not copied from Caffe: a param: entry with lr_mult != 0
is fatal there; here add_param(learnable=False) forces 0 whatever the YAML says.
Errors: a bottom with fewer than 2 axes, or whose channel count differs from the params'.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import FillerSpec, Layer, UserError, register_layer

# Sums may be reassociated so LLVM vectorizes them (numpy's sums are SIMD too); no flag
# that changes NaN or inf handling.
REDUCE = {"reassoc", "nsz"}


@njit(cache=True, fastmath=REDUCE)
def batch_norm_train_forward(x, eps, maf, correction, out, mean, var, std, run_mean, run_var,
                             run_factor):
    """Normalize x (N, C, S) with its own per-channel statistics into out (N, C, S).

    Writes this batch's mean, biased var and std = sqrt(var + eps) (C,) and updates the
    running sums in place: run_factor (1,) = maf*run_factor + 1, run_mean (C,) = maf*run_mean
    + mean, run_var (C,) = maf*run_var + correction*var (correction = m/(m-1)).
    """
    n, c, s = x.shape
    m = x.dtype.type(n * s)
    zero = x.dtype.type(0)
    for j in range(c):
        mean[j] = zero
        var[j] = zero
    for i in range(n):
        for j in range(c):
            acc = zero
            for k in range(s):
                acc += x[i, j, k]
            mean[j] += acc
    for j in range(c):
        mean[j] = mean[j] / m
    for i in range(n):
        for j in range(c):
            mu = mean[j]
            acc = zero
            for k in range(s):
                d = x[i, j, k] - mu
                acc += d * d
            var[j] += acc
    for j in range(c):
        var[j] = var[j] / m
        std[j] = np.sqrt(var[j] + eps)
    for i in range(n):
        for j in range(c):
            mu = mean[j]
            sd = std[j]
            for k in range(s):
                out[i, j, k] = (x[i, j, k] - mu) / sd
    run_factor[0] = maf * run_factor[0] + x.dtype.type(1)
    for j in range(c):
        run_mean[j] = maf * run_mean[j] + mean[j]
        run_var[j] = maf * run_var[j] + correction * var[j]


@njit(cache=True)
def batch_norm_global_forward(x, eps, run_mean, run_var, run_factor, out, mean, std):
    """Normalize x (N, C, S) with the stored statistics: f = 1/run_factor (0 if it is 0),
    mean = f*run_mean, std = sqrt(f*run_var + eps) (C,, written), out = (x - mean) / std."""
    n, c, s = x.shape
    zero = x.dtype.type(0)
    f = zero if run_factor[0] == zero else x.dtype.type(1) / run_factor[0]
    for j in range(c):
        mean[j] = f * run_mean[j]
        std[j] = np.sqrt(f * run_var[j] + eps)
    for i in range(n):
        for j in range(c):
            mu = mean[j]
            sd = std[j]
            for k in range(s):
                out[i, j, k] = (x[i, j, k] - mu) / sd


@njit(cache=True, fastmath=REDUCE)
def batch_norm_train_backward(y, dout, std, sums, dx):
    """dx (N, C, S) = (dout - mean(dout) - mean(dout*y) * y) / std, means per channel over
    (N, S); y is the forward's output (the normalized x); sums (2, C) is scratch."""
    n, c, s = y.shape
    m = y.dtype.type(n * s)
    zero = y.dtype.type(0)
    for j in range(c):
        sums[0, j] = zero
        sums[1, j] = zero
    for i in range(n):
        for j in range(c):
            acc = zero
            acc_y = zero
            for k in range(s):
                g = dout[i, j, k]
                acc += g
                acc_y += g * y[i, j, k]
            sums[0, j] += acc
            sums[1, j] += acc_y
    for j in range(c):
        sums[0, j] = sums[0, j] / m
        sums[1, j] = sums[1, j] / m
    for i in range(n):
        for j in range(c):
            mean_dout = sums[0, j]
            mean_douty = sums[1, j]
            sd = std[j]
            for k in range(s):
                dx[i, j, k] = (dout[i, j, k] - mean_dout - mean_douty * y[i, j, k]) / sd


@njit(cache=True)
def batch_norm_global_backward(dout, std, dx):
    """dx (N, C, S) = dout / std[c]: the stored statistics are constants."""
    n, c, s = dout.shape
    for i in range(n):
        for j in range(c):
            sd = std[j]
            for k in range(s):
                dx[i, j, k] = dout[i, j, k] / sd


class BatchNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use_global_stats: Optional[bool] = Field(
        None, description="normalize with the stored statistics instead of the batch's "
                          "(unset: false in the train phase, true in the test phase)")
    moving_average_fraction: float = Field(0.999, description="decay of the running sums "
                                                              "per forward")
    eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")


@register_layer
class BatchNorm(Layer):
    Params = BatchNormParams

    def setup(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) < 2:
            raise UserError(f"layer {self.name} (BatchNorm): bottom shape {shape} has no "
                            f"channel axis; BatchNorm takes (N, C) or (N, C, ...)")
        c = shape[1]
        zero = FillerSpec(type="constant", value=0.0)
        self.add_param("mean", (c,), zero, learnable=False)
        self.add_param("variance", (c,), zero, learnable=False)
        self.add_param("scale_factor", (1,), zero, learnable=False)
        use_global = self.p.use_global_stats
        self.use_global = (self.phase == "test") if use_global is None else use_global
        self.eps = self.dtype.type(self.p.eps)
        self.maf = self.dtype.type(self.p.moving_average_fraction)
        self.mean = np.zeros(c, self.dtype)  # the statistics used by the last forward
        self.var = np.zeros(c, self.dtype)
        self.std = np.zeros(c, self.dtype)
        self.sums = np.zeros((2, c), self.dtype)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        c = self.params["mean"].shape[0]
        if len(shape) < 2 or shape[1] != c:
            raise UserError(f"layer {self.name} (BatchNorm): bottom shape {shape} must have "
                            f"{c} channels at axis 1, as the statistics (mean, variance of "
                            f"shape ({c},)) were made for")
        n, s = shape[0], int(np.prod(shape[2:], dtype=np.int64))
        self.dims = (n, c, s)
        m = n * s
        # Caffe: Dtype(m) / (m - 1), 1 when m == 1
        one = self.dtype.type(1)
        self.correction = self.dtype.type(m) / self.dtype.type(m - 1) if m > 1 else one
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        x = np.ascontiguousarray(bottoms[0], self.dtype).reshape(self.dims)
        out = self.top.reshape(self.dims)
        p = self.params
        if self.use_global:
            batch_norm_global_forward(x, self.eps, p["mean"].data, p["variance"].data,
                                      p["scale_factor"].data, out, self.mean, self.std)
        else:
            batch_norm_train_forward(x, self.eps, self.maf, self.correction, out, self.mean,
                                     self.var, self.std, p["mean"].data, p["variance"].data,
                                     p["scale_factor"].data)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(self.dims)
        dx = self.dx.reshape(self.dims)
        if self.use_global:
            batch_norm_global_backward(dout, self.std, dx)
        else:
            batch_norm_train_backward(self.top.reshape(self.dims), dout, self.std, self.sums,
                                      dx)
        return [self.dx]

    def flops(self, bottom_shapes):
        count = int(np.prod(bottom_shapes[0]))
        return 2 * count if self.use_global else 6 * count
