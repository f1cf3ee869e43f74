"""Adam, Caffe's form: the bias correction is applied to the step size.

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    M <- beta1 * M + (1 - beta1) * g                  beta1 = momentum
    V <- beta2 * V + (1 - beta2) * g^2                beta2 = momentum2
    W <- W - rate * sqrt(1 - beta2^t) / (1 - beta1^t) * M / (sqrt(V) + delta)
with t = iter + 1 and rate = lr of the policy * lr_mult. History: M and V, each in the layout
of the param buffer.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layerflow.errors import UserError
from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized


@njit(cache=True, error_model="numpy")  # eps > 0: no check per division, vectorised
def adam_update(w, g, m, v, offsets, steps, decays, scale, l1, beta1, beta2, delta):
    """w, g, m, v: the flat buffers, param k in [offsets[k], offsets[k+1]) with step size
    steps[k] = rate * the bias correction."""
    t = w.dtype.type
    s, eps = t(scale), t(delta)
    b1, b2 = t(beta1), t(beta2)
    c1, c2 = t(1) - b1, t(1) - b2
    for k in range(offsets.size - 1):
        a, d = t(steps[k]), t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs, ms, vs = w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(hi - lo):
            gi = regularized(gs[i], ws[i], s, d, l1)
            mi = b1 * ms[i] + c1 * gi
            vi = b2 * vs[i] + c2 * (gi * gi)
            ms[i] = mi
            vs[i] = vi
            ws[i] -= a * (mi / (np.sqrt(vi) + eps))


@register_solver("Adam")
class Adam(Solver):
    num_history = 2

    def check_spec(self, cfg):
        if not cfg.spec.momentum < 1:
            raise UserError(f"{cfg.source.locate(('momentum',))}: momentum: Adam's beta1 must "
                            f"be below 1, got {cfg.spec.momentum:g} (Caffe's examples: 0.9)")

    def update_buffer(self, w, g, history, rates, scale, l1):
        spec = self.spec
        t = self.iter + 1
        correction = math.sqrt(1.0 - spec.momentum2 ** t) / (1.0 - spec.momentum ** t)
        adam_update(w, g, history[0], history[1], self.buffer.offsets, rates * correction,
                    self.decays, scale, l1, spec.momentum, spec.momentum2, spec.delta)
