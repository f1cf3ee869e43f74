"""Log: y = log_base(shift + scale * x), elementwise; base -1 means e.

Shapes: top has the bottom's shape. With b = shift + scale * x and ln_b = ln(base) (1 for e):
    y  = ln(b) / ln_b
    dx = dout * scale / (ln_b * b)
base must be -1 or positive and not 1 (Caffe aborts on base 1: ln 1 = 0). Outside the domain
the values are C's: ln of a negative b is NaN, of 0 is -inf (its dx inf); no error is raised.
Source: Caffe's src/caffe/layers/log_layer.cpp.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerflow import NeuronLayer, register_layer


@njit(cache=True, error_model="numpy")
def log_forward(x, scale, shift, base_scale, out):
    """out = ln(shift + scale * x) * base_scale; x, out: flat arrays; the rest scalars of
    their dtype (base_scale = 1 / ln(base))."""
    for i in range(x.size):
        out[i] = np.log(shift + scale * x[i]) * base_scale


@njit(cache=True, error_model="numpy")
def log_backward(x, dout, scale, shift, num_scale, dx):
    """dx = dout * num_scale / (shift + scale * x), num_scale = scale / ln(base)."""
    for i in range(x.size):
        dx[i] = dout[i] * num_scale / (shift + scale * x[i])


class LogParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: float = Field(-1.0, description="the base; -1 means e (otherwise > 0 and not 1)")
    scale: float = Field(1.0, description="multiplies x before the shift")
    shift: float = Field(0.0, description="added to scale * x: y = log_base(shift + scale * x)")

    @field_validator("base")
    @classmethod
    def _base(cls, v):
        if v != -1 and not (v > 0 and v != 1):
            raise ValueError(f"base must be -1 (meaning e) or positive and not 1, got base={v}")
        return v


@register_layer
class Log(NeuronLayer):
    Params = LogParams
    flops_per_element = 3

    def setup(self, bottom_shapes):
        ln_base = 1.0 if self.p.base == -1 else math.log(self.p.base)
        t = self.dtype.type
        self.scale, self.shift = t(self.p.scale), t(self.p.shift)
        self.base_scale = t(1.0 / ln_base)
        self.num_scale = t(self.p.scale / ln_base)

    def forward_kernel(self, x, y):
        log_forward(x, self.scale, self.shift, self.base_scale, y)

    def backward_kernel(self, x, y, dout, dx):
        log_backward(x, dout, self.scale, self.shift, self.num_scale, dx)
