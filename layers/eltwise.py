"""Eltwise: combines K >= 2 bottoms of identical shape elementwise.

Shapes: every bottom and the top have the same shape.
    SUM:  y = sum_i c_i x_i          (c_i from `coeff`, default 1)   dx_i = c_i dout
    PROD: y = prod_i x_i                                             dx_i = dout prod_{j != i} x_j
    MAX:  y = max_i x_i, a = the winning bottom                      dx_i = dout [a == i]
PROD's backward multiplies prefix and suffix products instead of dividing y by x_i, so zeros in
the bottoms are exact.

MAX ties follow Caffe exactly (eltwise_layer.cpp): bottoms 0 and 1 are compared as
`x0 > x1 ? x0 : x1`, so a tie between them goes to bottom 1; every later bottom replaces the
running maximum only when strictly greater, so a tie with it keeps the earlier winner.
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, model_validator

from layerflow import Layer, UserError, register_layer


@njit(cache=True)
def eltwise_scale(x, coeff, out):
    """out = coeff * x; x, out: flat arrays; coeff: a scalar of their dtype."""
    for i in range(x.size):
        out[i] = coeff * x[i]


@njit(cache=True)
def eltwise_add_scaled(x, coeff, out):
    """out += coeff * x."""
    for i in range(x.size):
        out[i] += coeff * x[i]


@njit(cache=True)
def eltwise_mul(x, out):
    """out *= x."""
    for i in range(x.size):
        out[i] *= x[i]


@njit(cache=True)
def eltwise_mul_into(a, b, out):
    """out = a * b."""
    for i in range(a.size):
        out[i] = a[i] * b[i]


@njit(cache=True)
def eltwise_max_first_two(x0, x1, out, argmax):
    """out = x0 > x1 ? x0 : x1 and argmax = 0 or 1: Caffe's rule, a tie goes to bottom 1."""
    for i in range(x0.size):
        if x0[i] > x1[i]:
            out[i] = x0[i]
            argmax[i] = 0
        else:
            out[i] = x1[i]
            argmax[i] = 1


@njit(cache=True)
def eltwise_max(x, k, out, argmax):
    """Where x > out: out = x and argmax = k (strictly greater: a tie keeps the earlier
    winner), for bottoms k >= 2."""
    for i in range(x.size):
        if x[i] > out[i]:
            out[i] = x[i]
            argmax[i] = k


@njit(cache=True)
def eltwise_max_backward(dout, argmax, k, dx):
    """dx = dout where argmax == k, else 0."""
    zero = dout.dtype.type(0)
    for i in range(dout.size):
        dx[i] = dout[i] if argmax[i] == k else zero


class EltwiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Literal["SUM", "PROD", "MAX"] = Field("SUM", description="SUM | PROD | MAX")
    coeff: Optional[list[float]] = Field(None, description="SUM only: one weight per bottom "
                                                           "(default all 1)")

    @model_validator(mode="after")
    def _coeff_only_for_sum(self):
        if self.coeff is not None and self.operation != "SUM":
            raise ValueError(f"coeff applies to operation SUM only, got operation="
                             f"{self.operation}")
        return self


@register_layer
class Eltwise(Layer):
    Params = EltwiseParams
    num_bottoms = (2, None)

    def setup(self, bottom_shapes):
        n = len(bottom_shapes)
        if n < 2:
            raise UserError(f"layer {self.name} (Eltwise): needs at least 2 bottoms, got {n}")
        coeff = self.p.coeff if self.p.coeff is not None else [1.0] * n
        if len(coeff) != n:
            raise UserError(f"layer {self.name} (Eltwise): coeff has {len(coeff)} values for "
                            f"{n} bottoms; give one per bottom")
        self.coeff = [self.dtype.type(c) for c in coeff]

    def reshape(self, bottom_shapes):
        shapes = [tuple(s) for s in bottom_shapes]
        if any(s != shapes[0] for s in shapes):
            names = self.bottom_names or [f"bottom[{i}]" for i in range(len(shapes))]
            listing = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
            raise UserError(f"layer {self.name} (Eltwise): bottoms must have identical shapes, "
                            f"got {listing}")
        shape = shapes[0]
        self.top = np.zeros(shape, self.dtype)
        self.dxs = [np.zeros(shape, self.dtype) for _ in shapes]
        if self.p.operation == "PROD":
            self.scratch = np.zeros(shape, self.dtype)
        if self.p.operation == "MAX":
            self.argmax = np.zeros(shape, np.int32)
        return [shape]

    def forward(self, bottoms):
        out = self.top.reshape(-1)
        xs = [b.reshape(-1) for b in bottoms]
        op = self.p.operation
        if op == "SUM":
            eltwise_scale(xs[0], self.coeff[0], out)
            for x, c in zip(xs[1:], self.coeff[1:]):
                eltwise_add_scaled(x, c, out)
        elif op == "PROD":
            self.xs = xs
            out[:] = xs[0]
            for x in xs[1:]:
                eltwise_mul(x, out)
        else:
            argmax = self.argmax.reshape(-1)
            eltwise_max_first_two(xs[0], xs[1], out, argmax)
            for k in range(2, len(xs)):
                eltwise_max(xs[k], k, out, argmax)
        return [self.top]

    def backward(self, top_diffs):
        dout = top_diffs[0].reshape(-1)
        dxs = [dx.reshape(-1) for dx in self.dxs]
        op = self.p.operation
        if op == "SUM":
            for dx, c, down in zip(dxs, self.coeff, self.propagate_down):
                if down:
                    eltwise_scale(dout, c, dx)
        elif op == "PROD":
            # dxs[i] = dout * (x_0 ... x_{i-1}), then times the suffix (x_{i+1} ... x_{K-1})
            xs = self.xs
            dxs[0][:] = dout
            for i in range(1, len(xs)):
                eltwise_mul_into(dxs[i - 1], xs[i - 1], dxs[i])
            suffix = self.scratch.reshape(-1)
            suffix[:] = xs[-1]
            for i in range(len(xs) - 2, -1, -1):
                eltwise_mul(suffix, dxs[i])
                if i > 0:
                    eltwise_mul(xs[i], suffix)
        else:
            argmax = self.argmax.reshape(-1)
            for k, (dx, down) in enumerate(zip(dxs, self.propagate_down)):
                if down:
                    eltwise_max_backward(dout, argmax, k, dx)
        return [dx if down else None for dx, down in zip(self.dxs, self.propagate_down)]

    def flops(self, bottom_shapes):
        return len(bottom_shapes) * int(np.prod(bottom_shapes[0]))
