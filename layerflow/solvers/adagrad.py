"""AdaGrad, Caffe's form (momentum must be 0):

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    H <- H + g^2
    W <- W - rate * g / (sqrt(H) + delta)      (rate = lr of the policy * lr_mult)
History: H, shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.errors import UserError
from layerflow.registry import register_solver
from layerflow.solver import Solver


@njit(cache=True)
def adagrad_update(w, g, h, scale, decay, l1, rate, delta):
    """w, g, h: flat arrays of one param; see the module docstring."""
    t = w.dtype.type
    s, d, r, eps = t(scale), t(decay), t(rate), t(delta)
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        hi = h[i] + gi * gi
        h[i] = hi
        w[i] -= r * (gi / (np.sqrt(hi) + eps))


def no_momentum(cfg, solver: str) -> None:
    if cfg.spec.momentum != 0:
        raise UserError(f"{cfg.source.locate(('momentum',))}: momentum: {solver} takes no "
                        f"momentum (Caffe's rule), got {cfg.spec.momentum:g}; remove it or "
                        f"set it to 0")


@register_solver("AdaGrad")
class AdaGrad(Solver):
    def check_spec(self, cfg):
        no_momentum(cfg, "AdaGrad")

    def history_shapes(self, param):
        return [param.shape]

    def update_param(self, i, w, g, history, rate, scale, decay, l1):
        adagrad_update(w, g, history[0], scale, decay, l1, rate, self.spec.delta)
