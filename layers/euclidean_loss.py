"""EuclideanLoss: half the mean over the batch of the squared distance of two blobs.

Shapes: a, b: (N, ...) with the same N and the same count per sample (Caffe compares counts,
so (N, 3) against (N, 3, 1, 1) is fine); top: ().
    loss = sum (a - b)^2 / (2 N)                  N = shape[0]: no normalization key
Backward: da = dloss * (a - b) / N, db = -da: both bottoms get a gradient (either may be the
target, or both learned). The difference a - b is cached by the forward.
Source: Caffe's src/caffe/layers/euclidean_loss_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import Layer, UserError, register_layer


@njit(cache=True)
def euclidean_loss_forward(a, b, diff):
    """diff = a - b; return sum(diff^2) accumulated in float64. a, b, diff: flat arrays."""
    total = 0.0
    for i in range(a.size):
        d = a[i] - b[i]
        diff[i] = d
        total += d * d
    return total


@njit(cache=True)
def euclidean_loss_backward(diff, scale, dx):
    """dx = scale * diff; diff, dx: flat arrays; scale: a scalar of their dtype."""
    for i in range(diff.size):
        dx[i] = scale * diff[i]


@register_layer
class EuclideanLoss(Layer):
    num_bottoms = 2
    is_loss = True

    def reshape(self, bottom_shapes):
        a, b = (tuple(s) for s in bottom_shapes)
        if len(a) < 1 or len(b) < 1 or a[0] != b[0] or np.prod(a[1:]) != np.prod(b[1:]):
            names = self.bottom_names or ["bottom[0]", "bottom[1]"]
            raise UserError(f"layer {self.name} (EuclideanLoss): bottoms must have the same "
                            f"batch size and count per sample, got {names[0]} {a} and "
                            f"{names[1]} {b}")
        self.num = a[0]
        self.shapes = (a, b)
        self.diff = np.zeros(int(np.prod(a)), self.dtype)
        self.dxs = [np.zeros(a, self.dtype), np.zeros(b, self.dtype)]
        self.top = np.zeros((), self.dtype)
        return [()]

    def forward(self, bottoms):
        a, b = bottoms
        total = euclidean_loss_forward(a.reshape(-1), b.reshape(-1), self.diff)
        self.top[()] = total / max(self.num, 1) / 2
        return [self.top]

    def backward(self, top_diffs):
        alpha = float(top_diffs[0]) / max(self.num, 1)
        out = []
        for dx, sign, down in zip(self.dxs, (1.0, -1.0), self.propagate_down):
            if down:
                euclidean_loss_backward(self.diff, self.dtype.type(sign * alpha),
                                        dx.reshape(-1))
            out.append(dx if down else None)
        return out

    def flops(self, bottom_shapes):
        return 3 * int(np.prod(bottom_shapes[0]))
