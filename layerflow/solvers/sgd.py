"""SGD with momentum, Caffe's form: the learning rate sits inside the momentum buffer.

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    V <- momentum * V + rate * g      (rate = lr of the policy * lr_mult)
    W <- W - V
History: V, shape of W.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from layerflow.registry import register_solver
from layerflow.solver import Solver


PARALLEL_MIN = 1 << 17  # elements; below this a parallel region costs more than it saves


@njit(cache=True)
def sgd_update(w, g, v, scale, decay, l1, rate, momentum):
    """w, g, v: flat arrays of one param. g = scale g + decay w|sign(w); v = momentum v + rate g;
    w -= v. g is left as it came (the raw accumulated gradient). Large params go to the
    threaded twin (memory-bound: two cores move twice the bytes)."""
    if w.size >= PARALLEL_MIN:
        sgd_update_parallel(w, g, v, scale, decay, l1, rate, momentum)
        return
    t = w.dtype.type
    s, d, r, m = t(scale), t(decay), t(rate), t(momentum)
    for i in range(w.size):
        gi = s * g[i] + d * (np.sign(w[i]) if l1 else w[i])
        vi = m * v[i] + r * gi
        v[i] = vi
        w[i] -= vi


@njit(cache=True, parallel=True)
def sgd_update_parallel(w, g, v, scale, decay, l1, rate, momentum):
    """sgd_update over the cores (prange: every element is written by one thread only)."""
    t = w.dtype.type
    s, d, r, m = t(scale), t(decay), t(rate), t(momentum)
    for i in prange(w.size):
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
