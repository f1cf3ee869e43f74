"""RMSProp, Caffe's form (momentum must be 0):

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    H <- rms_decay * H + (1 - rms_decay) * g^2
    W <- W - rate * g / (sqrt(H) + delta)      (rate = lr of the policy * lr_mult)
History: H, in the layout of the param buffer.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized
from layerflow.solvers.adagrad import no_momentum


@njit(cache=True)
def rmsprop_update(w, g, h, offsets, rates, decays, scale, l1, rms_decay, delta):
    """w, g, h: the flat buffers, param k in [offsets[k], offsets[k+1]); see the docstring."""
    t = w.dtype.type
    s, eps = t(scale), t(delta)
    rho = t(rms_decay)
    rho1 = t(1) - rho
    for k in range(offsets.size - 1):
        r, d = t(rates[k]), t(decays[k])
        for i in range(offsets[k], offsets[k + 1]):
            gi = regularized(g[i], w[i], s, d, l1)
            hi = rho * h[i] + rho1 * (gi * gi)
            h[i] = hi
            w[i] -= r * (gi / (np.sqrt(hi) + eps))


@register_solver("RMSProp")
class RMSProp(Solver):
    num_history = 1

    def check_spec(self, cfg):
        no_momentum(cfg, "RMSProp")

    def update_buffer(self, w, g, history, rates, scale, l1):
        rmsprop_update(w, g, history[0], self.buffer.offsets, rates, self.decays, scale, l1,
                       self.spec.rms_decay, self.spec.delta)
