"""SVMLoss: the multiclass hinge loss (CS231n's SVM), averaged over the batch.

Shapes: scores s: (N, C); labels: (N,) or (N, 1), class indices stored as floats or ints.
    t[n, j] = max(0, s[n, j] - s[n, y_n] + margin)  for j != y_n  (t[n, y_n] = 0)
    loss    = (1 / N) sum_n sum_j t[n, j]           (norm L1)
    loss    = (1 / N) sum_n sum_j t[n, j]^2         (norm L2)
Backward, scaled by dloss / N: ds[n, j] = [t > 0] (L1) or 2 t (L2) for j != y_n, and
ds[n, y_n] = -(sum of those over j). A term exactly at 0 is the kink: its gradient is 0.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import register_layer
from layerflow.layers.labels import ClassifierLayer


@njit(cache=True)
def svm_loss_forward(x, label, margin, squared, terms):
    """Fill terms (N, C) with the hinge terms of scores x (N, C); return their sum (squared
    terms when `squared`, accumulated in float64). margin: a scalar of x's dtype."""
    n, c = x.shape
    zero = x.dtype.type(0)
    loss = 0.0
    for i in range(n):
        y = int(label[i])
        sy = x[i, y]
        for j in range(c):
            t = x[i, j] - sy + margin
            if j == y or t <= zero:  # a NaN score stays NaN, so divergence is seen
                t = zero
            terms[i, j] = t
            loss += t * t if squared else t
    return loss


@njit(cache=True)
def svm_loss_backward(terms, label, squared, scale, dx):
    """dx (N, C) = scale * d(sum of terms)/ds, from the hinge terms (N, C) of the forward pass."""
    n, c = terms.shape
    zero = terms.dtype.type(0)
    two = terms.dtype.type(2)
    for i in range(n):
        y = int(label[i])
        total = zero
        for j in range(c):
            t = terms[i, j]
            g = zero
            if t > zero:
                g = scale * two * t if squared else scale
            dx[i, j] = g
            total += g
        dx[i, y] = -total


class SVMLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    margin: float = Field(1.0, ge=0, description="the margin by which the true class must win")
    norm: Literal["L1", "L2"] = Field("L1", description="L1: sum of hinge terms; L2: sum of "
                                                        "their squares")


@register_layer
class SVMLoss(ClassifierLayer):
    Params = SVMLossParams
    is_loss = True

    def setup(self, bottom_shapes):
        self.margin = self.dtype.type(self.p.margin)
        self.squared = self.p.norm == "L2"
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        self.terms = np.zeros(scores, self.dtype)
        self.dx = np.zeros(scores, self.dtype)

    def forward(self, bottoms):
        x, label = bottoms
        self.label = self.labels(label)
        loss = svm_loss_forward(x, self.label, self.margin, self.squared, self.terms)
        self.top[()] = loss / x.shape[0]
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(float(top_diffs[0]) / self.terms.shape[0])
        svm_loss_backward(self.terms, self.label, self.squared, scale, self.dx)
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return 3 * int(np.prod(bottom_shapes[0]))
