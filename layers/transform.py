"""Transform: a data layer's transform as a layer, y = (x - mean) * scale; the first layer of a
deploy net, so it takes raw samples (pixels 0-255...) and they get exactly what training saw.

Shapes: bottom x (N, ...) and top y of the same shape; mean has one sample's shape
(x.shape[1:]) and is broadcast over N:
    y[n] = (x[n] - mean) * scale        mean: mean_value (one number, or one per channel: the
                                        first axis of a sample) or mean_file, else 0
    dx = dout * scale
The keys are the Data layer's transform keys, read the same way (`sample_mean` serves both), so
a deploy net derived from a net (`layerflow.deploy`) carries them over unchanged. A mean_value
follows a new sample size on reshape; a mean_file fixes the sample shape.
Source: Caffe's DataTransformer (data_transformer.cpp), test phase, without crop and mirror.
Errors (UserError naming the layer): a mean_file that cannot be read or has another shape than
a sample, a mean_value with neither one value nor one per channel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from layerflow import Layer, UserError, register_layer
from layerflow import data as datasets
from layerflow.errors import file_error


@njit(cache=True)
def transform_forward(x, mean, scale, out):
    """out[n, d] = (x[n, d] - mean[d]) * scale. x, out: (N, D); mean: (D,)."""
    n, d = out.shape
    for i in range(n):
        for j in range(d):
            out[i, j] = (x[i, j] - mean[j]) * scale


def sample_mean(mean_value, mean_file: str | None, sample_shape: tuple[int, ...],
                base_dir: Path, what: str, error: Callable[[str], UserError]) -> np.ndarray:
    """The mean subtracted from one sample, as a float64 array of `sample_shape`.

    mean_file: an .npy array of the sample's shape (or with a leading 1, as Caffe's mean blobs
    have), or Caffe's .binaryproto (compute_image_mean's BlobProto, the caffe extra), relative
    to `base_dir`; mean_value: one number, or one per channel (the first axis); neither: 0.
    `what` names the samples in messages ("a sample of fashion-mnist"), `error` makes the
    UserError (naming the layer).
    """
    if mean_file is not None:
        path = Path(mean_file).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            if path.suffix.lower() == ".binaryproto":
                from layerflow.caffe.weights import read_binaryproto

                try:
                    mean = read_binaryproto(path)
                except UserError as err:
                    raise error(f"mean_file {err}") from None
            else:
                mean = np.load(path, allow_pickle=False)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise error(f"mean_file {file_error(path, exc, 'an .npy file')}") from None
        except (OSError, ValueError, EOFError) as exc:
            raise error(f"mean_file {path}: not a readable .npy file ({exc})") from None
        if not isinstance(mean, np.ndarray) or mean.dtype.kind not in "iuf":
            raise error(f"mean_file {path}: expected one numeric array (.npy)")
        if mean.shape != sample_shape and mean.shape == (1,) + sample_shape:
            mean = mean[0]  # Caffe's mean blobs carry a leading 1
        if mean.shape != sample_shape:
            raise error(f"mean_file {path} has shape {mean.shape}, but {what} has shape "
                        f"{sample_shape}")
        try:
            datasets.check_finite(mean, path, "mean")
        except UserError as err:
            raise error(str(err)) from None
        return mean.astype(np.float64)
    values = np.atleast_1d(np.asarray(0.0 if mean_value is None else mean_value, np.float64))
    if len(values) == 1:
        return np.full(sample_shape, values[0])
    channels = sample_shape[0] if sample_shape else 1
    if len(values) != channels:
        raise error(f"mean_value has {len(values)} values, but {what} has shape "
                    f"{sample_shape}: give one value or {channels} (one per channel, the "
                    f"first axis)")
    return np.broadcast_to(values.reshape((-1,) + (1,) * (len(sample_shape) - 1)),
                           sample_shape).copy()


class TransformParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(1.0, allow_inf_nan=False,
                         description="multiplies the data after subtracting the mean")
    mean_value: Optional[float | list[float]] = Field(
        None, description="subtracted before scaling: one number, or one per channel (the "
                          "first axis of a sample)")
    mean_file: Optional[str] = Field(None, description=".npy array of one sample's shape, "
                                                       "subtracted before scaling")

    @field_validator("mean_value")
    @classmethod
    def _mean_value(cls, v):
        values = v if isinstance(v, list) else [v]
        if v is not None and (not values or not all(np.isfinite(values))):
            raise ValueError("give one finite number, or a non-empty list of them")
        return v

    @field_validator("mean_file")
    @classmethod
    def _one_mean(cls, v, info: ValidationInfo):
        if v is not None and info.data.get("mean_value") is not None:
            raise ValueError("give mean_value or mean_file, not both")
        return v


@register_layer
class Transform(Layer):
    Params = TransformParams

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, min_axes=1)
        self.scale = self.dtype.type(self.p.scale)
        self.sample_shape: tuple[int, ...] | None = None  # the shape self.mean was made for

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.check_bottoms(bottom_shapes, min_axes=1)
        sample = shape[1:]
        if self.sample_shape != sample:
            self.mean = sample_mean(self.p.mean_value, self.p.mean_file, sample,
                                    self.base_dir, f"a sample of bottom {self.bottom_names[0]}",
                                    self._error).astype(self.dtype).reshape(-1)
            self.sample_shape = sample
        self.top = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        x = bottoms[0]
        n = x.shape[0]
        transform_forward(x.reshape(n, -1), self.mean, self.scale, self.top.reshape(n, -1))
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        return [top_diffs[0] * self.scale]

    def flops(self, bottom_shapes):
        return 2 * int(np.prod(bottom_shapes[0]))

    def _error(self, message: str) -> UserError:
        return UserError(f"layer {self.name} (Transform): {message}")
