"""SoftmaxLoss: softmax over classes then cross-entropy, averaged over the counted samples.

Shapes: scores x: (N, C); labels: (N,) or (N, 1), class indices stored as floats or ints.
    p[n, c] = exp(x[n, c] - max_c x[n]) / sum_c' exp(x[n, c'] - max_c x[n])
    loss    = -(1 / V) sum_{n counted} log p[n, y_n]       V = samples whose label != ignore_label
Backward: dx[n, c] = dloss * (p[n, c] - [c == y_n]) / V, and 0 for ignored samples.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import register_layer
from layerflow.layers.labels import ClassifierLayer


# No fastmath: its no-NaN assumption would turn a NaN score into an exception or garbage
# instead of a NaN loss, and the divergence guard needs the NaN to name the layer.
@njit(cache=True, error_model="numpy")
def softmax_loss_forward(x, label, ignore, prob):
    """Fill prob (N, C) with the softmax of x (N, C); return (sum of -log p[y], counted)."""
    n, c = x.shape
    loss = 0.0
    count = 0
    for i in range(n):
        m = x[i, 0]
        for j in range(1, c):
            if x[i, j] > m:
                m = x[i, j]
        s = x.dtype.type(0)
        for j in range(c):
            e = np.exp(x[i, j] - m)
            prob[i, j] = e
            s += e
        inv = x.dtype.type(1) / s
        for j in range(c):
            prob[i, j] *= inv
        y = int(label[i])
        if y == ignore:
            continue
        # log p computed from the shifted scores: exact, and never log(0)
        loss += np.log(s) - (x[i, y] - m)
        count += 1
    return loss, count


@njit(cache=True, error_model="numpy")
def softmax_loss_backward(prob, label, ignore, scale, dx):
    """dx (N, C) = scale * (prob - onehot(label)), zero rows for ignored labels."""
    n, c = prob.shape
    for i in range(n):
        y = int(label[i])
        if y == ignore:
            for j in range(c):
                dx[i, j] = 0
            continue
        for j in range(c):
            dx[i, j] = scale * prob[i, j]
        dx[i, y] -= scale


class SoftmaxLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ignore_label: Optional[int] = Field(None, description="samples with this label count for "
                                                           "nothing (loss and gradient)")


@register_layer(aliases=("SoftmaxWithLoss",))  # Caffe's name for it
class SoftmaxLoss(ClassifierLayer):
    Params = SoftmaxLossParams
    is_loss = True

    def setup(self, bottom_shapes):
        self.ignore = -(2 ** 62) if self.p.ignore_label is None else self.p.ignore_label
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        self.prob = np.zeros(scores, self.dtype)
        self.dx = np.zeros(scores, self.dtype)

    def forward(self, bottoms):
        x, label = bottoms
        self.label = self.labels(label, self.p.ignore_label)
        loss, self.count = softmax_loss_forward(x, self.label, self.ignore, self.prob)
        self.top[()] = loss / max(self.count, 1)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(float(top_diffs[0]) / max(self.count, 1))
        softmax_loss_backward(self.prob, self.label, self.ignore, scale, self.dx)
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return 4 * int(np.prod(bottom_shapes[0]))
