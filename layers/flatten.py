"""Flatten: merges the axes axis .. end_axis of the bottom into one.

Shapes: top = shape[:axis] + (prod(shape[axis:end_axis+1]),) + shape[end_axis+1:] (both axes
may be negative, counted from the end; by default (N, C, H, W) -> (N, C*H*W)). Forward copies
nothing: the top is a reshaped view of the bottom (Caffe shares data and diff); backward
returns the top's diff reshaped to the bottom's shape.

Caffe forbids Flatten in place (a top with the bottom's name), and so does this layer.
Source: Caffe's flatten_layer.cpp. Errors (UserError naming the layer, the axes and the shape):
an axis out of range, end_axis before axis.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer, UserError, register_layer
from layerflow.layers.split import check_not_in_place


class FlattenParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: int = Field(1, description="first axis merged (negative: from the end)")
    end_axis: int = Field(-1, description="last axis merged (negative: from the end)")


@register_layer
class Flatten(Layer):
    Params = FlattenParams

    def setup(self, bottom_shapes):
        check_not_in_place(self)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        nd = len(shape)
        axes = []
        for key in ("axis", "end_axis"):
            a = getattr(self.p, key)
            if not -nd <= a < nd:
                raise UserError(f"layer {self.name} (Flatten): {key}: {a} is out of range for "
                                f"bottom shape {shape} ({nd} axes)")
            axes.append(a % nd)
        start, end = axes
        if end < start:
            raise UserError(f"layer {self.name} (Flatten): end_axis {self.p.end_axis} (axis "
                            f"{end}) comes before axis {self.p.axis} (axis {start}) for bottom "
                            f"shape {shape}")
        merged = int(np.prod(shape[start:end + 1], dtype=np.int64))
        self.bottom_shape = shape
        self.top_shape = shape[:start] + (merged,) + shape[end + 1:]
        return [self.top_shape]

    def forward(self, bottoms):
        return [np.reshape(bottoms[0], self.top_shape)]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        return [np.reshape(top_diffs[0], self.bottom_shape)]
