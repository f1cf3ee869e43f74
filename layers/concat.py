"""Concat: joins K >= 1 bottoms along one axis.

Shapes: every bottom has the same rank and the same dims except at the axis; the top has their
common dims and, at the axis, the sum of theirs. With each bottom viewed as (outer, d_k, inner),
outer = prod(shape[:axis]), inner = prod(shape[axis+1:]):
    top[o, off_k : off_k + d_k, i] = x_k[o, :, i],   off_k = d_0 + ... + d_{k-1}
    dx_k = dout[o, off_k : off_k + d_k, i]
One bottom: the top IS the bottom (Caffe shares data and diff), and dx = dout.

`axis` (default 1, negative counts from the end) or its legacy name `concat_dim` (no negative
values); giving both is an error, as in Caffe. Source: Caffe's concat_layer.cpp.
Errors (UserError naming the layer, the bottoms and their shapes): ranks or dims off the axis
that differ, an axis out of range.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from layerflow import Layer, UserError, register_layer


class ConcatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: Optional[int] = Field(None, description="the axis to join along (unset: 1; "
                                                  "negative: from the end)")
    concat_dim: Optional[int] = Field(None, ge=0, description="legacy name of axis (no "
                                                              "negative values); not with axis")

    @model_validator(mode="after")
    def _axis_or_concat_dim(self):
        if self.axis is not None and self.concat_dim is not None:
            raise ValueError(f"give axis or concat_dim, not both (got axis={self.axis}, "
                             f"concat_dim={self.concat_dim})")
        return self


@register_layer
class Concat(Layer):
    Params = ConcatParams
    num_bottoms = (1, None)

    def _listing(self, shapes) -> str:
        names = self.bottom_names or [f"bottom[{i}]" for i in range(len(shapes))]
        return ", ".join(f"{n} {s}" for n, s in zip(names, shapes))

    def _axis(self, shapes) -> int:
        nd = len(shapes[0])
        if self.p.concat_dim is not None:
            axis, key = self.p.concat_dim, "concat_dim"
            ok = axis < nd
        else:
            axis, key = (1 if self.p.axis is None else self.p.axis), "axis"
            ok = -nd <= axis < nd
        if not ok:
            raise UserError(f"layer {self.name} (Concat): {key}: {axis} is out of range for "
                            f"bottoms of {nd} axes: {self._listing(shapes)}")
        return axis % nd

    def reshape(self, bottom_shapes):
        shapes = [tuple(s) for s in bottom_shapes]
        axis = self._axis(shapes)
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise UserError(f"layer {self.name} (Concat): bottoms must have the same shape "
                                f"except at axis {axis}, got {self._listing(shapes)}")
        self.sizes = [s[axis] for s in shapes]
        top_shape = first[:axis] + (sum(self.sizes),) + first[axis + 1:]
        self.outer = int(np.prod(first[:axis], dtype=np.int64))
        self.inner = int(np.prod(first[axis + 1:], dtype=np.int64))
        self.shapes = shapes
        if len(shapes) > 1:
            self.top = np.zeros(top_shape, self.dtype)
            self.dxs = [np.zeros(s, self.dtype) for s in shapes]
        return [top_shape]

    def _pieces(self, arr: np.ndarray):
        """(k, view of arr's part for bottom k) with arr viewed as (outer, total, inner)."""
        arr3 = arr.reshape(self.outer, -1, self.inner)
        off = 0
        for k, d in enumerate(self.sizes):
            yield k, arr3[:, off:off + d, :]
            off += d

    def forward(self, bottoms):
        if len(bottoms) == 1:
            return [bottoms[0]]
        for k, part in self._pieces(self.top):
            part[...] = np.reshape(bottoms[k], part.shape)
        return [self.top]

    def backward(self, top_diffs):
        if len(self.sizes) == 1:
            return [top_diffs[0] if self.propagate_down[0] else None]
        for k, part in self._pieces(np.asarray(top_diffs[0])):
            if self.propagate_down[k]:
                self.dxs[k].reshape(part.shape)[...] = part
        return [dx if down else None for dx, down in zip(self.dxs, self.propagate_down)]
