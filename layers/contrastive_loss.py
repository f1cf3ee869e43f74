"""ContrastiveLoss: pulls similar pairs together, pushes dissimilar ones beyond a margin
(Hadsell, Chopra, LeCun 2006).

Shapes: a, b: (N, C) (or Caffe's N x C x 1 x 1); y: (N,) (or N x 1 x 1 x 1), the similarity:
cast to int as C does, any nonzero value means similar (so 0.5 means dissimilar). top: ().
With d_n^2 = ||a_n - b_n||^2 and m = margin:
    loss = 1/(2N) sum_n [ y_n d_n^2 + (1 - y_n) max(m - d_n, 0)^2 ]       (current)
    loss = 1/(2N) sum_n [ y_n d_n^2 + (1 - y_n) max(m - d_n^2, 0) ]       (legacy_version)
Backward (db = -da), with alpha = dloss / N:
    similar:     da_n = alpha (a_n - b_n)
    dissimilar:  da_n = -alpha (m - d_n) / (d_n + 1e-4) (a_n - b_n) where m > d_n, else 0
                 legacy: da_n = -alpha (a_n - b_n) where m > d_n^2, else 0
The 1e-4 is Caffe's guard against d = 0: the current version's gradient is therefore d/(d +
1e-4) times the exact one, as in Caffe. a - b and d^2 are cached by the forward.
Source: Caffe's src/caffe/layers/contrastive_loss_layer.cpp.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer


@njit(cache=True)
def contrastive_loss_forward(a, b, y, margin, legacy, diff, dist_sq):
    """diff (N, C) = a - b, dist_sq (N,) = row sums of diff^2; return the summed pair terms
    (before the 1/(2N)), in float64. a, b: (N, C); y: (N,); margin: a float."""
    n, c = a.shape
    loss = 0.0
    for i in range(n):
        s = 0.0
        for j in range(c):
            d = a[i, j] - b[i, j]
            diff[i, j] = d
            s += d * d
        dist_sq[i] = s
        if int(y[i]) != 0:
            loss += s
        elif legacy:
            loss += max(margin - s, 0.0)
        else:
            gap = max(margin - np.sqrt(s), 0.0)
            loss += gap * gap
    return loss


@njit(cache=True)
def contrastive_loss_backward(diff, dist_sq, y, margin, legacy, alpha, dx):
    """dx (N, C) = beta_n * diff[n] with beta_n as in the module docstring: alpha for a similar
    pair, the margin term's factor for a dissimilar one (alpha = +-dloss / N, float)."""
    n, c = diff.shape
    for i in range(n):
        if int(y[i]) != 0:
            beta = alpha
        elif legacy:
            beta = -alpha if margin - dist_sq[i] > 0.0 else 0.0
        else:
            dist = np.sqrt(dist_sq[i])
            gap = margin - dist
            beta = -alpha * gap / (dist + 1e-4) if gap > 0.0 else 0.0
        scale = diff.dtype.type(beta)
        for j in range(c):
            dx[i, j] = scale * diff[i, j]


class ContrastiveLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    margin: float = Field(1.0, description="dissimilar pairs closer than this are pushed apart")
    legacy_version: bool = Field(False, description="Caffe's first form: max(margin - d^2, 0) "
                                                    "instead of max(margin - d, 0)^2")


@register_layer
class ContrastiveLoss(Layer):
    Params = ContrastiveLossParams
    num_bottoms = 3
    is_loss = True

    def setup(self, bottom_shapes):
        self.top = np.zeros((), self.dtype)

    def reshape(self, bottom_shapes):
        a, b, y = (tuple(s) for s in bottom_shapes)
        names = self.bottom_names or ["bottom[0]", "bottom[1]", "bottom[2]"]
        where = f"layer {self.name} (ContrastiveLoss)"
        for name, s in ((names[0], a), (names[1], b)):
            if len(s) < 2 or any(d != 1 for d in s[2:]):
                raise UserError(f"{where}: {name} must be (N, C) or (N, C, 1, 1), got shape {s}")
        if (a[0], a[1]) != (b[0], b[1]):
            raise UserError(f"{where}: the pair must have the same (N, C), got {names[0]} {a} "
                            f"and {names[1]} {b}")
        if len(y) < 1 or y[0] != a[0] or any(d != 1 for d in y[1:]):
            raise UserError(f"{where}: the similarity {names[2]} must be ({a[0]},) or "
                            f"({a[0]}, 1, 1, 1), one per pair, got shape {y}")
        self.view = (a[0], a[1])
        self.shapes = (a, b)
        self.diff = np.zeros(self.view, self.dtype)
        self.dist_sq = np.zeros(a[0], self.dtype)
        self.dxs = [np.zeros(a, self.dtype), np.zeros(b, self.dtype)]
        return [()]

    def forward(self, bottoms):
        a, b, y = bottoms
        self.y = y.reshape(-1)
        if not np.isfinite(self.y).all():
            i = int(np.flatnonzero(~np.isfinite(self.y))[0])
            raise UserError(f"layer {self.name} (ContrastiveLoss): similarity "
                            f"{self.y[i].item()!r} at batch index {i} is not a number")
        total = contrastive_loss_forward(a.reshape(self.view), b.reshape(self.view), self.y,
                                         self.p.margin, self.p.legacy_version, self.diff,
                                         self.dist_sq)
        self.top[()] = total / max(self.view[0], 1) / 2
        return [self.top]

    def backward(self, top_diffs):
        alpha = float(top_diffs[0]) / max(self.view[0], 1)
        out = [None, None, None]
        for k in (0, 1):
            if self.propagate_down[k]:
                contrastive_loss_backward(self.diff, self.dist_sq, self.y, self.p.margin,
                                          self.p.legacy_version, alpha if k == 0 else -alpha,
                                          self.dxs[k].reshape(self.view))
                out[k] = self.dxs[k]
        return out

    def flops(self, bottom_shapes):
        return 3 * int(np.prod(bottom_shapes[0]))
