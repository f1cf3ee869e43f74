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

from layerflow import Layer, register_layer


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
class Log(Layer):
    Params = LogParams

    def setup(self, bottom_shapes):
        ln_base = 1.0 if self.p.base == -1 else math.log(self.p.base)
        t = self.dtype.type
        self.scale, self.shift = t(self.p.scale), t(self.p.shift)
        self.base_scale = t(1.0 / ln_base)
        self.num_scale = t(self.p.scale / ln_base)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        self.x = bottoms[0]
        log_forward(self.x.reshape(-1), self.scale, self.shift, self.base_scale,
                    self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        log_backward(self.x.reshape(-1), top_diffs[0].reshape(-1), self.scale, self.shift,
                     self.num_scale, self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return 3 * int(np.prod(bottom_shapes[0]))
