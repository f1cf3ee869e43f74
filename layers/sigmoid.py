"""Sigmoid: y = 1 / (1 + exp(-x)), elementwise.

Shapes: top has the bottom's shape. Backward: dx = dout * y * (1 - y), from the cached output y.
exp is only ever taken of a non-positive number, so no overflow for large |x| in float32.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import NeuronLayer, register_layer


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
class Sigmoid(NeuronLayer):
    probabilities = True
    flops_per_element = 4

    def forward_kernel(self, x, y):
        sigmoid_forward(x, y)

    def backward_kernel(self, x, y, dout, dx):
        sigmoid_backward(y, dout, dx)
