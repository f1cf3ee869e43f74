"""Nesterov's accelerated gradient, Caffe's form (momentum buffer holding the lr):

    g     <- scale * g + decay * W    (decay * sign(W) for L1; scale = clip / iter_size)
    V_new  = momentum * V + rate * g  (rate = lr of the policy * lr_mult)
    W     <- W - ((1 + momentum) * V_new - momentum * V)
    V     <- V_new
History: V, shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver


@njit(cache=True)
def nesterov_update(w, g, v, scale, decay, l1, rate, momentum):
    """w, g, v: flat arrays of one param; see the module docstring."""
    t = w.dtype.type
    s, d, r, m = t(scale), t(decay), t(rate), t(momentum)
    m1 = t(1) + m
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        old = v[i]
        vi = m * old + r * gi
        v[i] = vi
        w[i] -= m1 * vi - m * old


@register_solver("Nesterov")
class Nesterov(Solver):
    def history_shapes(self, param):
        return [param.shape]

    def update_param(self, i, w, g, history, rate, scale, decay, l1):
        nesterov_update(w, g, history[0], scale, decay, l1, rate, self.spec.momentum)
