"""Input: declares a blob of a fixed shape that the caller feeds (`net.forward({name: x})`).

Shapes: `shape: [N, ...]`, first dimension the batch. Feeding an array of another batch size
reshapes the net.
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

    def setup(self, bottom_shapes):
        if len(self.p.shape) != len(self.top_names):
            raise UserError(f"layer {self.name} (Input): {len(self.p.shape)} shapes for "
                            f"{len(self.top_names)} tops; give one shape per top")
        self.tops = [np.zeros(tuple(s), self.dtype) for s in self.p.shape]
        return [t.shape for t in self.tops]

    def forward(self, bottoms):
        return self.tops

    def backward(self, top_diffs):
        return []
