"""TanH: y = tanh(x), elementwise.

Shapes: top has the bottom's shape. Backward: dx = dout * (1 - y^2), from the cached output y.
tanh saturates to +-1 for large |x|, never overflows (float32 too).
Source: Caffe's src/caffe/layers/tanh_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import NeuronLayer, register_layer


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
class TanH(NeuronLayer):
    flops_per_element = 4

    def forward_kernel(self, x, y):
        tanh_forward(x, y)

    def backward_kernel(self, x, y, dout, dx):
        tanh_backward(y, dout, dx)
