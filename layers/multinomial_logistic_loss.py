"""MultinomialLogisticLoss: the negative log-likelihood of the labels under given
probabilities (feed it a Softmax's output; SoftmaxLoss fuses the two, more stably).

Shapes: probabilities p: (N, C) or (N, C, ...): the classes are every axis from 1 on (Caffe's
dim = count / num); labels: (N,) or (N, 1) (Caffe: N x 1 x 1 x 1), class indices.
    loss = -(1 / N) sum_n log(max(p[n, y_n], 1e-20))        (kLOG_THRESHOLD: no log(0))
Backward: dp[n, y_n] = -dloss / (N * max(p[n, y_n], 1e-20)), 0 elsewhere (Caffe's formula,
also below the threshold where the clipped loss is flat). No ignore_label and no normalization
option, as in Caffe.
Source: Caffe's src/caffe/layers/multinomial_logistic_loss_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import register_layer
from layerflow.layers.labels import ClassifierLayer


@njit(cache=True, error_model="numpy")
def multinomial_logistic_loss_forward(p, label):
    """Return sum_n -log(max(p[n, y_n], 1e-20)) in float64; p: (N, C), label: (N,)."""
    n = p.shape[0]
    thr = p.dtype.type(1e-20)
    loss = 0.0
    for i in range(n):
        loss -= np.log(max(p[i, int(label[i])], thr))
    return loss


@njit(cache=True)
def multinomial_logistic_loss_backward(p, label, scale, dp):
    """dp (N, C) = scale / max(p[n, y_n], 1e-20) at the labels, 0 elsewhere (scale = -dloss/N)."""
    n, c = p.shape
    zero = p.dtype.type(0)
    thr = p.dtype.type(1e-20)
    for i in range(n):
        y = int(label[i])
        for j in range(c):
            dp[i, j] = zero
        dp[i, y] = scale / max(p[i, y], thr)


@register_layer
class MultinomialLogisticLoss(ClassifierLayer):
    is_loss = True
    flatten_classes = True

    def setup(self, bottom_shapes):
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        self.dx = np.zeros(scores, self.dtype)

    def forward(self, bottoms):
        p, label = bottoms
        self.label = self.labels(label)
        self.p2 = p.reshape(self.outer, self.num_classes)
        self.top[()] = multinomial_logistic_loss_forward(self.p2, self.label) / max(self.outer, 1)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(-float(top_diffs[0]) / max(self.outer, 1))
        multinomial_logistic_loss_backward(self.p2, self.label, scale,
                                           self.dx.reshape(self.p2.shape))
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return int(bottom_shapes[0][0]) if bottom_shapes[0] else 0
