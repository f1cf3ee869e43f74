"""Data sources: the datasets a Data layer can read, as a registry a plugin can add to.

A source is a `DataSource` subclass registered with `@register_source(name)`. It declares its
own YAML keys as a pydantic `Params` model (every field with a default), written flat on the
Data layer beside the generic keys (`source`, `batch_size`, `shuffle`, the transform...), and
loads the arrays of the layer's tops (and may say where a sample was read from, `row`, for
messages about bad data):

    @register_source("my-source")
    class MySource(DataSource):
        Params = MyKeys                       # e.g. `root: str = "."`
        def load(self, tops):                 # -> one array per top, samples on axis 0
            ...

Which source a layer reads: its `backend` key when given (a registered name), else `source`
itself when it is a registered name (`spiral`, `fashion-mnist`), else the registered source
whose `suffixes` end the path (`.npz`, `.csv`), else IDX. Keys of another source are an error
that names the source they belong to; a plugin's source brings its keys the same way.

Built in: spiral (CS231n's toy set), fashion-mnist, npz, csv, idx (readers in layerflow.data),
and Caffe's lmdb, hdf5 and images (layerflow.caffe.sources, the caffe extra). A source holds its
data in memory (`load`) or streams it from disk batch by batch (`open`/`shapes`/`read`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from . import data as datasets
from .errors import UserError
from .registry import SOURCES, register_source
from .transformer import DataTransformKeys


class NoKeys(BaseModel):
    """A source without keys of its own."""

    model_config = ConfigDict(extra="forbid")


class DataSource:
    """Base of a dataset a Data layer reads.

    Class attributes: `Params` (the source's own YAML keys), `suffixes` (file suffixes that
    select it when `source` is a path), `what` (how messages name it: "a .csv source"),
    `streams` (it reads samples from disk batch by batch instead of holding the data set in
    memory: labels are then checked batch by batch), `decodes_images` (it decodes images, so
    force_color / force_gray apply).
    An instance is made per layer with `p` (the layer's validated keys, generic and the
    source's), `base_dir` (relative paths start there), `phase` and `layer` (its name, for
    messages).

    A source that holds its data in memory implements `load(tops)`: one array per top name,
    samples on the first axis, in the dtype they are stored in. A source that streams from
    disk implements `open(tops)` (get ready, set `num_samples`), `shapes()` and `read(index)`
    instead; the Data layer only calls those three (and `row`, `order`, `first_position`),
    from one thread at a time (a prefetch thread or the main thread, never both at once).
    """

    Params: ClassVar[type[BaseModel]] = NoKeys
    suffixes: ClassVar[tuple[str, ...]] = ()
    what: ClassVar[str] = ""
    name: ClassVar[str] = ""
    streams: ClassVar[bool] = False
    decodes_images: ClassVar[bool] = False

    def __init__(self, p, *, base_dir: Path | str = ".", phase: str = "train"):
        self.p = p
        self.base_dir = Path(base_dir)
        self.phase = phase
        self.num_samples = 0

    def path(self, value: str) -> Path:
        """A path of the YAML, relative to the net file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def load(self, tops: list[str]) -> list[np.ndarray]:
        """One array per top name, samples on the first axis, in the dtype they are stored
        in; any problem with the data is a UserError naming the file."""
        raise NotImplementedError

    # -- what the Data layer reads through ---------------------------------------------
    def open(self, tops: list[str]) -> None:
        """Get ready to read the samples of `tops`; sets `num_samples`. By default loads the
        arrays (`load`) and keeps them as `arrays`."""
        arrays = self.load(tops)
        n = len(arrays[0])
        for name, a in zip(tops, arrays):
            if len(a) != n:
                raise UserError(f"source {self.p.source}: top \"{name}\" has {len(a)} samples, "
                                f"\"{tops[0]}\" has {n}")
        self.arrays = [np.ascontiguousarray(a) for a in arrays]
        self.num_samples = n

    def shapes(self) -> list[tuple[int, ...]]:
        """The shape of one sample of each top (the first one, as stored, before any crop),
        once opened."""
        return [tuple(a.shape[1:]) for a in self.arrays]

    def read(self, index: np.ndarray) -> list[np.ndarray | list[np.ndarray]]:
        """The samples `index` of each top, in their stored dtype: an array (len(index), ...)
        per top, or for the data top a list of arrays when samples differ in shape (images
        of several sizes). Bad data is a UserError naming where it was read (`row`)."""
        return [a[index] for a in self.arrays]

    def order(self, epoch: int, seed: int) -> np.ndarray | None:
        """With `shuffle`: the order of the samples in epoch `epoch` (a permutation made from
        `seed` and `epoch` alone); None (the default): a uniform permutation."""
        return None

    def first_position(self, rng: np.random.Generator) -> int:
        """Where the first epoch starts (image lists' rand_skip); 0 by default."""
        return 0

    def sample_shapes(self, tops: list[str]) -> list[tuple[int, ...]]:
        """The shape of one sample of each top (a deploy net's Input takes it). By default
        from the opened data; a source that knows them without its data says so, so that a
        trained model can be used where the data set is not."""
        self.open(tops)
        return self.shapes()

    def row(self, top: str, i: int) -> str:
        """Where sample `i` of top `top` was read from, for messages: "labels.csv:7",
        'd.npz: array "label", row 5'. By default 'source <source>: sample <i>'."""
        return f"source {self.p.source}: sample {i}"

    @classmethod
    def described(cls) -> str:
        """How messages name this source ("a .csv source")."""
        return cls.what or f"source: {cls.name}"


def resolve(source: str, backend: str | None = None) -> type[DataSource]:
    """The source class that reads `source` (see the module docstring for the rule)."""
    if backend:
        return SOURCES.get(backend)
    named = SOURCES.lookup(source)
    if named is not None and not named.suffixes:
        return named
    lower = source.lower()
    best = None
    for _, cls in SOURCES.items():
        for suffix in cls.suffixes:
            if lower.endswith(suffix) and (best is None or len(suffix) > len(best[0])):
                best = (suffix, cls)
    return best[1] if best else SOURCES.get("idx")


# ---- the keys a Data layer takes ---------------------------------------------------------

class GenericDataKeys(BaseModel):
    """The keys of every Data layer that say what to read and how to batch it."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="what to read: spiral | fashion-mnist | a "
                        "path (.npz, .csv, .h5, an IDX file; an LMDB folder or an .h5/image "
                        "list with backend: lmdb | hdf5 | images), relative to the net YAML")
    backend: Optional[str] = Field(None, description="the source type, when the path does not "
                                   "tell it (idx, lmdb, hdf5, images); default: from `source`")
    batch_size: int = Field(gt=0, description="samples per batch")
    shuffle: bool = Field(False, description="a fresh random order every epoch")
    prefetch: Optional[bool] = Field(
        None, description="read and transform the next batch in a background thread while "
                          "the net computes; default: on for sources read from disk batch by "
                          "batch (lmdb, hdf5, images), off for data held in memory")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v):
        if v is not None and v not in SOURCES:
            from .errors import did_you_mean
            known = SOURCES.names()
            raise ValueError(f"unknown source type {v!r}{did_you_mean(v, known)}; known: "
                             f"{', '.join(known)}")
        return v


class DataParams(DataTransformKeys, GenericDataKeys):
    """The keys of every Data layer, whatever its source: what to read, how to batch it, and
    Caffe's transform_param (crop_size, mirror, mean_file / mean_value, scale, force_color,
    force_gray; `layerflow.transformer`)."""


def params_for(entry: dict[str, Any] | None, base: type[BaseModel] = DataParams
               ) -> type[BaseModel]:
    """The model validating a Data layer's keys: `base`, the keys of the source the entry
    reads, and the keys of every other source as keys that must not be given."""
    source, backend = (entry or {}).get("source"), (entry or {}).get("backend")
    chosen = None
    if isinstance(source, str) and source and (backend is None or (
            isinstance(backend, str) and backend in SOURCES)):
        chosen = resolve(source, backend)
    return _model(base, chosen, tuple(name for name, _ in SOURCES.items()))


@lru_cache(maxsize=None)
def _model(base, chosen, _names) -> type[BaseModel]:
    # the source's own model is a base class too, so its validators come along
    bases = [base]
    fields: dict[str, Any] = {}
    foreign: dict[str, str] = {}
    for _, cls in SOURCES.items():
        clash = set(cls.Params.model_fields) & set(base.model_fields)
        if clash:
            raise RuntimeError(f"source {cls.name}: {', '.join(sorted(clash))} is a generic "
                               f"Data key")
        if chosen is None or cls is chosen:
            if cls.Params not in bases:
                bases.append(cls.Params)
            continue
        for key, f in cls.Params.model_fields.items():
            if key not in foreign and key not in chosen.Params.model_fields:
                foreign[key] = cls.described()
                fields[key] = (Optional[Any], Field(None, description=f.description))

    def not_here(cls, v, info: ValidationInfo):
        if v is not None:
            raise ValueError(f"{info.field_name} only applies to {foreign[info.field_name]}; "
                             f"source is {info.data.get('source')!r}")
        return v

    validators = {"_foreign": field_validator(*foreign)(not_here)} if foreign else {}
    suffix = chosen.name if chosen is not None else "any"
    return create_model(f"{base.__name__}[{suffix}]", __base__=tuple(bases),
                        __validators__=validators, **fields)


# ---- the built-in sources ----------------------------------------------------------------

class SpiralKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_classes: int = Field(3, gt=0, description="spiral: classes")
    points_per_class: int = Field(100, gt=0, description="spiral: points per class")
    noise: float = Field(0.2, ge=0, allow_inf_nan=False,
                         description="spiral: std of the angle noise")
    seed: int = Field(0, description="spiral: seed of the noise")


@register_source("spiral")
class Spiral(DataSource):
    """CS231n's 2-D spiral: data (N, 2), label (N,)."""

    Params = SpiralKeys

    def load(self, tops):
        p = self.p
        d = datasets.spiral(p.num_classes, p.points_per_class, p.noise, p.seed)
        return two_tops(self, d, tops)

    def sample_shapes(self, tops):
        return [(2,), ()][:len(tops)]


class FashionKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: Optional[str] = Field(None, description="fashion-mnist: train | test (default: the "
                                                   "net's phase)")

    @field_validator("split")
    @classmethod
    def _split_name(cls, v):
        if v is not None and v not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {v!r}")
        return v


@register_source("fashion-mnist")
class FashionMnist(DataSource):
    """Zalando's Fashion-MNIST: data (N, 1, 28, 28) uint8, label (N,)."""

    Params = FashionKeys

    def load(self, tops):
        return two_tops(self, datasets.fashion_mnist(self.p.split or self.phase), tops)

    def sample_shapes(self, tops):
        if len(tops) > 2:
            self.load(tops)  # its error
        return [(1, 28, 28), ()][:len(tops)]


@register_source("npz", suffixes=(".npz",))
class Npz(DataSource):
    """An .npz archive: one array per top, named as the top."""

    what = "an .npz source"

    def load(self, tops):
        d = datasets.read_npz(self.path(self.p.source), tops)
        return [d[name] for name in tops]

    def row(self, top, i):
        return f"{self.path(self.p.source)}: array \"{top}\", row {i}"


class CsvKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label_column: str = Field("label", description="CSV source: the label column")


@register_source("csv", suffixes=(".csv",))
class Csv(DataSource):
    """A CSV file with a header row: `label_column` the labels, the other columns features."""

    Params = CsvKeys
    what = "a .csv source"

    def load(self, tops):
        d = datasets.read_csv(self.path(self.p.source), self.p.label_column)
        self.lines = d.pop("line")
        self.label_top = tops[1] if len(tops) > 1 else None
        return two_tops(self, d, tops)

    def row(self, top, i):
        column = f", column \"{self.p.label_column}\"" if top == self.label_top else ""
        return f"{self.path(self.p.source)}:{self.lines[i]}{column}"


class IdxKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label_source: Optional[str] = Field(None, description="IDX source: the IDX file of labels")


@register_source("idx")
class Idx(DataSource):
    """An IDX file of samples (raw or .gz; (N, H, W) images get a channel axis), with
    `label_source` the IDX file of labels."""

    Params = IdxKeys
    what = "an IDX source (a path not ending in .npz or .csv)"

    def load(self, tops):
        p = self.p
        if len(tops) == 2 and p.label_source is None:
            raise UserError(f"source {p.source} is read as an IDX file of samples; give the "
                            f"IDX file of labels as label_source (or use one top)")
        images_path = self.path(p.source)
        self.files = {tops[0]: images_path}
        data = datasets.read_idx(images_path)
        if data.ndim == 3:
            data = data.reshape(data.shape[0], 1, *data.shape[1:])
        if len(tops) == 1:
            return [data]
        labels_path = self.path(p.label_source)
        self.files[tops[1]] = labels_path
        label = datasets.read_idx(labels_path)
        if len(label) != len(data):
            raise UserError(f"{labels_path} has {len(label)} labels but {images_path} has "
                            f"{len(data)} samples")
        return two_tops(self, {"data": data, "label": label}, tops)

    def row(self, top, i):
        return f"{self.files[top]}: item {i}"


def two_tops(source: DataSource, d: dict[str, np.ndarray], tops: list[str]) -> list[np.ndarray]:
    """[data] or [data, label] of a source that gives exactly these two arrays."""
    if len(tops) > 2:
        raise UserError(f"{len(tops)} tops, but source {source.p.source} gives two arrays "
                        f"(data, label); use 1 or 2 tops")
    return [d["data"], d["label"]][:len(tops)]
