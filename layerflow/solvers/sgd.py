"""SGD with momentum, Caffe's form: the learning rate sits inside the momentum buffer.

    V <- momentum * V + rate * g        (rate = base lr of the policy * lr_mult)
    W <- W - V
with g already regularized (g + decay * W for L2). History: V, shape of W.
"""
from __future__ import annotations

from numba import njit

from layerflow.registry import register_solver
from layerflow.solver import Solver


@njit(cache=True, fastmath=True)
def sgd_update(w, g, v, rate, momentum):
    """w, g, v: flat arrays of one param. v = momentum v + rate g; w -= v."""
    r = w.dtype.type(rate)
    m = w.dtype.type(momentum)
    for i in range(w.size):
        vi = m * v[i] + r * g[i]
        v[i] = vi
        w[i] -= vi


@register_solver("SGD")
class SGD(Solver):
    def history_shapes(self, param):
        return [param.shape]

    def update(self, i, param, rate):
        sgd_update(param.data.reshape(-1), param.grad.reshape(-1), self.history[i][0].reshape(-1),
                   rate, self.spec.momentum)
