"""ReLU (leaky when negative_slope != 0): y = x if x > 0 else negative_slope * x.

Shapes: top has the bottom's shape. Backward: dx = dout * (1 if x > 0 else negative_slope).
The gradient at x == 0 is taken as negative_slope (the kink).
"""
from __future__ import annotations

from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def relu_forward(x, slope, out):
    """x, out: flat arrays of the same length; slope: a scalar of their dtype."""
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@njit(cache=True)
def relu_backward(x, dout, slope, dx):
    for i in range(x.size):
        dx[i] = dout[i] if x[i] > 0 else dout[i] * slope


class ReLUParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    negative_slope: float = Field(0.0, description="slope for x <= 0 (0: plain ReLU)")


@register_layer
class ReLU(NeuronLayer):
    Params = ReLUParams

    def setup(self, bottom_shapes):
        self.slope = self.dtype.type(self.p.negative_slope)

    def forward_kernel(self, x, y):
        relu_forward(x, self.slope, y)

    def backward_kernel(self, x, y, dout, dx):
        relu_backward(x, dout, self.slope, dx)
