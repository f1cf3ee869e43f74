"""ReLU (leaky when negative_slope != 0): y = x if x > 0 else negative_slope * x.

Shapes: top has the bottom's shape. Backward: dx = dout * (1 if x > 0 else negative_slope).
The gradient at x == 0 is taken as negative_slope (the kink).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, register_layer


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
class ReLU(Layer):
    Params = ReLUParams

    def setup(self, bottom_shapes):
        self.slope = self.dtype.type(self.p.negative_slope)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        self.x = bottoms[0]
        relu_forward(self.x.reshape(-1), self.slope, self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        relu_backward(self.x.reshape(-1), top_diffs[0].reshape(-1), self.slope,
                      self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return int(np.prod(bottom_shapes[0]))
