"""Scale: multiplies by a learned (or given) scale, broadcast over the bottom; optional bias.

Shapes (Caffe's ScaleLayer, scale_layer.cpp): the scale w covers the bottom axes
axis .. axis+k-1 (k = w's rank) and is broadcast over every other axis. With x viewed as
(outer, dim, inner), outer = prod(shape[:axis]), dim = prod(w.shape), inner = prod(shape[axis+k:]):
    y[o, d, i] = x[o, d, i] * w[d]  (+ b[d] with bias_term)
    dx[o, d, i] = dout[o, d, i] * w[d]
    dw[d] (+)= sum_{o, i} dout[o, d, i] * x[o, d, i]
    db[d] += sum_{o, i} dout[o, d, i]
A scalar w (num_axes 0, a 0-d array) multiplies every element; Caffe then takes axis as 0.

One bottom: `weight` (the scale) is a param of shape bottom.shape[axis : axis+num_axes]
(num_axes -1: every axis from `axis` on), filled by `filler` (default constant 1: identity).
Two bottoms: bottom[1] is the scale (its rank gives k; num_axes and filler are not used) and
gets its gradient. With bias_term the layer owns a `bias` of the scale's shape (Caffe makes it
through an inner Bias layer with num_axes = the scale's rank), filled by bias_filler
(default constant 0); in the two-bottom form it is the layer's only param.

Errors (UserError naming the layer and the shapes): axis out of range, num_axes reaching past
the bottom's last axis, a scale whose shape differs from the bottom axes it covers (also after
a reshape: the param's shape is fixed at setup).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import FillerSpec, Layer, UserError, register_layer
from layerflow.layers.bias import REDUCE, broadcast_dims, covered_shape


@njit(cache=True)
def scale_forward(x, w, out):
    """out (O, D, I) = x (O, D, I) * w (D,) broadcast over O and I."""
    n_outer, dim, inner = x.shape
    for o in range(n_outer):
        for d in range(dim):
            wd = w[d]
            for i in range(inner):
                out[o, d, i] = x[o, d, i] * wd


@njit(cache=True)
def scale_bias_forward(x, w, b, out):
    """out (O, D, I) = x (O, D, I) * w (D,) + b (D,)."""
    n_outer, dim, inner = x.shape
    for o in range(n_outer):
        for d in range(dim):
            wd = w[d]
            bd = b[d]
            for i in range(inner):
                out[o, d, i] = x[o, d, i] * wd + bd


@njit(cache=True, fastmath=REDUCE)
def scale_backward(x, dout, w, dx, dw, db, want_dx, want_dw, want_db):
    """One pass over dout (O, D, I): dx = dout * w[d] (if want_dx);
    dw (D,) += sum_{o,i} dout * x (if want_dw); db (D,) += sum_{o,i} dout (if want_db).
    Arrays not wanted are not touched (any array of the dtype may be passed)."""
    n_outer, dim, inner = dout.shape
    zero = dout.dtype.type(0)
    for o in range(n_outer):
        for d in range(dim):
            wd = w[d]
            acc_w = zero
            acc_b = zero
            for i in range(inner):
                g = dout[o, d, i]
                if want_dx:
                    dx[o, d, i] = g * wd
                acc_w += g * x[o, d, i]
                acc_b += g
            if want_dw:
                dw[d] += acc_w
            if want_db:
                db[d] += acc_b


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: int = Field(1, description="first bottom axis the scale covers (negative: from the "
                                     "end); ignored for a scalar scale")
    num_axes: int = Field(1, ge=-1, description="one bottom: how many axes the learned scale "
                                                "covers (-1: all from axis on, 0: a scalar)")
    filler: FillerSpec = Field(default_factory=lambda: FillerSpec(type="constant", value=1.0),
                               description="one bottom: filler of the scale (default constant "
                                           "1, the identity)")
    bias_term: bool = Field(False, description="also add a learned bias of the scale's shape")
    bias_filler: FillerSpec = Field(default_factory=FillerSpec,
                                    description="filler of the bias (default constant 0)")


@register_layer
class Scale(Layer):
    Params = ScaleParams
    num_bottoms = (1, 2)

    def setup(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(bottom_shapes) == 1:
            w_shape = covered_shape(self, shape, self.p.num_axes, "scale")
            self.add_param("weight", w_shape, self.p.filler)
        if self.p.bias_term:
            # two bottoms: the bias covers as many axes as bottom[1] has (Caffe's inner Bias
            # layer gets num_axes = bottom[1]'s rank)
            b_shape = (w_shape if len(bottom_shapes) == 1 else
                       covered_shape(self, shape, len(bottom_shapes[1]), "bias"))
            self.add_param("bias", b_shape, self.p.bias_filler)
        self.unused = np.zeros(1, self.dtype)  # stands in for arrays a kernel call does not use

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.given = len(bottom_shapes) == 2
        w_shape = tuple(bottom_shapes[1]) if self.given else self.params["weight"].shape
        self.dims = broadcast_dims(self, shape, w_shape, "scale")
        if self.p.bias_term:
            b_shape = self.params["bias"].shape
            if b_shape != w_shape:
                raise UserError(f"layer {self.name} (Scale): bottom[1] (the scale) has shape "
                                f"{w_shape}, but the bias was made for a scale of shape "
                                f"{b_shape}")
        self.top = np.zeros(shape, self.dtype)
        self.dx = np.zeros(shape, self.dtype)
        if self.given:
            self.dw = np.zeros(w_shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        self.x = np.ascontiguousarray(bottoms[0], self.dtype).reshape(self.dims)
        if self.given:
            self.w = np.ascontiguousarray(bottoms[1], self.dtype).reshape(self.dims[1])
        else:
            self.w = self.params["weight"].data.reshape(self.dims[1])
        out = self.top.reshape(self.dims)
        if self.p.bias_term:
            scale_bias_forward(self.x, self.w, self.params["bias"].data.reshape(self.dims[1]),
                               out)
        else:
            scale_forward(self.x, self.w, out)
        return [self.top]

    def backward(self, top_diffs):
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(self.dims)
        dim = self.dims[1]
        want_dx = self.propagate_down[0]
        if self.given:
            want_dw = self.propagate_down[1]
            dw = self.dw.reshape(dim) if want_dw else self.unused
            dw[...] = 0  # bottom[1]'s diff is its own, not accumulated
        else:
            want_dw, dw = True, self.params["weight"].grad.reshape(dim)
        want_db = self.p.bias_term
        db = self.params["bias"].grad.reshape(dim) if want_db else self.unused
        if want_dx or want_dw or want_db:
            dx = self.dx.reshape(self.dims) if want_dx else self.unused.reshape(1, 1, 1)
            w = self.params["weight"].data.reshape(dim) if not self.given else self.w
            scale_backward(self.x, dout, w, dx, dw, db, want_dx, want_dw, want_db)
        diffs: list[np.ndarray | None] = [self.dx if want_dx else None]
        if self.given:
            diffs.append(self.dw if want_dw else None)
        return diffs

    def flops(self, bottom_shapes):
        return (2 if self.p.bias_term else 1) * int(np.prod(bottom_shapes[0]))
