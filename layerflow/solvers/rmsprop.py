"""RMSProp, Caffe's form (momentum must be 0):

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    H <- rms_decay * H + (1 - rms_decay) * g^2
    W <- W - rate * g / (sqrt(H) + delta)      (rate = lr of the policy * lr_mult)
History: H, shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver
from layerflow.solvers.adagrad import no_momentum


@njit(cache=True)
def rmsprop_update(w, g, h, scale, decay, l1, rate, rms_decay, delta):
    """w, g, h: flat arrays of one param; see the module docstring."""
    t = w.dtype.type
    s, d, r, eps = t(scale), t(decay), t(rate), t(delta)
    rho = t(rms_decay)
    rho1 = t(1) - rho
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        hi = rho * h[i] + rho1 * (gi * gi)
        h[i] = hi
        w[i] -= r * (gi / (np.sqrt(hi) + eps))


@register_solver("RMSProp")
class RMSProp(Solver):
    def check_spec(self, cfg):
        no_momentum(cfg, "RMSProp")

    def history_shapes(self, param):
        return [param.shape]

    def update_param(self, i, w, g, history, rate, scale, decay, l1):
        rmsprop_update(w, g, history[0], scale, decay, l1, rate, self.spec.rms_decay,
                       self.spec.delta)
