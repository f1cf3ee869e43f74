"""ELU: y = x if x > 0 else alpha * (exp(x) - 1), elementwise (Clevert et al. 2015).

Shapes: top has the bottom's shape. Backward: dx = dout * (1 if x > 0 else y + alpha), from the
cached input (for the side of 0) and output. exp is only taken of x <= 0, so it never
overflows; exp(x) - 1 is computed as expm1(x), exact for small |x|.
Source: Caffe's src/caffe/layers/elu_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def elu_forward(x, alpha, out):
    """out = x if x > 0 else alpha * expm1(x). x, out: flat arrays; alpha: a scalar of their
    dtype."""
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > zero else alpha * np.expm1(v)


@njit(cache=True)
def elu_backward(x, y, dout, alpha, dx):
    """dx = dout * (1 if x > 0 else y + alpha); x, y (the forward output), dout, dx: flat."""
    zero = x.dtype.type(0)
    for i in range(x.size):
        dx[i] = dout[i] if x[i] > zero else dout[i] * (y[i] + alpha)


class ELUParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(1.0, description="y = alpha * (exp(x) - 1) for x <= 0")


@register_layer
class ELU(NeuronLayer):
    Params = ELUParams
    kink = 0.0
    flops_per_element = 3

    def setup(self, bottom_shapes):
        self.alpha = self.dtype.type(self.p.alpha)

    def forward_kernel(self, x, y):
        elu_forward(x, self.alpha, y)

    def backward_kernel(self, x, y, dout, dx):
        elu_backward(x, y, dout, self.alpha, dx)
