"""Nesterov's accelerated gradient, Caffe's form (momentum buffer holding the lr):

    g     <- scale * g + decay * W    (decay * sign(W) for L1; scale = clip / iter_size)
    V_new  = momentum * V + rate * g  (rate = lr of the policy * lr_mult)
    W     <- W - ((1 + momentum) * V_new - momentum * V)
    V     <- V_new
History: V, in the layout of the param buffer.
"""
from __future__ import annotations

from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized


@njit(cache=True)
def nesterov_update(w, g, v, offsets, rates, decays, scale, l1, momentum):
    """w, g, v: the flat buffers, param k in [offsets[k], offsets[k+1]); see the docstring."""
    t = w.dtype.type
    s, m = t(scale), t(momentum)
    m1 = t(1) + m
    for k in range(offsets.size - 1):
        r, d = t(rates[k]), t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs, vs = w[lo:hi], g[lo:hi], v[lo:hi]
        for i in range(hi - lo):
            gi = regularized(gs[i], ws[i], s, d, l1)
            old = vs[i]
            vi = m * old + r * gi
            vs[i] = vi
            ws[i] -= m1 * vi - m * old


@register_solver("Nesterov")
class Nesterov(Solver):
    num_history = 1

    def update_buffer(self, w, g, history, rates, scale, l1):
        nesterov_update(w, g, history[0], self.buffer.offsets, rates, self.decays, scale, l1,
                        self.spec.momentum)
