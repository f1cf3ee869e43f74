"""Data: reads a dataset and hands out one batch per forward, as Caffe's Data layer does.

Tops: [data] or [data, label] (for an .npz source, any tops: each names an array of the file).
Shapes: data (batch_size,) + sample shape; label (batch_size,).
Each batch is gathered from the stored arrays (uint8 images stay uint8 in memory) into
preallocated buffers of the net's dtype; the first top is transformed on the way:
    data[i] = (x[index[i]] - mean) * scale          mean: mean_value or mean_file, else 0
Batches follow the stored order, or a fresh permutation every epoch with `shuffle: true`; a batch
that crosses the end of the data continues at the start of the next epoch.

Sources:
    spiral                  CS231n's 2-D spiral (keys num_classes, points_per_class, noise, seed)
    fashion-mnist           Zalando's Fashion-MNIST, (N, 1, 28, 28); `split` train | test
    x.npz                   the arrays named after the tops
    x.csv                   header row; `label_column` is the label, other columns features
    any other path          an IDX file (raw or .gz) of samples, with `label_source` the IDX
                            file of labels; (N, H, W) images get a channel axis: (N, 1, H, W)
Relative paths are relative to the folder of the net YAML.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from layerflow import Layer, UserError, register_layer
from layerflow.errors import file_error
from layerflow import data as datasets


@njit(cache=True)
def gather_transform(x, index, mean, scale, out):
    """out[i, :] = (x[index[i], :] - mean) * scale. x: (N, D) stored dtype; mean: (D,);
    out: (B, D) float, B = len(index)."""
    b, d = out.shape
    for i in range(b):
        r = index[i]
        for j in range(d):
            out[i, j] = (x[r, j] - mean[j]) * scale


@njit(cache=True)
def gather(x, index, out):
    """out[i, :] = x[index[i], :]. x: (N, D) stored dtype; out: (B, D) float."""
    b, d = out.shape
    for i in range(b):
        r = index[i]
        for j in range(d):
            out[i, j] = x[r, j]


BUILTIN_SOURCES = ("spiral", "fashion-mnist")


def source_kind(source: str) -> str:
    """spiral | fashion-mnist | npz | csv | idx."""
    if source in BUILTIN_SOURCES:
        return source
    suffix = Path(source).suffix.lower()
    return {".npz": "npz", ".csv": "csv"}.get(suffix, "idx")


def _only_with(kind: str, key: str):
    def check(cls, v, info: ValidationInfo):
        source = info.data.get("source")
        if v is not None and source is not None and source_kind(source) != kind:
            example = {"spiral": "source: spiral", "fashion-mnist": "source: fashion-mnist",
                       "csv": "a .csv source", "idx": "an IDX source (a path not ending in "
                       ".npz or .csv)"}[kind]
            raise ValueError(f"{key} only applies to {example}; source is {source!r}")
        return v
    return field_validator(key)(check)


class DataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="spiral | fashion-mnist | a .npz, .csv or "
                        "IDX file (relative to the net YAML)")
    batch_size: int = Field(gt=0, description="samples per batch")
    shuffle: bool = Field(False, description="a fresh random order every epoch")
    scale: float = Field(1.0, allow_inf_nan=False,
                         description="multiplies the data after subtracting the mean")
    mean_value: Optional[Union[float, list[float]]] = Field(
        None, description="subtracted from the data before scaling: one number, or one per "
                          "channel (the first axis of a sample)")
    mean_file: Optional[str] = Field(None, description=".npy array of one sample's shape, "
                                                       "subtracted before scaling")
    split: Optional[str] = Field(None, description="fashion-mnist: train | test (default: the "
                                                   "net's phase)")
    label_source: Optional[str] = Field(None, description="IDX source: the IDX file of labels")
    label_column: Optional[str] = Field(None, description="CSV source: the label column "
                                                          "(default \"label\")")
    num_classes: Optional[int] = Field(None, gt=0, description="spiral: classes (default 3)")
    points_per_class: Optional[int] = Field(None, gt=0,
                                            description="spiral: points per class (default 100)")
    noise: Optional[float] = Field(None, ge=0, allow_inf_nan=False,
                                   description="spiral: std of the angle noise (default 0.2)")
    seed: Optional[int] = Field(None, description="spiral: seed of the noise (default 0)")

    _split = _only_with("fashion-mnist", "split")
    _label_source = _only_with("idx", "label_source")
    _label_column = _only_with("csv", "label_column")
    _num_classes = _only_with("spiral", "num_classes")
    _points = _only_with("spiral", "points_per_class")
    _noise = _only_with("spiral", "noise")
    _seed = _only_with("spiral", "seed")

    @field_validator("split")
    @classmethod
    def _split_name(cls, v):
        if v is not None and v not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {v!r}")
        return v

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
class Data(Layer):
    Params = DataParams
    num_bottoms = 0
    num_tops = (1, None)
    has_backward = False

    def setup(self, bottom_shapes):
        names = list(self.top_names)
        arrays = self._load(names)
        n = len(arrays[0])
        if n == 0:
            raise UserError(f"layer {self.name} (Data): the source {self.p.source} has no "
                            f"samples")
        self.num_samples = n
        # stored dtype, one row per sample; a view, never a float copy of the dataset
        self.arrays = [np.ascontiguousarray(a).reshape(n, -1) for a in arrays]
        self.sample_shapes = [a.shape[1:] for a in arrays]
        self.mean = self._mean(self.sample_shapes[0]).astype(self.dtype).reshape(-1)
        self.scale = self.dtype.type(self.p.scale)
        seed = int(self.rng.integers(2**63))
        self.cursor = datasets.Cursor(n, self.p.shuffle, seed)

    def reshape(self, bottom_shapes):
        b = self.p.batch_size
        self.tops = [np.zeros((b,) + s, self.dtype) for s in self.sample_shapes]
        self.index = np.zeros(b, np.int64)
        return [t.shape for t in self.tops]

    def batches_per_epoch(self):
        return -(-self.num_samples // self.p.batch_size)

    def forward(self, bottoms):
        self.cursor.next(self.index)
        b = self.p.batch_size
        gather_transform(self.arrays[0], self.index, self.mean, self.scale,
                         self.tops[0].reshape(b, -1))
        for x, top in zip(self.arrays[1:], self.tops[1:]):
            gather(x, self.index, top.reshape(b, -1))
        return self.tops

    def backward(self, top_diffs):
        return []

    def state(self):
        return self.cursor.state()

    def load_state(self, state):
        self.cursor.load_state(state, context=f"layer {self.name} (Data)")

    # -- helpers ------------------------------------------------------------------------
    def _error(self, message: str) -> UserError:
        return UserError(f"layer {self.name} (Data): {message}")

    def _path(self, source: str) -> Path:
        path = Path(source).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _load(self, names: list[str]) -> list[np.ndarray]:
        """The arrays for the tops, in top order, as stored."""
        p, kind = self.p, source_kind(self.p.source)
        if kind != "npz" and len(names) > 2:
            raise self._error(f"{len(names)} tops, but source {p.source} gives two arrays "
                              f"(data, label); use 1 or 2 tops")
        try:
            if kind == "spiral":
                d = datasets.spiral(p.num_classes or 3, p.points_per_class or 100,
                                    0.2 if p.noise is None else p.noise, p.seed or 0)
            elif kind == "fashion-mnist":
                d = datasets.fashion_mnist(p.split or self.phase)
            elif kind == "csv":
                d = datasets.read_csv(self._path(p.source), p.label_column or "label")
            elif kind == "npz":
                d = datasets.read_npz(self._path(p.source), names)
                return [d[name] for name in names]
            else:
                d = self._read_idx_pair(len(names))
        except UserError as err:
            raise self._error(str(err)) from None
        return [d["data"], d["label"]][:len(names)]

    def _read_idx_pair(self, num_tops: int) -> dict[str, np.ndarray]:
        p = self.p
        if num_tops == 2 and p.label_source is None:
            raise UserError(f"source {p.source} is read as an IDX file of samples; give the "
                            f"IDX file of labels as label_source (or use one top)")
        images_path = self._path(p.source)
        data = datasets.read_idx(images_path)
        if data.ndim == 3:
            data = data.reshape(data.shape[0], 1, *data.shape[1:])
        if num_tops == 1:
            return {"data": data, "label": None}
        labels_path = self._path(p.label_source)
        label = datasets.read_idx(labels_path)
        if len(label) != len(data):
            raise UserError(f"{labels_path} has {len(label)} labels but {images_path} has "
                            f"{len(data)} samples")
        return {"data": data, "label": label}

    def _mean(self, sample_shape: tuple[int, ...]) -> np.ndarray:
        """The mean subtracted from one sample, as a float64 array of the sample's shape."""
        p = self.p
        if p.mean_file is not None:
            path = self._path(p.mean_file)
            try:
                mean = np.load(path, allow_pickle=False)
            except (FileNotFoundError, IsADirectoryError) as exc:
                raise self._error(f"mean_file {file_error(path, exc, 'an .npy file')}") from None
            except (OSError, ValueError, EOFError) as exc:
                raise self._error(f"mean_file {path}: not a readable .npy file ({exc})") from None
            if not isinstance(mean, np.ndarray) or mean.dtype.kind not in "iuf":
                raise self._error(f"mean_file {path}: expected one numeric array (.npy)")
            if mean.shape != sample_shape and mean.shape == (1,) + sample_shape:
                mean = mean[0]  # Caffe's mean blobs carry a leading 1
            if mean.shape != sample_shape:
                raise self._error(f"mean_file {path} has shape {mean.shape}, but a sample of "
                                  f"{p.source} has shape {sample_shape}")
            try:
                datasets.check_finite(mean, path, "mean")
            except UserError as err:
                raise self._error(str(err)) from None
            return mean.astype(np.float64)
        values = np.atleast_1d(np.asarray(0.0 if p.mean_value is None else p.mean_value,
                                          np.float64))
        if len(values) == 1:
            return np.full(sample_shape, values[0])
        channels = sample_shape[0] if sample_shape else 1
        if len(values) != channels:
            raise self._error(f"mean_value has {len(values)} values, but a sample of "
                              f"{p.source} has shape {sample_shape}: give one value or "
                              f"{channels} (one per channel, the first axis)")
        return np.broadcast_to(values.reshape((-1,) + (1,) * (len(sample_shape) - 1)),
                               sample_shape).copy()
