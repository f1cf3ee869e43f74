"""AdaDelta, Caffe's form: `momentum` is the decay of both running averages.

    g   <- scale * g + decay * W      (decay * sign(W) for L1; scale = clip / iter_size)
    Eg  <- momentum * Eg + (1 - momentum) * g^2
    dx   = g * sqrt((Edx + delta) / (Eg + delta))
    Edx <- momentum * Edx + (1 - momentum) * dx^2
    W   <- W - rate * dx              (rate = lr of the policy * lr_mult; Caffe's examples
                                       use base_lr 1.0)
History: Eg and Edx, each the shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver


@njit(cache=True)
def adadelta_update(w, g, eg, edx, scale, decay, l1, rate, momentum, delta):
    """w, g, eg, edx: flat arrays of one param; see the module docstring."""
    t = w.dtype.type
    s, d, r, eps = t(scale), t(decay), t(rate), t(delta)
    m = t(momentum)
    m1 = t(1) - m
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        egi = m * eg[i] + m1 * (gi * gi)
        eg[i] = egi
        dx = gi * np.sqrt((edx[i] + eps) / (egi + eps))
        edx[i] = m * edx[i] + m1 * (dx * dx)
        w[i] -= r * dx


@register_solver("AdaDelta")
class AdaDelta(Solver):
    def history_shapes(self, param):
        return [param.shape, param.shape]

    def update_param(self, i, w, g, history, rate, scale, decay, l1):
        adadelta_update(w, g, history[0], history[1], scale, decay, l1, rate,
                        self.spec.momentum, self.spec.delta)
