"""Sigmoid: y = 1 / (1 + exp(-x)), elementwise.

Shapes: top has the bottom's shape. Backward: dx = dout * y * (1 - y), from the cached output y
(the input is not kept). exp is only ever taken of a non-positive number, so no overflow for
large |x| in float32.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import Layer, register_layer


@njit(cache=True)
def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)); x, out: flat arrays of the same length and dtype.

    For x < 0 the equal form exp(x) / (1 + exp(x)) is used, so exp never overflows.
    """
    one = x.dtype.type(1)
    for i in range(x.size):
        v = x[i]
        if v >= 0:
            out[i] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            out[i] = e / (one + e)


@njit(cache=True)
def sigmoid_backward(y, dout, dx):
    """dx = dout * y * (1 - y); y (the forward output), dout, dx: flat arrays."""
    one = y.dtype.type(1)
    for i in range(y.size):
        dx[i] = dout[i] * y[i] * (one - y[i])


@register_layer
class Sigmoid(Layer):
    probabilities = True

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        sigmoid_forward(bottoms[0].reshape(-1), self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        sigmoid_backward(self.top.reshape(-1), top_diffs[0].reshape(-1), self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return 4 * int(np.prod(bottom_shapes[0]))
