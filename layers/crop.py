"""Crop: cuts bottom[0] to bottom[1]'s shape from `axis` on (FCN's crop to the input size).

Shapes: for every axis i >= axis the top takes bottom[1]'s dim and starts at offset o_i of
bottom[0]'s; the axes before `axis` are bottom[0]'s. `offset` gives one value for every cropped
axis, one value per cropped axis, or none (0):
    top = x[..., o_axis : o_axis + s_axis, ..., o_last : o_last + s_last]
    dx = zeros of x's shape with dout written into the cropped window
bottom[1] gives only its shape and gets no gradient.

Source: Caffe's crop_layer.cpp. Errors (UserError naming the layer and both shapes): bottoms
of different ranks, axis out of range, a number of offsets that is neither 1 nor one per
cropped axis, a crop (offset + size) reaching past bottom[0].
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerflow import Layer, UserError, register_layer


class CropParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    axis: int = Field(2, description="first axis cropped (negative: from the end); (N, C, H, W) "
                                     "by default crops H and W")
    offset: list[int] = Field(default_factory=list,
                              description="where the crop starts: one value for every cropped "
                                          "axis, or one per cropped axis (empty: 0)")

    @field_validator("offset")
    @classmethod
    def _non_negative(cls, v):
        if any(o < 0 for o in v):
            raise ValueError(f"offsets must be >= 0, got {v}")
        return v


@register_layer
class Crop(Layer):
    Params = CropParams
    num_bottoms = 2

    def _start(self, shape0, shape1) -> int:
        nd = len(shape0)
        if len(shape1) != nd:
            raise UserError(f"layer {self.name} (Crop): bottom[0] {shape0} and bottom[1] "
                            f"{shape1} must have the same number of axes")
        if not -nd <= self.p.axis < nd:
            raise UserError(f"layer {self.name} (Crop): axis: {self.p.axis} is out of range "
                            f"for bottom shape {shape0} ({nd} axes)")
        start = self.p.axis % nd
        n_off = len(self.p.offset)
        if n_off > 1 and start + n_off != nd:
            raise UserError(f"layer {self.name} (Crop): offset: {n_off} values {self.p.offset} "
                            f"for the {nd - start} cropped axes {start}..{nd - 1} of {shape0}; "
                            f"give one value or one per cropped axis")
        return start

    def setup(self, bottom_shapes):
        self._start(tuple(bottom_shapes[0]), tuple(bottom_shapes[1]))

    def reshape(self, bottom_shapes):
        shape0, shape1 = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        start = self._start(shape0, shape1)
        window, top_shape = [], []
        for i, (d0, d1) in enumerate(zip(shape0, shape1)):
            if i < start:
                window.append(slice(None))
                top_shape.append(d0)
                continue
            off = self.p.offset[0 if len(self.p.offset) == 1 else i - start] \
                if self.p.offset else 0
            if off + d1 > d0:
                raise UserError(f"layer {self.name} (Crop): the crop of axis {i} (offset {off} "
                                f"+ size {d1} from bottom[1] {shape1}) reaches past bottom[0] "
                                f"{shape0}, whose axis {i} has size {d0}")
            window.append(slice(off, off + d1))
            top_shape.append(d1)
        self.window = tuple(window)
        self.top = np.zeros(tuple(top_shape), self.dtype)
        self.dx = np.zeros(shape0, self.dtype)
        return [tuple(top_shape)]

    def forward(self, bottoms):
        self.top[...] = np.asarray(bottoms[0])[self.window]
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None, None]
        self.dx.fill(0)
        self.dx[self.window] = top_diffs[0]
        return [self.dx, None]
