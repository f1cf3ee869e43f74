"""PReLU: a ReLU with a learned slope per channel, y = max(x, 0) + a_c * min(x, 0).

Shapes: bottom (N, C, ...) with at least 2 axes, channels on axis 1; top has the bottom's shape.
Param `weight`: the slopes a, (C,), or (1,) with channel_shared (one slope for all channels;
Caffe stores it as a 0-axis blob); filler default constant 0.25.
Backward, viewing x as (N, C, D) with D = prod(shape[2:]):
    dx[n, c, d] = dout * (1 if x > 0 else a_c)        (x == 0 takes the slope, as ReLU)
    da_c       += sum_{n, d} dout * x * [x <= 0]       (summed over every channel if shared)
Source: Caffe's src/caffe/layers/prelu_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import FillerSpec, Layer, UserError, register_layer


@njit(cache=True)
def prelu_forward(x, w, out):
    """out = max(x, 0) + w[c] * min(x, 0). x, out: (N, C, D); w: (C,), or (1,) shared."""
    n, c, d = x.shape
    shared = w.size == 1
    zero = x.dtype.type(0)
    for i in range(n):
        for j in range(c):
            a = w[0] if shared else w[j]
            for k in range(d):
                v = x[i, j, k]
                out[i, j, k] = v if v > zero else a * v


@njit(cache=True)
def prelu_backward(x, dout, w, want_dx, dx, dw):
    """dw (C,) or (1,) += sum of dout * x where x <= 0, per channel; when want_dx,
    dx = dout * (1 if x > 0 else w[c]). x, dout, dx: (N, C, D)."""
    n, c, d = x.shape
    shared = w.size == 1
    zero = x.dtype.type(0)
    for j in range(c):
        a = w[0] if shared else w[j]
        total = 0.0  # float64 accumulation over N * D terms
        for i in range(n):
            for k in range(d):
                v = x[i, j, k]
                g = dout[i, j, k]
                if v > zero:
                    if want_dx:
                        dx[i, j, k] = g
                else:
                    total += g * v
                    if want_dx:
                        dx[i, j, k] = g * a
        if shared:
            dw[0] += total
        else:
            dw[j] += total


class PReLUParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filler: FillerSpec = Field(default_factory=lambda: FillerSpec(type="constant", value=0.25),
                               description="filler of the slopes (default constant 0.25)")
    channel_shared: bool = Field(False, description="one slope for every channel instead of "
                                                    "one per channel (axis 1)")


@register_layer
class PReLU(Layer):
    Params = PReLUParams
    kink = 0.0

    def _channels(self, shape) -> int:
        if len(shape) < 2:
            raise UserError(f"layer {self.name} (PReLU): bottom has shape {shape}, needs at "
                            f"least 2 axes (N, C, ...): the slopes are per channel (axis 1)")
        return shape[1]

    def setup(self, bottom_shapes):
        c = self._channels(tuple(bottom_shapes[0]))
        self.add_param("weight", (1,) if self.p.channel_shared else (c,), self.p.filler)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        c = self._channels(shape)
        if not self.p.channel_shared and self.params["weight"].shape != (c,):
            raise UserError(f"layer {self.name} (PReLU): bottom shape {shape} has {c} channels, "
                            f"the weight {self.params['weight'].shape} was made for "
                            f"{self.params['weight'].shape[0]}")
        self.view = (shape[0], c, int(np.prod(shape[2:])))
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        self.x = bottoms[0]
        prelu_forward(self.x.reshape(self.view), self.params["weight"].data,
                      self.top.reshape(self.view))
        return [self.top]

    def backward(self, top_diffs):
        weight = self.params["weight"]
        want_dx = self.propagate_down[0]
        prelu_backward(self.x.reshape(self.view), top_diffs[0].reshape(self.view), weight.data,
                       want_dx, self.dx.reshape(self.view), weight.grad)
        return [self.dx if want_dx else None]

    def flops(self, bottom_shapes):
        return 2 * int(np.prod(bottom_shapes[0]))
