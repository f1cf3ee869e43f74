"""Threshold: y = 1 if x > threshold else 0 (strictly greater), elementwise.

Shapes: top has the bottom's shape.
No gradient: the step's derivative is 0 wherever it exists. Caffe's Backward is not
implemented (it aborts if a net needs it); here the layer declares has_backward = False, so the
net never runs a backward through it: nothing below it gets a gradient by way of it (exactly
what a zero diff would give, without computing one), and a loss_weight on it is an error.
Source: Caffe's src/caffe/layers/threshold_layer.cpp.
"""
from __future__ import annotations

from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def threshold_forward(x, t, out):
    """out = 1 if x > t else 0; x, out: flat arrays; t: a scalar of their dtype."""
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in range(x.size):
        out[i] = one if x[i] > t else zero


class ThresholdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.0, description="y = 1 where x > threshold (strictly), else 0")


@register_layer
class Threshold(NeuronLayer):
    Params = ThresholdParams
    has_backward = False

    def setup(self, bottom_shapes):
        self.t = self.dtype.type(self.p.threshold)

    def forward_kernel(self, x, y):
        threshold_forward(x, self.t, y)
