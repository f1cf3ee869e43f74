"""AdaGrad, Caffe's form (momentum must be 0):

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    H <- H + g^2
    W <- W - rate * g / (sqrt(H) + delta)      (rate = lr of the policy * lr_mult)
History: H, in the layout of the param buffer.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.errors import UserError
from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized


@njit(cache=True, error_model="numpy")  # eps > 0: no check per division, vectorised
def adagrad_update(w, g, h, offsets, rates, decays, scale, l1, delta):
    """w, g, h: the flat buffers, param k in [offsets[k], offsets[k+1]); see the docstring."""
    t = w.dtype.type
    s, eps = t(scale), t(delta)
    for k in range(offsets.size - 1):
        r, d = t(rates[k]), t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs, hs = w[lo:hi], g[lo:hi], h[lo:hi]
        for i in range(hi - lo):
            gi = regularized(gs[i], ws[i], s, d, l1)
            hi = hs[i] + gi * gi
            hs[i] = hi
            ws[i] -= r * (gi / (np.sqrt(hi) + eps))


def no_momentum(cfg, solver: str) -> None:
    if cfg.spec.momentum != 0:
        raise UserError(f"{cfg.source.locate(('momentum',))}: momentum: {solver} takes no "
                        f"momentum (Caffe's rule), got {cfg.spec.momentum:g}; remove it or "
                        f"set it to 0")


@register_solver("AdaGrad")
class AdaGrad(Solver):
    num_history = 1

    def check_spec(self, cfg):
        no_momentum(cfg, "AdaGrad")

    def update_buffer(self, w, g, history, rates, scale, l1):
        adagrad_update(w, g, history[0], self.buffer.offsets, rates, self.decays, scale, l1,
                       self.spec.delta)
