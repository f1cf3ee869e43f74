"""SoftmaxLoss: softmax over the class axis then cross-entropy (Caffe's SoftmaxWithLoss).

Shapes: scores x: (N, C) with labels (N,) or (N, 1); or, with the class axis `axis` (default
1), x: (N, C, H, W) -> one prediction per pixel, labels (N, H, W) or (N, 1, H, W). Viewed as
(outer, C, inner), positions k = (o, i), labels are class indices stored as floats or ints:
    p[o, c, i] = exp(x[o, c, i] - m) / sum_c' exp(x[o, c', i] - m),   m = max_c x[o, c, i]
    loss       = -(1 / D) sum_{k counted} log p[o, y_k, i]      (positions whose label is
                                                                 not ignore_label are counted)
    D = normalizer(normalization): FULL = outer * inner, VALID = counted positions (default),
        BATCH_SIZE = outer, NONE = 1; at least 1. Legacy `normalize: false` means BATCH_SIZE.
Backward: dx[o, c, i] = dloss * (p[o, c, i] - [c == y_k]) / D, and 0 at ignored positions.
-log p is computed from the shifted scores (log s - (x_y - m)): exact, never log(0). Caffe
takes -log(max(p, FLT_MIN)) instead, so its per-position loss stops at 87.3; here it does not.
Source: Caffe's src/caffe/layers/softmax_loss_layer.cpp.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import register_layer
from layerflow.layers.labels import (ClassifierLayer, Normalization, normalization_field,
                                     normalize_field, normalizer, resolve_normalization)


# No fastmath: its no-NaN assumption would turn a NaN score into an exception or garbage
# instead of a NaN loss, and the divergence guard needs the NaN to name the layer.
@njit(cache=True, error_model="numpy")
def softmax_loss_forward(x, label, ignore, prob):
    """Fill prob (outer, C, inner) with the softmax over axis 1 of x (outer, C, inner);
    return (sum over counted positions of -log p[label], counted). label: (outer * inner,).

    Two loop orders, each walking memory contiguously: inner == 1 (scores (N, C)) goes row by
    row; otherwise the loops over classes run across the contiguous inner axis, with the
    running max and sum of every position in a buffer (one row of the inner axis each).
    """
    outer, c, inner = x.shape
    one = x.dtype.type(1)
    loss = 0.0
    count = 0
    if inner == 1:
        for o in range(outer):
            m = x[o, 0, 0]
            for j in range(1, c):
                if x[o, j, 0] > m:
                    m = x[o, j, 0]
            s = x.dtype.type(0)
            for j in range(c):
                e = np.exp(x[o, j, 0] - m)
                prob[o, j, 0] = e
                s += e
            inv = one / s
            for j in range(c):
                prob[o, j, 0] *= inv
            y = int(label[o])
            if y != ignore:
                # log p from the shifted scores: exact, and never log(0)
                loss += np.log(s) - (x[o, y, 0] - m)
                count += 1
        return loss, count
    m = np.empty(inner, x.dtype)
    s = np.empty(inner, x.dtype)
    for o in range(outer):
        for i in range(inner):
            m[i] = x[o, 0, i]
            s[i] = 0
        for j in range(1, c):
            for i in range(inner):
                if x[o, j, i] > m[i]:
                    m[i] = x[o, j, i]
        for j in range(c):
            for i in range(inner):
                e = np.exp(x[o, j, i] - m[i])
                prob[o, j, i] = e
                s[i] += e
        for i in range(inner):
            y = int(label[o * inner + i])
            if y != ignore:
                loss += np.log(s[i]) - (x[o, y, i] - m[i])
                count += 1
            s[i] = one / s[i]
        for j in range(c):
            for i in range(inner):
                prob[o, j, i] *= s[i]
    return loss, count


@njit(cache=True, error_model="numpy")
def softmax_loss_backward(prob, label, ignore, scale, dx):
    """dx (outer, C, inner) = scale * (prob - onehot(label)), 0 at ignored positions.

    One contiguous sweep dx = scale * prob, then a fix-up per position (its label's entry, or
    its whole column when ignored).
    """
    outer, c, inner = prob.shape
    zero = prob.dtype.type(0)
    p2 = prob.reshape(outer, c * inner)
    d2 = dx.reshape(outer, c * inner)
    for o in range(outer):
        for k in range(c * inner):
            d2[o, k] = scale * p2[o, k]
        for i in range(inner):
            y = int(label[o * inner + i])
            if y == ignore:
                for j in range(c):
                    dx[o, j, i] = zero
            else:
                dx[o, y, i] -= scale


class SoftmaxLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ignore_label: Optional[int] = Field(None, description="positions with this label count for "
                                                           "nothing (loss and gradient)")
    normalization: Optional[Normalization] = normalization_field("VALID")
    normalize: Optional[bool] = normalize_field("VALID")
    axis: int = Field(1, description="the class axis of the scores; every other axis indexes "
                                     "one prediction (N x C x H x W: a softmax per pixel)")


@register_layer(aliases=("SoftmaxWithLoss",))  # Caffe's name for it
class SoftmaxLoss(ClassifierLayer):
    Params = SoftmaxLossParams
    is_loss = True

    def setup(self, bottom_shapes):
        self.axis = self.p.axis
        self.ignore = -(2 ** 62) if self.p.ignore_label is None else self.p.ignore_label
        self.mode = resolve_normalization(self.p.normalization, self.p.normalize, "VALID")
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        self.prob = np.zeros(scores, self.dtype)
        self.dx = np.zeros(scores, self.dtype)

    def forward(self, bottoms):
        x, label = bottoms
        self.label = self.labels(label, self.p.ignore_label)
        loss, count = softmax_loss_forward(self.scores3(x), self.label, self.ignore,
                                           self.scores3(self.prob))
        self.norm = normalizer(self.mode, self.outer, self.inner, count)
        self.top[()] = loss / self.norm
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(float(top_diffs[0]) / self.norm)
        softmax_loss_backward(self.scores3(self.prob), self.label, self.ignore, scale,
                              self.scores3(self.dx))
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return 4 * int(np.prod(bottom_shapes[0]))

    @classmethod
    def deploy(cls, step):
        """In a deploy net: a Softmax over the same axis, giving the probabilities (`prob`);
        bottom 1 holds labels (see ClassifierLayer.deploy)."""
        step.label(step.bottoms[1])
        prob = step.unique("prob")
        return [{"name": prob, "type": "Softmax", "bottom": step.bottoms[:1], "top": [prob],
                 "axis": step.p.axis}]
