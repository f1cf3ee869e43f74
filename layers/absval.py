"""AbsVal: y = |x|, elementwise.

Shapes: top has the bottom's shape. Backward: dx = sign(x) * dout, with sign(0) = 0 (Caffe's
caffe_cpu_sign), so the kink at 0 passes no gradient. Caffe forbids AbsVal in place, because it
needs x in backward and in-place would have overwritten it; in layerflow an in-place top is a
new blob version with its own buffer, x is never overwritten, and in-place is fine.
Source: Caffe's src/caffe/layers/absval_layer.cpp.
"""
from __future__ import annotations

from numba import njit

from layerflow import NeuronLayer, register_layer


@njit(cache=True)
def absval_forward(x, out):
    """out = |x|; x, out: flat arrays of the same length and dtype."""
    for i in range(x.size):
        out[i] = abs(x[i])


@njit(cache=True)
def absval_backward(x, dout, dx):
    """dx = sign(x) * dout, sign(x) = [x > 0] - [x < 0]: 0 at x == 0 (and at a NaN x, whose
    NaN the forward already passed on)."""
    zero = x.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        if v > zero:
            dx[i] = dout[i]
        elif v < zero:
            dx[i] = -dout[i]
        else:
            dx[i] = zero


@register_layer
class AbsVal(NeuronLayer):
    kink = 0.0

    def forward_kernel(self, x, y):
        absval_forward(x, y)

    def backward_kernel(self, x, y, dout, dx):
        absval_backward(x, dout, dx)
