"""SGD with momentum, Caffe's form: the learning rate sits inside the momentum buffer.

    g <- scale * g + decay * W        (decay * sign(W) for L1; scale = clip / iter_size)
    V <- momentum * V + rate * g      (rate = lr of the policy * lr_mult)
    W <- W - V
History: V, in the layout of the param buffer.
"""
from __future__ import annotations

from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver, regularized


@njit(cache=True)
def sgd_update(w, g, v, offsets, rates, decays, scale, l1, momentum):
    """w, g, v: the flat buffers; param k is [offsets[k], offsets[k+1]) with its own rate and
    decay. g is left as it came (the raw accumulated gradient)."""
    t = w.dtype.type
    s, m = t(scale), t(momentum)
    for k in range(offsets.size - 1):
        r, d = t(rates[k]), t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs, vs = w[lo:hi], g[lo:hi], v[lo:hi]
        for i in range(hi - lo):
            gi = regularized(gs[i], ws[i], s, d, l1)
            vi = m * vs[i] + r * gi
            vs[i] = vi
            ws[i] -= vi


@register_solver("SGD")
class SGD(Solver):
    num_history = 1

    def update_buffer(self, w, g, history, rates, scale, l1):
        sgd_update(w, g, history[0], self.buffer.offsets, rates, self.decays, scale, l1,
                   self.spec.momentum)
