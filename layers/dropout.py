"""Dropout: zeroes a random fraction `dropout_ratio` (p) of the elements in the train phase.

Shapes: the top has the bottom's shape.
    train: u ~ U[0, 1) per element, drawn from the layer's rng (`self.rng`, so runs and resumes
           are bit-exact); an element is kept when u > p (Caffe's GPU rule, mask > p*UINT_MAX;
           its CPU rule, a Bernoulli(1 - p) draw, has the same law), so P(kept) = 1 - p:
               y = x * mask * scale,  dx = dout * mask * scale
    test:  y = x * test_scale,        dx = dout * test_scale
with scale = 1/(1 - p) and test_scale = 1 when scale_train (inverted dropout, Caffe's only
behaviour: the test phase is the identity, and the top IS the bottom array, nothing copied);
scale_train false (the `scale_train` of the Caffe forks that have it) keeps the train output
unscaled (scale = 1) and multiplies by 1 - p at test time instead (test_scale = 1/(1/(1 - p))).
The phase is the layer's (the net's) phase. The uniforms are drawn in float32 whatever the
net's dtype (a 2^-24 grid: P(kept) is 1 - p within 2^-24; a quarter faster to draw than
float64 and half the memory), so a float32 and a float64 net with the same seed drop the same
elements.

Source: Caffe's dropout_layer.cpp / .cu (scale_train: the forks' dropout_layer.cpp).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, register_layer


@njit(cache=True)
def dropout_apply(x, u, threshold, scale, out):
    """out = x * (u > threshold) * scale elementwise; x, out: flat arrays; u: flat float32
    uniforms; threshold: float32 (see `float32_threshold`); scale: a scalar of x's dtype. Used
    for forward (x) and backward (dout) alike: the same mask and scale."""
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in range(x.size):
        keep = one if u[i] > threshold else zero
        out[i] = x[i] * keep * scale


@njit(cache=True)
def dropout_scale(x, scale, out):
    """out = x * scale (the test phase with scale_train false)."""
    for i in range(x.size):
        out[i] = x[i] * scale


def float32_threshold(ratio: float) -> np.float32:
    """The largest float32 t <= ratio: for a float32 u, u > t exactly when u > ratio (so the
    kernel compares in float32 and the rule stays u > ratio)."""
    t = np.float32(ratio)
    return np.nextafter(t, np.float32(-1)) if float(t) > ratio else t


class DropoutParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dropout_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="probability p of dropping "
                                                                  "an element (train phase)")
    scale_train: bool = Field(True, description="scale the kept elements by 1/(1-p) in the "
                                                "train phase (false: scale by 1-p in the test "
                                                "phase instead)")


@register_layer
class Dropout(Layer):
    Params = DropoutParams

    def setup(self, bottom_shapes):
        self.threshold = float32_threshold(self.p.dropout_ratio)
        scale = 1.0 / (1.0 - self.p.dropout_ratio)
        self.train = self.phase == "train"
        self.scale = self.dtype.type(scale if self.p.scale_train else 1.0)
        self.test_scale = None if self.p.scale_train else self.dtype.type(1.0 / scale)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.shape = shape
        if self.train or self.test_scale is not None:
            self.top = np.zeros(shape, self.dtype)
            self.dx = np.zeros(shape, self.dtype)
        if self.train:
            self.u = np.zeros(int(np.prod(shape, dtype=np.int64)), np.float32)
        return [shape]

    def forward(self, bottoms):
        if not self.train and self.test_scale is None:
            return [bottoms[0]]  # the identity: the top shares the bottom's memory
        x = np.ascontiguousarray(bottoms[0], self.dtype).reshape(-1)
        out = self.top.reshape(-1)
        if self.train:
            self.rng.random(out=self.u, dtype=np.float32)
            dropout_apply(x, self.u, self.threshold, self.scale, out)
        else:
            dropout_scale(x, self.test_scale, out)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        if not self.train and self.test_scale is None:
            return [top_diffs[0]]
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(-1)
        dx = self.dx.reshape(-1)
        if self.train:
            dropout_apply(dout, self.u, self.threshold, self.scale, dx)
        else:
            dropout_scale(dout, self.test_scale, dx)
        return [self.dx]

    def flops(self, bottom_shapes):
        return 0 if not self.train and self.test_scale is None else int(np.prod(bottom_shapes[0]))
