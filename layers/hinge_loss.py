"""HingeLoss: Caffe's one-vs-all hinge loss, every class its own binary hinge with targets +-1.

Not the multiclass SVMLoss (margins s_j - s_y + margin between classes): here, with
delta[n, k] = +1 for the true class k = y_n and -1 for every other class,
    t[n, k] = max(0, 1 - delta[n, k] * x[n, k])
    loss    = (1 / N) sum_{n, k} t[n, k]          (norm L1, default)
    loss    = (1 / N) sum_{n, k} t[n, k]^2        (norm L2)
Shapes: scores x: (N, C) or (N, C, ...): the classes are every axis from 1 on (Caffe's
dim = count / num); labels: (N,) or (N, 1), class indices stored as floats or ints.
Backward, scaled by dloss / N: dx[n, k] = -delta[n, k] * [t > 0] (L1) or -2 delta t (L2).
The kinks (x_y = 1, x_k = -1) get the gradient 0 (Caffe's sign(0)). A NaN score gives a NaN
loss (Caffe's max(0, NaN) would hide it), so the divergence guard sees it.
Source: Caffe's src/caffe/layers/hinge_loss_layer.cpp.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import register_layer
from layerflow.layers.labels import ClassifierLayer


@njit(cache=True)
def hinge_loss_forward(x, label, squared, terms):
    """Fill terms (N, C) with max(0, 1 -+ x) of scores x (N, C); return their sum (of squares
    when `squared`), accumulated in float64."""
    n, c = x.shape
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    loss = 0.0
    for i in range(n):
        y = int(label[i])
        for j in range(c):
            t = one - x[i, j] if j == y else one + x[i, j]
            if t < zero:  # False for a NaN, which stays
                t = zero
            terms[i, j] = t
            loss += t * t if squared else t
    return loss


@njit(cache=True)
def hinge_loss_backward(terms, label, squared, scale, dx):
    """dx (N, C) = scale * d(sum of terms)/dx from the hinge terms of the forward pass."""
    n, c = terms.shape
    zero = terms.dtype.type(0)
    two = terms.dtype.type(2)
    for i in range(n):
        y = int(label[i])
        for j in range(c):
            t = terms[i, j]
            g = zero
            if t > zero:
                g = scale * two * t if squared else scale
            dx[i, j] = -g if j == y else g


class HingeLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    norm: Literal["L1", "L2"] = Field("L1", description="L1: sum of the hinge terms; L2: sum of "
                                                        "their squares")


@register_layer
class HingeLoss(ClassifierLayer):
    Params = HingeLossParams
    is_loss = True
    flatten_classes = True

    def setup(self, bottom_shapes):
        self.squared = self.p.norm == "L2"
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        self.terms = np.zeros((self.outer, self.num_classes), self.dtype)
        self.dx = np.zeros(scores, self.dtype)

    def forward(self, bottoms):
        x, label = bottoms
        self.label = self.labels(label)
        loss = hinge_loss_forward(x.reshape(self.terms.shape), self.label, self.squared,
                                  self.terms)
        self.top[()] = loss / max(self.outer, 1)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(float(top_diffs[0]) / max(self.outer, 1))
        hinge_loss_backward(self.terms, self.label, self.squared, scale,
                            self.dx.reshape(self.terms.shape))
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return 3 * int(np.prod(bottom_shapes[0]))
