"""Softmax along one axis of an N-D blob: y = exp(x - max) / sum(exp(x - max)).

Shapes: the top has the bottom's shape. With x viewed as (outer, dim, inner), outer =
prod(shape[:axis]), dim = shape[axis], inner = prod(shape[axis+1:]), every (outer, inner)
position is an independent softmax over dim:
    y[o, :, i] = exp(x[o, :, i] - m) / sum_c exp(x[o, c, i] - m),  m = max_c x[o, c, i]
    dx[o, c, i] = y[o, c, i] * (dout[o, c, i] - sum_c' dout[o, c', i] * y[o, c', i])
Subtracting the max keeps exp from overflowing. The loops run over c outside and i inside,
so the memory is read in order whatever the axis (a scratch row of `inner` values carries the
running max and sums); with inner == 1 ((N, classes) scores) a row is one contiguous run and
the max and sums stay in registers.

Source: Caffe's softmax_layer.cpp. Errors: axis out of range for the bottom (UserError naming
the layer, the axis and the shape).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer


# Sums may be reassociated so LLVM vectorizes them; no flag that changes NaN or inf handling.
REDUCE = {"reassoc", "nsz"}


@njit(cache=True, fastmath=REDUCE)
def softmax_forward(x, out, scratch):
    """out (O, D, I) = softmax of x (O, D, I) over D; scratch: (2, I) of x's dtype."""
    n_outer, dim, inner = x.shape
    if inner == 1:  # (N, classes): one contiguous row per softmax, scalars in registers
        for o in range(n_outer):
            m = x[o, 0, 0]
            for c in range(1, dim):
                if x[o, c, 0] > m:
                    m = x[o, c, 0]
            for c in range(dim):
                out[o, c, 0] = np.exp(x[o, c, 0] - m)
            total = x.dtype.type(0)
            for c in range(dim):
                total += out[o, c, 0]
            for c in range(dim):
                out[o, c, 0] = out[o, c, 0] / total
        return
    mx = scratch[0]
    total = scratch[1]
    for o in range(n_outer):
        for i in range(inner):
            mx[i] = x[o, 0, i]
            total[i] = x.dtype.type(0)
        for c in range(1, dim):
            for i in range(inner):
                if x[o, c, i] > mx[i]:
                    mx[i] = x[o, c, i]
        for c in range(dim):
            for i in range(inner):
                out[o, c, i] = np.exp(x[o, c, i] - mx[i])
        for c in range(dim):
            for i in range(inner):
                total[i] += out[o, c, i]
        for c in range(dim):
            for i in range(inner):
                out[o, c, i] = out[o, c, i] / total[i]


@njit(cache=True, fastmath=REDUCE)
def softmax_backward(y, dout, dx, scratch):
    """dx (O, D, I) = y * (dout - sum_D(dout * y)); y: the forward's output; scratch: (2, I)."""
    n_outer, dim, inner = y.shape
    if inner == 1:
        for o in range(n_outer):
            dot = y.dtype.type(0)
            for c in range(dim):
                dot += dout[o, c, 0] * y[o, c, 0]
            for c in range(dim):
                dx[o, c, 0] = y[o, c, 0] * (dout[o, c, 0] - dot)
        return
    dot = scratch[0]
    for o in range(n_outer):
        for i in range(inner):
            dot[i] = y.dtype.type(0)
        for c in range(dim):
            for i in range(inner):
                dot[i] += dout[o, c, i] * y[o, c, i]
        for c in range(dim):
            for i in range(inner):
                dx[o, c, i] = y[o, c, i] * (dout[o, c, i] - dot[i])


class SoftmaxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: int = Field(1, description="the axis the softmax runs along (negative: from the end)")


@register_layer
class Softmax(Layer):
    Params = SoftmaxParams
    probabilities = True

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        nd = len(shape)
        if not -nd <= self.p.axis < nd:
            raise UserError(f"layer {self.name} (Softmax): axis: {self.p.axis} is out of range "
                            f"for bottom shape {shape} ({nd} axes)")
        axis = self.p.axis % nd
        self.dims = (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
                     int(np.prod(shape[axis + 1:], dtype=np.int64)))
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        self.scratch = np.zeros((2, self.dims[2]), self.dtype)
        return [shape]

    def forward(self, bottoms):
        x = np.ascontiguousarray(bottoms[0], self.dtype).reshape(self.dims)
        softmax_forward(x, self.top.reshape(self.dims), self.scratch)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(self.dims)
        softmax_backward(self.top.reshape(self.dims), dout, self.dx.reshape(self.dims),
                         self.scratch)
        return [self.dx]

    def flops(self, bottom_shapes):
        return 4 * int(np.prod(bottom_shapes[0]))
