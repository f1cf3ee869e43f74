"""Initial values of params (Caffe's fillers).

fan_in = count / shape[0] and fan_out = count / shape[1], Caffe's definitions; for an
InnerProduct weight (num_output, fan_in) that is the layer's real fan-in.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FillerSpec(BaseModel):
    """`{type: xavier}`, `{type: constant, value: 0.1}`, `{type: gaussian, std: 0.01}` ..."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["constant", "uniform", "gaussian", "xavier", "msra"] = Field(
        "constant", description="constant | uniform | gaussian | xavier | msra")
    value: float = Field(0.0, description="constant: the value")
    min: float = Field(0.0, description="uniform: lower bound")
    max: float = Field(1.0, description="uniform: upper bound")
    mean: float = Field(0.0, description="gaussian: mean")
    std: float = Field(1.0, ge=0, description="gaussian: standard deviation")
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = Field(
        "FAN_IN", description="xavier/msra: which fan sets the scale")
    sparse: int = Field(-1, ge=-1, description="gaussian: keep each value with probability "
                                               "sparse / shape[0] and zero the rest (the "
                                               "expected non-zeros per input); -1: dense")

    @model_validator(mode="after")
    def _sparse_gaussian(self):
        if self.sparse >= 0 and self.type != "gaussian":
            raise ValueError(f"sparse applies to the gaussian filler only (Caffe's rule); "
                             f"type is {self.type}")
        return self


def _fan(shape: tuple[int, ...], norm: str) -> float:
    count = int(np.prod(shape))
    fan_in = count / shape[0] if len(shape) > 0 and shape[0] else 1.0
    fan_out = count / shape[1] if len(shape) > 1 and shape[1] else 1.0
    if norm == "FAN_OUT":
        return fan_out
    if norm == "AVERAGE":
        return (fan_in + fan_out) / 2.0
    return fan_in


def fill(spec: FillerSpec, shape: tuple[int, ...], dtype, rng: np.random.Generator) -> np.ndarray:
    """A new array of `shape` and `dtype` filled as `spec` says, drawing from `rng`.

    xavier: U(-a, a) with a = sqrt(3 / n); msra: N(0, sqrt(2 / n)); n from variance_norm.
    """
    if spec.type == "constant":
        out = np.full(shape, spec.value)
    elif spec.type == "uniform":
        out = rng.uniform(spec.min, spec.max, size=shape)
    elif spec.type == "gaussian":
        out = rng.normal(spec.mean, spec.std, size=shape)
        if spec.sparse >= 0:  # Caffe's GaussianFiller: a Bernoulli mask, p = sparse / shape[0]
            p = spec.sparse / shape[0] if len(shape) > 0 and shape[0] else 1.0
            out = out * (rng.random(size=shape) < p)
    elif spec.type == "xavier":
        a = np.sqrt(3.0 / _fan(shape, spec.variance_norm))
        out = rng.uniform(-a, a, size=shape)
    else:  # msra
        out = rng.normal(0.0, np.sqrt(2.0 / _fan(shape, spec.variance_norm)), size=shape)
    # asarray, not ascontiguousarray: that one turns a 0-d array (a scalar param, Caffe's
    # 0-axis blob: Scale with num_axes 0) into shape (1,)
    return np.asarray(out, dtype=dtype, order="C")
