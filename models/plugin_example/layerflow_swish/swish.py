"""Swish: y = x * sigmoid(beta * x), elementwise, with a learned scalar beta (Ramachandran et
al. 2017; beta = 1 is SiLU).

Shapes: top has the bottom's shape; param `beta`: (1,).
Backward, with s = sigmoid(beta x) cached by forward:
    dx     = dout * (s + beta x s (1 - s))
    dbeta += sum(dout * x^2 s (1 - s))
To keep beta fixed, give it no learning rate: `param: [{lr_mult: 0, decay_mult: 0}]`.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import FillerSpec, Layer, register_layer, register_onnx


@njit(cache=True)
def swish_forward(x, beta, s, out):
    """s = sigmoid(beta x), out = x s. x, s, out: flat arrays of one dtype; beta: a scalar of it.

    exp is only taken of a non-positive number, so it never overflows.
    """
    one = x.dtype.type(1)
    for i in range(x.size):
        z = beta * x[i]
        if z >= 0:
            si = one / (one + np.exp(-z))
        else:
            e = np.exp(z)
            si = e / (one + e)
        s[i] = si
        out[i] = x[i] * si


@njit(cache=True)
def swish_backward(x, s, dout, beta, dx):
    """dx = dout (s + beta x s (1 - s)); returns sum(dout x^2 s (1 - s)) = dL/dbeta (float64).

    x, s (from forward), dout, dx: flat arrays of one dtype; beta: a scalar of it.
    """
    one = x.dtype.type(1)
    dbeta = 0.0
    for i in range(x.size):
        g = s[i] * (one - s[i])  # sigmoid'(beta x)
        dx[i] = dout[i] * (s[i] + beta * x[i] * g)
        dbeta += dout[i] * x[i] * x[i] * g
    return dbeta


@njit(cache=True)
def swish_backward_beta(x, s, dout):
    """sum(dout x^2 s (1 - s)) alone, when no bottom diff is needed."""
    one = x.dtype.type(1)
    dbeta = 0.0
    for i in range(x.size):
        dbeta += dout[i] * x[i] * x[i] * s[i] * (one - s[i])
    return dbeta


class SwishParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta_filler: FillerSpec = Field(
        default_factory=lambda: FillerSpec(type="constant", value=1.0),
        description="initial value of beta (default constant 1: SiLU)")


@register_layer
class Swish(Layer):
    Params = SwishParams

    def setup(self, bottom_shapes):
        self.add_param("beta", (1,), self.p.beta_filler)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        self.s = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        self.x = bottoms[0]
        beta = self.params["beta"].data[0]
        swish_forward(self.x.reshape(-1), beta, self.s.reshape(-1), self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        beta = self.params["beta"]
        x, s, dout = self.x.reshape(-1), self.s.reshape(-1), top_diffs[0].reshape(-1)
        if not self.propagate_down[0]:
            beta.grad[0] += swish_backward_beta(x, s, dout)
            return [None]
        beta.grad[0] += swish_backward(x, s, dout, beta.data[0], self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return 5 * int(np.prod(bottom_shapes[0]))  # beta x, exp, 1 + e, 1 / (..), x s


@register_onnx("Swish")
def swish_to_onnx(layer, g):
    """The ONNX export (`layerflow export`): y = x * Sigmoid(beta * x), beta an initializer."""
    (x,), (y,) = g.bottoms, g.tops
    s = g.node("Sigmoid", [g.node("Mul", [x, g.param("beta")])])
    g.node("Mul", [x, s], [y])
