"""Reshape: gives the bottom's data a new shape without copying it.

Shapes (Caffe's ReshapeLayer): the bottom axes [axis, axis + num_axes) (every axis from `axis`
on when num_axes is -1) are replaced by `shape`; the others are kept. In `shape`, 0 copies the
bottom's dim at the same absolute position (axis + i) and one -1 is inferred so that the count
is unchanged. A negative axis counts from after the last axis: -1 is "after the last axis",
-2 "before the last axis" (Caffe's rule for Reshape alone: start = ndim + axis + 1).
Examples: (N, C, H, W) with shape [0, -1] -> (N, C*H*W); shape [0, 0, 1, -1] -> (N, C, 1, H*W).

Forward copies nothing: the top is a reshaped view of the bottom (Caffe shares data and diff);
backward returns the top's diff reshaped to the bottom's shape. Caffe forbids Reshape in place
(a top with the bottom's name), and so does this layer. Source: Caffe's reshape_layer.cpp.
Errors (UserError naming the layer and the shapes): axis or num_axes out of range, a 0 with no
bottom axis to copy, a count the -1 cannot divide, a new shape whose count differs; more than one
-1 or a dim below -1 is a config error.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerflow import Layer, UserError, register_layer
from layerflow.layers.split import check_not_in_place


class ReshapeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: list[int] = Field(default_factory=list,
                             description="the new dims: 0 copies the bottom's dim, one -1 is "
                                         "inferred")
    axis: int = Field(0, description="first bottom axis replaced (negative: -1 is after the "
                                     "last axis)")
    num_axes: int = Field(-1, ge=-1, description="how many bottom axes are replaced (-1: all "
                                                 "from axis on)")

    @field_validator("shape")
    @classmethod
    def _dims(cls, v):
        if any(d < -1 for d in v):
            raise ValueError(f"dims must be positive, 0 (copy) or -1 (infer), got {v}")
        if v.count(-1) > 1:
            raise ValueError(f"at most one -1 may be inferred, got {v.count(-1)} in {v}")
        return v


@register_layer
class Reshape(Layer):
    Params = ReshapeParams

    def setup(self, bottom_shapes):
        check_not_in_place(self)

    def _fail(self, what: str, shape) -> UserError:
        return UserError(f"layer {self.name} (Reshape): {what} (bottom shape {shape}, shape: "
                         f"{self.p.shape}, axis {self.p.axis}, num_axes {self.p.num_axes})")

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        nd = len(shape)
        p = self.p
        start = p.axis if p.axis >= 0 else nd + p.axis + 1
        if not 0 <= start <= nd:
            raise self._fail(f"axis: {p.axis} is out of range for {nd} axes", shape)
        end = nd if p.num_axes == -1 else start + p.num_axes
        if end > nd:
            raise self._fail(f"num_axes: axis + num_axes = {end} reaches past the {nd} axes",
                             shape)
        top = list(shape[:start]) + list(p.shape) + list(shape[end:])
        for i, d in enumerate(p.shape):
            if d == 0:
                if start + i >= nd:
                    raise self._fail(f"shape[{i}] is 0 (copy the bottom's dim) but the bottom "
                                     f"has no axis {start + i} to copy", shape)
                top[start + i] = shape[start + i]
        count = int(np.prod(shape, dtype=np.int64))
        if -1 in p.shape:
            inferred = start + p.shape.index(-1)
            explicit = int(np.prod([d for j, d in enumerate(top) if j != inferred],
                                   dtype=np.int64))
            if explicit == 0 or count % explicit:
                raise self._fail(f"the bottom's count {count} is not divisible by the product "
                                 f"of the other dims ({explicit}), so the -1 cannot be inferred",
                                 shape)
            top[inferred] = count // explicit
        top_shape = tuple(int(d) for d in top)
        if int(np.prod(top_shape, dtype=np.int64)) != count:
            raise self._fail(f"the new shape {top_shape} has {int(np.prod(top_shape))} values, "
                             f"the bottom {count}", shape)
        self.bottom_shape, self.top_shape = shape, top_shape
        return [top_shape]

    def forward(self, bottoms):
        return [np.reshape(bottoms[0], self.top_shape)]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        return [np.reshape(top_diffs[0], self.bottom_shape)]
