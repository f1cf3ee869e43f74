"""Slice: cuts one bottom into K >= 1 tops along one axis.

Shapes: with slice_point [p_1, ..., p_{K-1}] (strictly increasing, 0 < p < the axis' size),
top k takes the indices p_k .. p_{k+1} - 1 of the axis (p_0 = 0, p_K = the size); without
slice points the axis is cut into K equal parts (its size must be divisible by K). Every other
dim is the bottom's. Backward puts each top's diff back in its place: dx = the tops' diffs
joined along the axis. One top: the top IS the bottom (Caffe shares data and diff).

`axis` (default 1, negative counts from the end) or its legacy name `slice_dim` (no negative
values); giving both is an error, as in Caffe. Source: Caffe's slice_layer.cpp.
Errors: the number of slice points is not tops - 1, a slice point at or past the axis' size, an
axis size not divisible by the number of tops (UserError naming the layer, the points and the
shape); slice points not strictly increasing and positive (a config error).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from layerflow import Layer, UserError, register_layer


class SliceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: Optional[int] = Field(None, description="the axis to cut along (unset: 1; negative: "
                                                  "from the end)")
    slice_dim: Optional[int] = Field(None, ge=0, description="legacy name of axis (no negative "
                                                             "values); not with axis")
    slice_point: list[int] = Field(default_factory=list,
                                   description="where each top after the first starts along "
                                               "the axis, strictly increasing, one fewer than "
                                               "the tops (empty: equal parts)")

    @model_validator(mode="after")
    def _check(self):
        if self.axis is not None and self.slice_dim is not None:
            raise ValueError(f"give axis or slice_dim, not both (got axis={self.axis}, "
                             f"slice_dim={self.slice_dim})")
        prev = 0
        for p in self.slice_point:
            if p <= prev:
                raise ValueError(f"slice_point must be strictly increasing and positive, got "
                                 f"{self.slice_point}")
            prev = p
        return self


@register_layer
class Slice(Layer):
    Params = SliceParams
    num_tops = (1, None)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        nd = len(shape)
        n_tops = max(len(self.top_names), 1)
        if self.p.slice_dim is not None:
            axis, key, ok = self.p.slice_dim, "slice_dim", self.p.slice_dim < nd
        else:
            axis, key = (1 if self.p.axis is None else self.p.axis), "axis"
            ok = -nd <= axis < nd
        if not ok:
            raise UserError(f"layer {self.name} (Slice): {key}: {axis} is out of range for "
                            f"bottom shape {shape} ({nd} axes)")
        axis %= nd
        size = shape[axis]
        points = list(self.p.slice_point)
        if points:
            if len(points) != n_tops - 1:
                raise UserError(f"layer {self.name} (Slice): slice_point: {len(points)} points "
                                f"{points} for {n_tops} tops; give one fewer than the tops")
            if points[-1] >= size:
                raise UserError(f"layer {self.name} (Slice): slice_point: {points} is out of "
                                f"range for axis {axis} of size {size} (bottom shape {shape}): "
                                f"every point must be below {size}")
            bounds = [0] + points + [size]
        else:
            if size % n_tops:
                raise UserError(f"layer {self.name} (Slice): axis {axis} of bottom shape "
                                f"{shape} has size {size}, which {n_tops} tops cannot share "
                                f"equally; give slice_point")
            step = size // n_tops
            bounds = [k * step for k in range(n_tops + 1)]
        self.bounds = bounds
        self.outer = int(np.prod(shape[:axis], dtype=np.int64))
        self.inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        top_shapes = [shape[:axis] + (hi - lo,) + shape[axis + 1:]
                      for lo, hi in zip(bounds[:-1], bounds[1:])]
        if n_tops > 1:
            self.tops = [np.zeros(s, self.dtype) for s in top_shapes]
            self.dx = np.zeros(shape, self.dtype)
        return top_shapes

    def _pieces(self, arr: np.ndarray):
        """(k, view of arr's part for top k) with arr viewed as (outer, size, inner)."""
        arr3 = arr.reshape(self.outer, -1, self.inner)
        for k, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            yield k, arr3[:, lo:hi, :]

    def forward(self, bottoms):
        if len(self.bounds) == 2:
            return [bottoms[0]]
        for k, part in self._pieces(np.asarray(bottoms[0])):
            self.tops[k].reshape(part.shape)[...] = part
        return self.tops

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        if len(self.bounds) == 2:
            return [top_diffs[0]]
        for k, part in self._pieces(self.dx):
            part[...] = np.reshape(top_diffs[k], part.shape)
        return [self.dx]
