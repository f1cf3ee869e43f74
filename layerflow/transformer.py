"""Caffe's DataTransformer: crop, mirror, mean subtraction and scale, the one implementation
that the Data layer (every source, training and test batches) and the Transform layer (the
first layer of a deploy net) share, so a deployed model sees exactly what training saw.

Per sample x (C, H, W) in its stored dtype, to y (C, h, w) in the net's dtype, with
h = w = crop_size (or h, w = H, W without a crop):
    y[c, i, j'] = (x[c, i + h_off, j + w_off] - mean[c, i + h_off, j + w_off]) * scale
    j' = w - 1 - j when the sample is mirrored, else j
in Caffe's order: crop -> mean subtraction -> scale, the mirror only choosing where a value
is written. The mean is a full-size (uncropped) array: `mean_file` (.npy, or Caffe's
.binaryproto) indexed at the uncropped position, or `mean_value` (one number, or one per
channel) broadcast to the sample's shape; neither: 0.
Offsets: `crop_size` > 0 crops a random window in the train phase (h_off uniform in
[0, H - crop_size], then w_off), the centre window otherwise ((H - crop_size) // 2, integer
division). Mirror: with `mirror: true` each sample is flipped left-right with probability 1/2
in BOTH phases, as Caffe does (its trap: a test pass with mirror on is random too). Random
draws come from the generator the caller passes (the Data layer's `rng`), so runs and resumes
are exact. A deploy net's Transform never mirrors: inference is deterministic (centre crop,
mean, scale), the test-phase transform without Caffe's random flip.

Samples that are not images (C, H, W): without crop and mirror, any shape works, a sample
(C, ...) being viewed as (C, 1, rest) so that a per-channel mean_value follows its first axis;
crop_size and mirror need (C, H, W) samples.

Source: Caffe's data_transformer.cpp (Transform of a Datum / cv::Mat, the uint8 and float paths),
caffe.proto TransformationParameter. Caffe's blob-to-blob Transform (one mirror draw per batch)
is not reproduced: every source here transforms per sample, as Caffe's data layers do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from . import data as datasets
from .errors import UserError, file_error


# ---- the keys (Caffe's TransformationParameter, flat on the layer) -------------------------

class MeanScaleKeys(BaseModel):
    """scale, mean_value, mean_file: the transform keys every layer that transforms takes."""

    model_config = ConfigDict(extra="forbid")
    scale: float = Field(1.0, allow_inf_nan=False,
                         description="multiplies the data after subtracting the mean")
    mean_value: Optional[float | list[float]] = Field(
        None, description="subtracted from the data before scaling: one number, or one per "
                          "channel (the first axis of a sample)")
    mean_file: Optional[str] = Field(None, description=".npy array of one (uncropped) sample's "
                                                       "shape, or Caffe's .binaryproto, "
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


class TransformKeys(MeanScaleKeys):
    """The keys of the Transform layer: a deploy net's transform (no mirror)."""

    crop_size: int = Field(0, ge=0, description="crop samples (C, H, W) to crop_size x "
                                                "crop_size: a random window in training, "
                                                "the centre one in testing (0: no crop)")


class DataTransformKeys(TransformKeys):
    """The keys of a Data layer's transform: Caffe's transform_param, all of it."""

    mirror: bool = Field(False, description="flip each sample left-right with probability "
                                            "1/2, in training AND testing (Caffe's rule)")
    force_color: bool = Field(False, description="decode images (encoded LMDB records, image "
                                                 "lists) with 3 channels (BGR)")
    force_gray: bool = Field(False, description="decode images (encoded LMDB records, image "
                                                "lists) with 1 channel (gray)")

    @field_validator("force_gray")
    @classmethod
    def _one_force(cls, v, info: ValidationInfo):
        if v and info.data.get("force_color"):
            raise ValueError("give force_color or force_gray, not both")
        return v


# ---- the kernel ---------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def transform_batch(x, h_off, w_off, flip, mean, scale, out):
    """out[i, c, y, j'] = (x[i, c, y + h_off[i], j + w_off[i]]
                           - mean[c, y + h_off[i], j + w_off[i]]) * scale,
    j' = w - 1 - j where flip[i], else j.

    x: (B, C, H, W) stored dtype; h_off, w_off: (B,) int64; flip: (B,) bool; mean: (C, H, W)
    and scale of out's dtype; out: (B, C, h, w) float with h + h_off <= H, w + w_off <= W.
    The difference is taken in out's dtype (x converted first), as Caffe computes in Dtype.
    nogil: a prefetch thread runs it while the net computes.
    """
    b, c, h, w = out.shape
    for i in range(b):
        ho = h_off[i]
        wo = w_off[i]
        for k in range(c):
            for y in range(h):
                for j in range(w):
                    v = (out.dtype.type(x[i, k, y + ho, j + wo]) - mean[k, y + ho, j + wo]) \
                        * scale
                    if flip[i]:
                        out[i, k, y, w - 1 - j] = v
                    else:
                        out[i, k, y, j] = v


# ---- the mean -----------------------------------------------------------------------------

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
        mean = read_mean_file(mean_file, base_dir, error)
        if mean.shape != sample_shape and mean.shape == (1,) + sample_shape:
            mean = mean[0]  # Caffe's mean blobs carry a leading 1
        if mean.shape != sample_shape:
            raise error(f"mean_file {_path(mean_file, base_dir)} has shape {mean.shape}, but "
                        f"{what} has shape {sample_shape} (a mean file is full-size: the shape "
                        f"of a sample before any crop)")
        return mean
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


def _path(mean_file: str, base_dir: Path) -> Path:
    path = Path(mean_file).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def read_mean_file(mean_file: str, base_dir: Path, error: Callable[[str], UserError]
                   ) -> np.ndarray:
    """A mean file (.npy, or .binaryproto with the caffe extra) as float64, checked finite."""
    path = _path(mean_file, base_dir)
    try:
        if path.suffix.lower() == ".binaryproto":
            from .caffe.weights import read_binaryproto

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
    try:
        datasets.check_finite(mean, path, "mean")
    except UserError as err:
        raise error(str(err)) from None
    return mean.astype(np.float64)


# ---- the transformer ----------------------------------------------------------------------

def as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """How the kernel views a sample: (C, H, W) as it is, (C, ...) as (C, 1, rest), () as
    (1, 1, 1)."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if not shape:
        return (1, 1, 1)
    return (shape[0], 1, int(np.prod(shape[1:], dtype=np.int64)))


class Transformer:
    """The transform of one layer (see the module docstring).

    p: the layer's validated keys (TransformKeys or DataTransformKeys); phase: "train" crops
    at random, "test" in the centre; dtype: the net's; base_dir: where mean_file is relative
    to; what: how messages name a sample; error: makes a UserError naming the layer;
    mirror: False for a deploy net (never flip), whatever the keys say.
    """

    def __init__(self, p, *, phase: str, dtype, base_dir: Path | str, what: str,
                 error: Callable[[str], UserError], mirror: bool = True):
        self.p = p
        self.crop = int(getattr(p, "crop_size", 0))
        self.mirror = bool(mirror and getattr(p, "mirror", False))
        self.random_crop = self.crop > 0 and phase == "train"
        self.dtype = np.dtype(dtype)
        self.scale = self.dtype.type(p.scale)
        self.base_dir = Path(base_dir)
        self.what = what
        self.error = error
        self._means: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def random(self) -> bool:
        """Whether the transform draws random numbers (random crops, or mirror)."""
        return self.mirror or self.random_crop

    @property
    def identity(self) -> bool:
        return (not self.crop and not self.mirror and self.p.scale == 1.0
                and self.p.mean_value is None and self.p.mean_file is None)

    def out_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape a sample of `sample_shape` becomes (a UserError if it cannot be
        cropped or mirrored)."""
        sample_shape = tuple(int(d) for d in sample_shape)
        if not self.crop and not self.mirror:
            return sample_shape
        key = "crop_size" if self.crop else "mirror"
        if len(sample_shape) != 3:
            raise self.error(f"{key} needs samples of shape (C, H, W), but {self.what} has "
                             f"shape {sample_shape}")
        if not self.crop:
            return sample_shape
        c, h, w = sample_shape
        if self.crop > h or self.crop > w:
            raise self.error(f"crop_size {self.crop} is larger than {self.what} "
                             f"({c} x {h} x {w})")
        return (c, self.crop, self.crop)

    def mean(self, sample_shape: tuple[int, ...]) -> np.ndarray:
        """The full-size mean of a sample of `sample_shape`, as (C, H, W) in the net's dtype
        (read once per shape)."""
        sample_shape = tuple(int(d) for d in sample_shape)
        mean = self._means.get(sample_shape)
        if mean is None:
            mean = sample_mean(self.p.mean_value, self.p.mean_file, sample_shape,
                               self.base_dir, self.what, self.error)
            mean = np.ascontiguousarray(mean.astype(self.dtype).reshape(as_chw(sample_shape)))
            self._means[sample_shape] = mean
        return mean

    def offsets(self, rng: np.random.Generator | None, shapes: list[tuple[int, ...]],
                part: tuple[int, int | None] = (0, None)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(h_off, w_off, flip) of each sample of one batch, drawn from `rng` (needed when
        `random`): flips first, then the rows and columns of random crops.

        `part` = (lo, total): these samples are lo .. lo + len(shapes) of a batch of `total`
        (a process's slice of a data-parallel global batch): the draws are made for the whole
        batch and sliced, so every process draws the same numbers and N processes transform
        each sample as one process with the whole batch would. A crop offset is drawn as
        floor(u * (H - crop_size + 1)) with u uniform in [0, 1), so the draws do not depend on
        the sizes of the other processes' samples.
        """
        b = len(shapes)
        lo, total = part[0], (b if part[1] is None else part[1])
        flip = np.zeros(b, np.bool_)
        if self.mirror:
            flip = rng.integers(0, 2, total)[lo:lo + b].astype(np.bool_)
        h_off = np.zeros(b, np.int64)
        w_off = np.zeros(b, np.int64)
        if self.crop:
            hs = np.array([s[1] for s in shapes], np.int64)
            ws = np.array([s[2] for s in shapes], np.int64)
            if self.random_crop:
                u = rng.random((2, total))[:, lo:lo + b]
                h_off = np.floor(u[0] * (hs - self.crop + 1)).astype(np.int64)
                w_off = np.floor(u[1] * (ws - self.crop + 1)).astype(np.int64)
            else:
                h_off, w_off = (hs - self.crop) // 2, (ws - self.crop) // 2
        return h_off, w_off, flip

    def apply(self, x, out: np.ndarray, rng: np.random.Generator | None = None,
              where: Callable[[int], str] | None = None,
              part: tuple[int, int | None] = (0, None)) -> None:
        """Transform the samples `x` into `out` (B, *out_shape) of the net's dtype.

        x: an array (B, ...) of samples of one shape, or a list of B samples (images of
        several sizes, cropped to one). A sample whose transformed shape is not out's is a
        UserError naming it (`where(i)`: its file, key or row). `part`: see `offsets`.
        """
        b = len(out)
        want = tuple(out.shape[1:])
        if isinstance(x, np.ndarray):
            groups = [(np.arange(b), x)]
            shapes = [tuple(x.shape[1:])] * b
        else:
            shapes = [tuple(s.shape) for s in x]
            groups = []
            for shape in dict.fromkeys(shapes):
                rows = np.array([i for i, s in enumerate(shapes) if s == shape], np.int64)
                groups.append((rows, np.stack([x[i] for i in rows])))
        h_off, w_off, flip = self.offsets(rng, shapes, part)
        for rows, xs in groups:
            shape = tuple(xs.shape[1:])
            if self.out_shape(shape) != want:
                i = int(rows[0])
                name = where(i) if where is not None else f"sample {i}"
                raise self.error(f"{name}: a sample of shape {shape} becomes "
                                 f"{self.out_shape(shape)}, but the batch's samples are "
                                 f"{want} (the first sample's); give crop_size, or make the "
                                 f"samples one size (new_height/new_width for image lists)")
            chw = as_chw(shape)
            xs4 = xs.reshape((len(xs),) + chw)
            out_view = out.reshape((b,) + self._out_chw(shape))
            if len(rows) == b:
                transform_batch(xs4, h_off, w_off, flip, self.mean(shape), self.scale,
                                out_view)
            else:
                part = np.empty((len(rows),) + out_view.shape[1:], self.dtype)
                transform_batch(xs4, h_off[rows], w_off[rows], flip[rows], self.mean(shape),
                                self.scale, part)
                out_view[rows] = part

    def _out_chw(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = as_chw(shape)
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    def window(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(h_off, w_off, h, w): the window a test-phase (centre) crop takes of a sample of
        `shape` (the whole sample without a crop)."""
        c, h, w = as_chw(shape)
        if not self.crop:
            return 0, 0, h, w
        return (h - self.crop) // 2, (w - self.crop) // 2, self.crop, self.crop
