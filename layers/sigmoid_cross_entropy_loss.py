"""SigmoidCrossEntropyLoss: a sigmoid then the binary cross-entropy against targets in [0, 1].

Shapes: logits x: (N, ...), targets t: the same N and count (Caffe compares counts only);
top: (). Per element, computed stably from x (exp only of -|x|, no overflow in float32):
    l = -[t log s(x) + (1 - t) log(1 - s(x))] = -[x (t - [x >= 0]) - log(1 + exp(-|x|))]
    loss = sum_{counted} l / D
Elements whose target, cast to int as C does (truncation toward 0, so 0.5 -> 0), equals
ignore_label are not counted. D = normalizer(normalization): default BATCH_SIZE (N), unlike
SoftmaxLoss; FULL = count, VALID = counted elements, NONE = 1; at least 1. Legacy `normalize`
(used only without normalization): true = VALID, false = BATCH_SIZE.
Backward: dx = dloss * (s(x) - t) / D, 0 at ignored elements, from the sigmoid cached by the
forward. Targets get no gradient.
Source: Caffe's src/caffe/layers/sigmoid_cross_entropy_loss_layer.cpp.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer
from layerflow.layers.labels import (Normalization, normalization_field, normalize_field,
                                     normalizer, resolve_normalization)


@njit(cache=True, error_model="numpy")
def sigmoid_cross_entropy_forward(x, t, ignore, use_ignore, sig):
    """sig = sigmoid(x); return (sum of the counted losses in float64, counted).
    x, t, sig: flat arrays of one length (t may be of another dtype, e.g. int labels)."""
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    loss = 0.0
    count = 0
    for i in range(x.size):
        v = x[i]
        e = np.exp(-abs(v))
        if v >= zero:
            sig[i] = one / (one + e)
        else:
            sig[i] = e / (one + e)
        if use_ignore and int(t[i]) == ignore:
            continue
        pos = one if v >= zero else zero
        loss -= v * (t[i] - pos) - np.log1p(e)
        count += 1
    return loss, count


@njit(cache=True)
def sigmoid_cross_entropy_backward(sig, t, ignore, use_ignore, scale, dx):
    """dx = scale * (sig - t), 0 where int(t) == ignore (when use_ignore); flat arrays."""
    zero = sig.dtype.type(0)
    for i in range(sig.size):
        if use_ignore and int(t[i]) == ignore:
            dx[i] = zero
        else:
            dx[i] = scale * (sig[i] - t[i])


class SigmoidCrossEntropyLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ignore_label: Optional[int] = Field(None, description="elements whose target (cast to int) "
                                                           "equals this count for nothing")
    normalization: Optional[Normalization] = normalization_field("BATCH_SIZE")
    normalize: Optional[bool] = normalize_field("BATCH_SIZE")


@register_layer
class SigmoidCrossEntropyLoss(Layer):
    Params = SigmoidCrossEntropyLossParams
    num_bottoms = 2
    is_loss = True

    def setup(self, bottom_shapes):
        self.use_ignore = self.p.ignore_label is not None
        self.ignore = self.p.ignore_label if self.use_ignore else 0
        self.mode = resolve_normalization(self.p.normalization, self.p.normalize, "BATCH_SIZE")
        self.top = np.zeros((), self.dtype)

    def reshape(self, bottom_shapes):
        x, t = (tuple(s) for s in bottom_shapes)
        if len(x) < 1 or len(t) < 1 or x[0] != t[0] or np.prod(x) != np.prod(t):
            names = self.bottom_names or ["bottom[0]", "bottom[1]"]
            raise UserError(f"layer {self.name} (SigmoidCrossEntropyLoss): targets must have "
                            f"the logits' batch size and count, got logits {names[0]} {x} and "
                            f"targets {names[1]} {t}")
        self.outer = x[0]
        self.inner = int(np.prod(x[1:]))
        self.sig = np.zeros(x, self.dtype)
        self.dx = np.zeros(x, self.dtype)
        return [()]

    def forward(self, bottoms):
        x, t = bottoms
        self.t = t.reshape(-1)
        loss, count = sigmoid_cross_entropy_forward(x.reshape(-1), self.t, self.ignore,
                                                    self.use_ignore, self.sig.reshape(-1))
        self.norm = normalizer(self.mode, self.outer, self.inner, count)
        self.top[()] = loss / self.norm
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        scale = self.dtype.type(float(top_diffs[0]) / self.norm)
        sigmoid_cross_entropy_backward(self.sig.reshape(-1), self.t, self.ignore,
                                       self.use_ignore, scale, self.dx.reshape(-1))
        return [self.dx, None]

    def flops(self, bottom_shapes):
        return 6 * int(np.prod(bottom_shapes[0]))

    @classmethod
    def deploy(cls, step):
        """In a deploy net: a Sigmoid of the logits, giving each element's probability."""
        prob = step.unique("prob")
        return [{"name": prob, "type": "Sigmoid", "bottom": step.bottoms[:1], "top": [prob]}]
