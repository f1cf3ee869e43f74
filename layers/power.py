"""Power: y = (shift + scale * x) ^ power, elementwise.

Shapes: top has the bottom's shape. With b = shift + scale * x:
    dx = dout * power * scale * b ^ (power - 1), computed as Caffe does:
         power == 1: dout * scale;  power == 2: dout * 2 * scale * b;
         otherwise dout * power * scale * y / b (from the cached output y).
Caffe's special cases: when power * scale == 0, y is the constant 1 (power 0) or shift^power
(scale 0) and dx = 0.
Decided here, where Caffe is silent or wrong:
- a negative b with a fractional power gives NaN (as C's pow, so as Caffe); no error is raised,
  the NaN reaches the loss and the divergence guard names this layer;
- at b == 0 (e.g. power 3 after a ReLU) Caffe's y / b is 0 / 0 = NaN; here dx takes the limit
  power * scale * 0^(power - 1): 0 for power > 1, inf for power < 1.
Source: Caffe's src/caffe/layers/power_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import NeuronLayer, register_layer


@njit(cache=True, error_model="numpy")
def power_forward(x, power, scale, shift, out):
    """out = (shift + scale * x) ^ power; x, out: flat arrays; power, scale, shift: scalars of
    their dtype."""
    for i in range(x.size):
        out[i] = (shift + scale * x[i]) ** power


@njit(cache=True, error_model="numpy")
def power_backward(x, y, dout, power, scale, shift, dx):
    """dx = dout * d/dx (shift + scale * x) ^ power, from x and the forward output y (flat)."""
    one = x.dtype.type(1)
    two = x.dtype.type(2)
    zero = x.dtype.type(0)
    diff_scale = power * scale
    if power == one:
        for i in range(x.size):
            dx[i] = dout[i] * diff_scale
    elif power == two:
        for i in range(x.size):
            dx[i] = dout[i] * diff_scale * (shift + scale * x[i])
    else:
        for i in range(x.size):
            b = shift + scale * x[i]
            if b != zero:
                dx[i] = dout[i] * (diff_scale * y[i] / b)
            else:  # the limit of p s b^(p-1) at b = 0, where y / b would be 0 / 0
                dx[i] = dout[i] * (diff_scale * b ** (power - one))


class PowerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power: float = Field(1.0, description="the exponent p in y = (shift + scale * x)^p")
    scale: float = Field(1.0, description="multiplies x before the shift")
    shift: float = Field(0.0, description="added to scale * x before the power")


@register_layer
class Power(NeuronLayer):
    Params = PowerParams
    flops_per_element = 3

    def setup(self, bottom_shapes):
        t = self.dtype.type
        self.power, self.scale, self.shift = t(self.p.power), t(self.p.scale), t(self.p.shift)
        # Caffe: with power * scale == 0 the output does not depend on x
        self.constant = self.p.power * self.p.scale == 0
        if self.constant:
            with np.errstate(all="ignore"):  # shift = 0 with a negative power: inf, as Caffe
                self.value = t(1) if self.p.power == 0 else self.shift ** self.power

    def forward_kernel(self, x, y):
        if self.constant:
            y.fill(self.value)
        else:
            power_forward(x, self.power, self.scale, self.shift, y)

    def backward_kernel(self, x, y, dout, dx):
        if self.constant:
            dx.fill(0)
        else:
            power_backward(x, y, dout, self.power, self.scale, self.shift, dx)
