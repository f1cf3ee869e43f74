"""AdaDelta, Caffe's form: `momentum` is the decay of both running averages.

    g   <- scale * g + decay * W      (decay * sign(W) for L1; scale = clip / iter_size)
    Eg  <- momentum * Eg + (1 - momentum) * g^2
    dx   = g * sqrt((Edx + delta) / (Eg + delta))
    Edx <- momentum * Edx + (1 - momentum) * dx^2
    W   <- W - rate * dx              (rate = lr of the policy * lr_mult; Caffe's examples
                                       use base_lr 1.0)
History: Eg and Edx, each in the layout of the param buffer.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized


@njit(cache=True, error_model="numpy")  # eps > 0: no check per division, vectorised
def adadelta_update(w, g, eg, edx, offsets, rates, decays, scale, l1, momentum, delta):
    """w, g, eg, edx: the flat buffers, param k in [offsets[k], offsets[k+1])."""
    t = w.dtype.type
    s, eps = t(scale), t(delta)
    m = t(momentum)
    m1 = t(1) - m
    for k in range(offsets.size - 1):
        r, d = t(rates[k]), t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs, egs, edxs = w[lo:hi], g[lo:hi], eg[lo:hi], edx[lo:hi]
        for i in range(hi - lo):
            gi = regularized(gs[i], ws[i], s, d, l1)
            egi = m * egs[i] + m1 * (gi * gi)
            egs[i] = egi
            dx = gi * np.sqrt((edxs[i] + eps) / (egi + eps))
            edxs[i] = m * edxs[i] + m1 * (dx * dx)
            ws[i] -= r * dx


@register_solver("AdaDelta")
class AdaDelta(Solver):
    num_history = 2

    def update_buffer(self, w, g, history, rates, scale, l1):
        adadelta_update(w, g, history[0], history[1], self.buffer.offsets, rates, self.decays,
                        scale, l1, self.spec.momentum, self.spec.delta)
