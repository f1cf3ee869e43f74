"""Initial values of params (Caffe's fillers, include/caffe/filler.hpp).

fan_in = count / shape[0] and fan_out = count / shape[1] (count for a 1-D blob), Caffe's
definitions: for an InnerProduct weight (num_output, K) fan_in is K; for a convolution weight
(O, C/G, kh, kw) fan_in = C/G kh kw and fan_out = O kh kw.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import UserError


class FillerSpec(BaseModel):
    """`{type: xavier}`, `{type: constant, value: 0.1}`, `{type: gaussian, std: 0.01}` ..."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["constant", "uniform", "gaussian", "xavier", "msra", "bilinear",
                  "positive_unitball"] = Field(
        "constant", description="constant | uniform | gaussian | xavier | msra | bilinear | "
                                "positive_unitball")
    value: float = Field(0.0, description="constant: the value")
    min: float = Field(0.0, description="uniform: lower bound")
    max: float = Field(1.0, description="uniform: upper bound")
    mean: float = Field(0.0, description="gaussian: mean")
    std: float = Field(1.0, ge=0, description="gaussian: standard deviation")
    sparse: int = Field(-1, ge=-1, description="gaussian: when >= 0, keep each value with "
                                               "probability sparse / shape[0], else 0")
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = Field(
        "FAN_IN", description="xavier/msra: which fan sets the scale")

    @model_validator(mode="after")
    def _sparse_only_for_gaussian(self):
        if self.sparse != -1 and self.type != "gaussian":
            raise ValueError(f"sparse applies to type gaussian only, got type={self.type}")
        return self


def _fan(shape: tuple[int, ...], norm: str) -> float:
    count = int(np.prod(shape))
    fan_in = count / shape[0] if len(shape) > 0 and shape[0] else 1.0
    fan_out = count / shape[1] if len(shape) > 1 and shape[1] else float(count or 1)
    if norm == "FAN_OUT":
        return fan_out
    if norm == "AVERAGE":
        return (fan_in + fan_out) / 2.0
    return fan_in


def fill(spec: FillerSpec, shape: tuple[int, ...], dtype, rng: np.random.Generator) -> np.ndarray:
    """A new array of `shape` and `dtype` filled as `spec` says, drawing from `rng`.

    xavier: U(-a, a) with a = sqrt(3 / n); msra: N(0, sqrt(2 / n)); n from variance_norm.
    gaussian with sparse >= 0: N(mean, std) values kept with probability sparse / shape[0].
    positive_unitball: U(0, 1), then each slice along axis 0 divided by its sum (sums to 1).
    bilinear: a 4-D weight (O, C, K, K) whose every K x K slice is the bilinear-interpolation
    kernel w(y, x) = (1 - |x / f - c|) (1 - |y / f - c|), f = ceil(K / 2), c = (K - 1) / (2 f).
    Raises UserError for a shape a filler cannot fill (bilinear: not 4-D or not square;
    sparse: more than shape[0]).
    """
    if spec.type == "constant":
        out = np.full(shape, spec.value)
    elif spec.type == "uniform":
        out = rng.uniform(spec.min, spec.max, size=shape)
    elif spec.type == "gaussian":
        out = rng.normal(spec.mean, spec.std, size=shape)
        if spec.sparse >= 0:
            out *= rng.random(shape) < _keep_probability(spec.sparse, shape)
    elif spec.type == "xavier":
        a = np.sqrt(3.0 / _fan(shape, spec.variance_norm))
        out = rng.uniform(-a, a, size=shape)
    elif spec.type == "msra":
        out = rng.normal(0.0, np.sqrt(2.0 / _fan(shape, spec.variance_norm)), size=shape)
    elif spec.type == "positive_unitball":
        out = rng.uniform(0.0, 1.0, size=shape)
        rows = out.reshape(shape[0] if len(shape) else 1, -1)
        rows /= rows.sum(axis=1, keepdims=True)
    else:  # bilinear
        out = _bilinear(shape)
    # asarray, not ascontiguousarray: that one turns a 0-d array (a scalar param, Caffe's
    # 0-axis blob: Scale with num_axes 0) into shape (1,)
    return np.asarray(out, dtype=dtype, order="C")


def _keep_probability(sparse: int, shape: tuple[int, ...]) -> float:
    """Caffe's sparse gaussian: sparse non-zero inputs per output on average."""
    outputs = shape[0] if len(shape) else 1
    if sparse > outputs:
        raise UserError(f"filler gaussian: sparse {sparse} is more than the {outputs} rows "
                        f"(shape[0]) of shape {tuple(shape)}; the keep probability sparse / "
                        f"shape[0] cannot exceed 1")
    return sparse / outputs


def _bilinear(shape: tuple[int, ...]) -> np.ndarray:
    """The bilinear upsampling kernel of Caffe's BilinearFiller, in every (out, in) slice."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise UserError(f"filler bilinear: needs a 4-D weight with a square kernel, got shape "
                        f"{tuple(shape)}")
    k = shape[3]
    f = math.ceil(k / 2)
    c = (k - 1) / (2.0 * f)
    t = 1.0 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(t, t), shape)
