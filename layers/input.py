"""Input: declares a blob of a fixed shape that the caller feeds (`net.forward({name: x})`).

Shapes: `shape: [N, ...]`, first dimension the batch. Feeding an array of another shape (another
batch size, or another image size where the layers allow it) reshapes the net; the declared
shape is only the one the net is built with.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerflow import Layer, UserError, register_layer


class InputParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: list[list[int]] = Field(description="one shape per top, e.g. [[64, 784], [64]]; a "
                                               "single shape [64, 784] is accepted for one top")

    @field_validator("shape", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        if isinstance(v, list) and v and all(isinstance(d, int) for d in v):
            return [v]
        return v

    @field_validator("shape")
    @classmethod
    def _positive(cls, v):
        for s in v:
            if not s or any(d <= 0 for d in s):
                raise ValueError(f"every dimension must be positive, got {s}")
        return v


@register_layer
class Input(Layer):
    Params = InputParams
    num_bottoms = 0
    num_tops = (1, None)
    is_input = True
    has_backward = False

    def setup(self, bottom_shapes):
        if len(self.p.shape) != len(self.top_names):
            raise UserError(f"layer {self.name} (Input): {len(self.p.shape)} shapes for "
                            f"{len(self.top_names)} tops; give one shape per top")
        self.shapes = [tuple(s) for s in self.p.shape]
        self.tops: list[np.ndarray] = []

    def reshape(self, bottom_shapes):
        if [t.shape for t in self.tops] != self.shapes:
            self.tops = [np.zeros(s, self.dtype) for s in self.shapes]
        return list(self.shapes)

    def feed_shapes(self, shapes):
        self.shapes = [tuple(int(d) for d in s) for s in shapes]

    def feed(self, index, value):
        np.copyto(self.tops[index], value, casting="unsafe")

    def forward(self, bottoms):
        return self.tops

    @classmethod
    def deploy(cls, step):
        """In a deploy net: without the tops that hold labels (a loss read them)."""
        keep = [i for i, top in enumerate(step.tops) if not step.is_label(top)]
        if len(keep) == len(step.tops):
            return None
        shapes = step.p.shape
        return [dict(step.entry, top=[step.tops[i] for i in keep],
                     shape=[list(shapes[i]) for i in keep])] if keep else []

    def backward(self, top_diffs):
        return []
