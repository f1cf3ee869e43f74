"""TanH: y = tanh(x), elementwise.

Shapes: top has the bottom's shape. Backward: dx = dout * (1 - y^2), from the cached output y
(the input is not kept). tanh saturates to +-1 for large |x|, never overflows (float32 too).
Source: Caffe's src/caffe/layers/tanh_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import Layer, register_layer


@njit(cache=True)
def tanh_forward(x, out):
    """out = tanh(x); x, out: flat arrays of the same length and dtype."""
    for i in range(x.size):
        out[i] = np.tanh(x[i])


@njit(cache=True)
def tanh_backward(y, dout, dx):
    """dx = dout * (1 - y^2); y (the forward output), dout, dx: flat arrays."""
    one = y.dtype.type(1)
    for i in range(y.size):
        dx[i] = dout[i] * (one - y[i] * y[i])


@register_layer
class TanH(Layer):

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        tanh_forward(bottoms[0].reshape(-1), self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        tanh_backward(self.top.reshape(-1), top_diffs[0].reshape(-1), self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return 4 * int(np.prod(bottom_shapes[0]))
