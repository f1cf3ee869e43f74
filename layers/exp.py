"""Exp: y = base ^ (shift + scale * x), elementwise; base -1 means e.

Shapes: top has the bottom's shape. As Caffe computes it, with ln_b = ln(base) (1 for e):
    y  = outer * exp(inner * x),   inner = scale * ln_b,   outer = base ^ shift
    dx = dout * y * inner          (from the cached output y)
base must be -1 or positive (base 1 gives the constant 1).
Source: Caffe's src/caffe/layers/exp_layer.cpp.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def exp_forward(x, inner, outer, out):
    """out = outer * exp(inner * x); x, out: flat arrays; inner, outer: scalars of their dtype."""
    for i in range(x.size):
        out[i] = outer * np.exp(inner * x[i])


@njit(cache=True)
def exp_backward(y, dout, inner, dx):
    """dx = dout * y * inner; y (the forward output), dout, dx: flat arrays."""
    for i in range(y.size):
        dx[i] = dout[i] * y[i] * inner


class ExpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: float = Field(-1.0, description="the base; -1 means e (otherwise it must be > 0)")
    scale: float = Field(1.0, description="multiplies x before the shift")
    shift: float = Field(0.0, description="added to scale * x: y = base^(shift + scale * x)")

    @field_validator("base")
    @classmethod
    def _base(cls, v):
        if v != -1 and not v > 0:
            raise ValueError(f"base must be -1 (meaning e) or positive, got base={v}")
        return v


@register_layer
class Exp(NeuronLayer):
    Params = ExpParams
    flops_per_element = 3

    def setup(self, bottom_shapes):
        base, scale, shift = self.p.base, self.p.scale, self.p.shift
        ln_base = 1.0 if base == -1 else math.log(base)
        t = self.dtype.type
        self.inner = t(scale * ln_base)
        with np.errstate(over="ignore"):  # a huge shift overflows to inf, as in C
            outer = np.exp(shift) if base == -1 else np.power(base, shift)
        self.outer = t(1.0 if shift == 0 else outer)

    def forward_kernel(self, x, y):
        exp_forward(x, self.inner, self.outer, y)

    def backward_kernel(self, x, y, dout, dx):
        exp_backward(y, dout, self.inner, dx)
