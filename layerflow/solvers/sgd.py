"""SGD with momentum, Caffe's form: the learning rate sits inside the momentum buffer.

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    V <- momentum * V + rate * g      (rate = lr of the policy * lr_mult)
    W <- W - V
History: V, shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver


@njit(cache=True)
def sgd_update(w, g, v, scale, decay, l1, rate, momentum):
    """w, g, v: flat arrays of one param. g = scale g + decay w|sign(w); v = momentum v + rate g;
    w -= v. g is left as it came (the raw accumulated gradient)."""
    t = w.dtype.type
    s, d, r, m = t(scale), t(decay), t(rate), t(momentum)
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        vi = m * v[i] + r * gi
        v[i] = vi
        w[i] -= vi


@register_solver("SGD")
class SGD(Solver):
    def history_shapes(self, param):
        return [param.shape]

    def update_param(self, i, w, g, history, rate, scale, decay, l1):
        sgd_update(w, g, history[0], scale, decay, l1, rate, self.spec.momentum)
