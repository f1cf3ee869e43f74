"""BNLL (binomial normal log likelihood): y = log(1 + exp(x)), the softplus, elementwise.

Shapes: top has the bottom's shape.
    y  = x + log1p(exp(-x)) for x > 0, log1p(exp(x)) otherwise  (exp of a non-positive
         number only: no overflow, float32 included)
    dx = dout * e / (1 + e),  e = exp(min(x, 50))                (Caffe's kBNLL_THRESHOLD)
Caffe writes log(1 + .) where this uses log1p: the same function, without the rounding of
1 + exp(x) to 1 for x < -37 (float64).
Source: Caffe's src/caffe/layers/bnll_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def bnll_forward(x, out):
    """out = log(1 + exp(x)), stably; x, out: flat arrays of the same length and dtype."""
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        if v > zero:
            out[i] = v + np.log1p(np.exp(-v))
        else:
            out[i] = np.log1p(np.exp(v))


@njit(cache=True)
def bnll_backward(x, dout, dx):
    """dx = dout * e / (1 + e), e = exp(min(x, 50)); x, dout, dx: flat arrays."""
    one = x.dtype.type(1)
    cap = x.dtype.type(50)
    for i in range(x.size):
        e = np.exp(min(x[i], cap))
        dx[i] = dout[i] * e / (one + e)


@register_layer
class BNLL(NeuronLayer):
    flops_per_element = 4

    def forward_kernel(self, x, y):
        bnll_forward(x, y)

    def backward_kernel(self, x, y, dout, dx):
        bnll_backward(x, dout, dx)
