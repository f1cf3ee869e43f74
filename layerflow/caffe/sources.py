"""Caffe's data sources, registered as layerflow sources (the caffe extra: lmdb, h5py, Pillow,
imported when a source is opened; a missing one is a UserError naming the extra).

lmdb      `source`: an LMDB folder (data.mdb) of Caffe Datum records, as convert_imageset
          writes them. Records are read in key order (LMDB's byte order), as Caffe's cursor
          reads them, one batch at a time: memory does not grow with the database (LMDB maps
          the file; every 64 MiB read, the pages read are dropped from the process's resident
          set and left to the OS page cache: `release_mapped_pages`). A record holds raw uint8
          pixels in C x H x W order, `float_data`, or an `encoded` PNG/JPEG (decoded by Pillow
          into BGR: `layerflow.caffe.images`; force_color / force_gray choose 3 or 1 channels,
          else the file's own); labels are Datum.label. Caffe's Data layer never shuffles;
          here `shuffle: true` reads a fresh permutation of the records each epoch, by key
          (the keys are then listed once when the layer is built: their bytes stay in memory,
          ~20 bytes a record for convert_imageset's keys). `force_encoded_color` (Caffe's
          data_param field) is force_color. The database must not be written to while read.
hdf5      `source`: a text file listing .h5 files (whitespace-separated paths, Caffe's
          HDF5Data), or one .h5/.hdf5 file. Each top reads the dataset of its name; every
          dataset has one row per sample and all tops the same rows. One file is in memory at
          a time, loaded whole when a batch first needs it (as Caffe loads it). `shuffle`
          permutes the order of the files each epoch, and the rows within each file, never
          interleaving files (Caffe's rule).
images    `source`: a list file of `path label` lines (Caffe's ImageData; split at the last
          space, the label an integer). `root_folder` is prefixed to each path as a plain
          string (Caffe's rule: keep its trailing slash); images are decoded by Pillow into
          BGR (or gray with `is_color: false`; force_color / force_gray override it), resized
          to new_height x new_width when given (OpenCV's bilinear, as Caffe), then
          transformed. `shuffle` reshuffles the list every epoch; `rand_skip` skips a random
          number of lines (< rand_skip) at the start of the first epoch, as Caffe does.

Paths: `source`, `root_folder` and `mean_file` are relative to the net YAML (what `layerflow
convert` writes). Paths inside a list file (an HDF5 list, or an image list without a
root_folder) are relative to the list file's folder; when nothing is there, to the working
directory (Caffe's rule: it opens them as written), so Caffe's own list files work unchanged
when run from where Caffe ran. An error names what was tried.
"""
from __future__ import annotations

import sys
import threading
import weakref
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import UserError, file_error
from ..registry import register_source
from ..sources import DataSource
from .images import decode, resize, stack_or_list
from .proto import messages, missing_extra


def _require(module: str, what: str):
    try:
        return __import__(module)
    except ImportError:
        raise missing_extra(what, module) from None


def listed_path(value: str, list_file: Path) -> Path:
    """A path written in a list file: relative to the list file's folder, else (when nothing
    is there) to the working directory, as Caffe opens it; absolute paths as they are."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    beside = list_file.parent / p
    if beside.exists() or not p.exists():
        return beside
    return p.resolve()


def tried(value: str, list_file: Path) -> str:
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    return f"{list_file.parent / p} nor {Path.cwd() / p}"


# ---- LMDB of Datum records ------------------------------------------------------------------

_ENVS: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
_ENVS_LOCK = threading.Lock()
RELEASE_EVERY = 64 << 20  # bytes of records read between two releases of the mapped pages


def release_mapped_pages(db: Path) -> bool:
    """Linux: drop this process's resident pages of `db`'s memory-mapped data.mdb
    (madvise MADV_DONTNEED on the read-only shared mapping). They stay in the OS page cache,
    and a page read again maps back without disk I/O; what changes is that the process's
    resident set no longer holds every page of the database it has read, so its RSS does not
    grow with the database size. Records are copied out of the map when read (py-lmdb's
    buffers=False), so nothing points into the dropped pages. False where not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        target = str((db / "data.mdb").resolve())
        done = False
        for line in Path("/proc/self/maps").read_text().splitlines():
            if line.endswith(target):
                start, end = (int(v, 16) for v in line.split()[0].split("-"))
                libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)
                done = True
        return done
    except (OSError, ValueError, AttributeError):
        return False


def open_env(path: Path):
    """The process's one read-only lmdb.Environment of `path` (LMDB forbids opening a database
    twice in a process, and a train and a test net may read the same one); closed when the
    last reader is gone."""
    lmdb = _require("lmdb", f"reading the LMDB {path}")
    key = str(path.resolve())
    with _ENVS_LOCK:
        env = _ENVS.get(key)
        if env is not None:
            return env
        if not path.exists():
            raise UserError(f"{path}: LMDB folder not found")
        if not (path / "data.mdb").is_file():
            raise UserError(f"{path}: not an LMDB database (no data.mdb in it)")
        try:
            env = lmdb.open(str(path), readonly=True, lock=True, max_readers=512)
        except lmdb.ReadonlyError:
            env = None
        except lmdb.Error as exc:
            if "ermission" not in str(exc):
                raise UserError(f"{path}: cannot open the LMDB database ({exc})") from None
            env = None
        if env is None:  # a read-only folder: no lock file can be written (Caffe: MDB_NOLOCK)
            try:
                env = lmdb.open(str(path), readonly=True, lock=False)
            except lmdb.Error as exc:
                raise UserError(f"{path}: cannot open the LMDB database ({exc})") from None
        _ENVS[key] = env
        return env


class LmdbKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force_encoded_color: bool = Field(False, description="lmdb: Caffe's data_param field; "
                                                         "the same as force_color")


@register_source("lmdb")
class Lmdb(DataSource):
    """Caffe Datum records of an LMDB folder, in key order (module docstring)."""

    Params = LmdbKeys
    what = "an LMDB source (backend: lmdb)"
    streams = True
    decodes_images = True

    def open(self, tops):
        if len(tops) > 2:
            raise UserError(f"{len(tops)} tops, but an LMDB of Datum records gives two "
                            f"(data, label); use 1 or 2 tops")
        self.tops = list(tops)
        self.db = self.path(self.p.source)
        self.env = open_env(self.db)
        self.Datum = messages().Datum
        p = self.p
        self.channels = 3 if (p.force_color or p.force_encoded_color) else (
            1 if p.force_gray else None)
        self.txn = self.env.begin(buffers=False)
        self.num_samples = int(self.txn.stat()["entries"])
        self.cursor = self.txn.cursor()
        self.at = -1  # the record the cursor is on
        self.keys_blob, self.key_ends = None, None
        if p.shuffle:
            self._list_keys()
        self.batch_keys: dict[int, bytes] = {}
        self.read_bytes = 0  # since the mapped pages were last released
        if self.num_samples:
            key, value = self._record(0)
            self.first = self._datum(key, value, 0)

    def _list_keys(self) -> None:
        """Every key, in order, in one bytes object with the end of each (random access)."""
        parts, ends, total = [], [], 0
        for key in self.txn.cursor().iternext(keys=True, values=False):
            parts.append(key)
            total += len(key)
            ends.append(total)
        self.keys_blob = b"".join(parts)
        self.key_ends = np.asarray(ends, np.int64)

    def _key(self, i: int) -> bytes:
        start = int(self.key_ends[i - 1]) if i else 0
        return self.keys_blob[start:int(self.key_ends[i])]

    def _record(self, i: int) -> tuple[bytes, bytes]:
        """(key, value) of record i: the next one for the cursor when reading in order,
        by key with shuffle."""
        if self.keys_blob is not None:
            key = self._key(i)
            value = self.txn.get(key)
            if value is None:
                raise UserError(f"{self.db}: record {i} (key {key!r}) is gone; the database "
                                f"changed while being read")
            return key, value
        if i != self.at:
            if i == self.at + 1 and self.at >= 0:
                ok = self.cursor.next()
            else:
                ok = self.cursor.first()
                for _ in range(i):  # a jump (a resume): walk the keys, no values read
                    ok = ok and self.cursor.next()
            if not ok:
                raise UserError(f"{self.db}: has fewer than {i + 1} records, it had "
                                f"{self.num_samples} when opened; the database changed while "
                                f"being read")
            self.at = i
        return self.cursor.key(), self.cursor.value()

    def _datum(self, key: bytes, value: bytes, i: int) -> tuple[np.ndarray, int]:
        """(the record's sample (C, H, W), its label); a bad record is a UserError naming the
        database, the key and the problem."""
        where = f"{self.db}: record {i} (key {key.decode(errors='replace')!r})"
        try:
            d = self.Datum.FromString(value)
        except Exception as exc:  # protobuf's DecodeError, by whatever class this runtime has
            raise UserError(f"{where}: not a Caffe Datum ({type(exc).__name__}: {exc})") from None
        if d.encoded:
            x = decode(d.data, self.channels, where)
        else:
            c, h, w = d.channels, d.height, d.width
            if min(c, h, w) <= 0:
                raise UserError(f"{where}: channels x height x width is {c} x {h} x {w}; a "
                                f"raw Datum needs all three > 0")
            if d.data:
                if len(d.data) != c * h * w:
                    raise UserError(f"{where}: {len(d.data)} data bytes, but channels x height "
                                    f"x width = {c} x {h} x {w} = {c * h * w}")
                x = np.frombuffer(d.data, np.uint8).reshape(c, h, w)
            elif len(d.float_data):
                if len(d.float_data) != c * h * w:
                    raise UserError(f"{where}: {len(d.float_data)} float_data values, but "
                                    f"channels x height x width = {c * h * w}")
                x = np.asarray(d.float_data, np.float32).reshape(c, h, w)
            else:
                raise UserError(f"{where}: no pixels (neither data bytes nor float_data)")
            if self.channels is not None:
                key_name = "force_gray" if self.channels == 1 else "force_color"
                raise UserError(f"{where}: {key_name} applies to encoded records, this one "
                                f"holds raw pixels ({c} x {h} x {w}); Caffe ignores it with an "
                                f"error in its log; remove {key_name}")
        return x, int(d.label)

    def shapes(self):
        return [tuple(self.first[0].shape), ()][:len(self.tops)]

    def read(self, index):
        xs, labels = [], np.empty(len(index), np.int64)
        self.batch_keys = {}
        for j, i in enumerate(index):
            i = int(i)
            key, value = self._record(i)
            self.batch_keys[i] = key
            self.read_bytes += len(value)
            x, labels[j] = self._datum(key, value, i)
            xs.append(x)
        if self.read_bytes >= RELEASE_EVERY:
            release_mapped_pages(self.db)
            self.read_bytes = 0
        return [stack_or_list(xs), labels][:len(self.tops)]

    def row(self, top, i):
        key = self.batch_keys.get(i)
        if key is None:
            key = self._key(i) if self.keys_blob is not None else None
        shown = f" (key {key.decode(errors='replace')!r})" if key is not None else ""
        return f"{self.db}: record {i}{shown}"


# ---- HDF5 file lists ------------------------------------------------------------------------

@register_source("hdf5", suffixes=(".h5", ".hdf5"))
class Hdf5(DataSource):
    """Datasets named after the tops, from the .h5 files a list names (module docstring)."""

    what = "an HDF5 source (backend: hdf5, or a .h5 file)"
    streams = True

    def _files(self) -> list[Path]:
        source = self.path(self.p.source)
        if source.suffix.lower() in (".h5", ".hdf5"):
            return [source]
        try:
            names = source.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise file_error(source, exc, "an HDF5 list file (.h5 paths)") from None
        if not names:
            raise UserError(f"{source}: lists no .h5 file")
        self.list_file = source
        files = []
        for name in names:
            path = listed_path(name, source)
            if not path.is_file():
                raise UserError(f"{source}: lists {name}, which is not a file (tried "
                                f"{tried(name, source)})")
            files.append(path)
        return files

    def open(self, tops):
        h5py = _require("h5py", f"reading the HDF5 source {self.p.source}")
        self.tops = list(tops)
        self.files = self._files()
        rows, shapes, dtypes = [], None, []
        for path in self.files:
            try:
                with h5py.File(path, "r") as f:
                    n, s, t = self._describe(f, path)
            except OSError as exc:
                raise UserError(f"{path}: not a readable HDF5 file ({exc})") from None
            if shapes is not None and s != shapes:
                top = next(k for k, (a, b) in enumerate(zip(s, shapes)) if a != b)
                raise UserError(f"{path}: dataset \"{tops[top]}\" has rows of shape {s[top]}, "
                                f"but {self.files[0]} has {shapes[top]}")
            shapes = s
            dtypes.append(t)
            rows.append(n)
        self.rows = np.asarray(rows, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.rows)])
        self.num_samples = int(self.starts[-1])
        self.sample_shape = shapes
        # one dtype per top for every file (an int file and a float file: float)
        self.dtypes = [np.result_type(*(t[k] for t in dtypes)) for k in range(len(tops))]
        self.loaded: tuple[int, list[np.ndarray]] | None = None

    def _describe(self, f, path: Path):
        """(rows, shape of one row per top, dtype per top) of one file, checked."""
        shapes, dtypes, n = [], [], None
        for top in self.tops:
            if top not in f or not hasattr(f[top], "shape"):
                have = [k for k in f.keys() if hasattr(f[k], "shape")]
                raise UserError(f"{path}: no dataset named \"{top}\" (each top reads the "
                                f"dataset of its name); the file has: {', '.join(have) or 'none'}")
            d = f[top]
            if d.dtype.kind not in "iuf" or not d.shape:
                raise UserError(f"{path}: dataset \"{top}\" is {d.dtype} of shape {d.shape}; "
                                f"HDF5Data reads numeric datasets with one row per sample "
                                f"(Caffe: float or integer classes)")
            if n is not None and d.shape[0] != n:
                raise UserError(f"{path}: dataset \"{top}\" has {d.shape[0]} rows, "
                                f"\"{self.tops[0]}\" has {n}; all tops need the same rows")
            n = d.shape[0]
            shapes.append(tuple(int(s) for s in d.shape[1:]))
            dtypes.append(d.dtype)
        return n, shapes, dtypes

    def _load(self, k: int) -> list[np.ndarray]:
        """The datasets of file k, whole (one file in memory at a time, as Caffe)."""
        if self.loaded is None or self.loaded[0] != k:
            import h5py

            path = self.files[k]
            self.loaded = None
            try:
                with h5py.File(path, "r") as f:
                    arrays = [np.asarray(f[top][()]) for top in self.tops]
            except (OSError, KeyError) as exc:
                raise UserError(f"{path}: cannot be read any more ({exc}); the file changed "
                                f"while being read") from None
            for top, a in zip(self.tops, arrays):
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    bad = int(np.argmin(np.isfinite(a).reshape(len(a), -1).all(axis=1)))
                    raise UserError(f"{path}: dataset \"{top}\" row {bad}: NaN or infinite "
                                    f"values; clean the data before training on it")
            self.loaded = (k, arrays)
        return self.loaded[1]

    def shapes(self):
        return [tuple(s) for s in self.sample_shape]

    def read(self, index):
        file_of = np.searchsorted(self.starts, index, side="right") - 1
        out = [np.empty((len(index),) + s, t) for s, t in zip(self.sample_shape, self.dtypes)]
        j = 0
        while j < len(index):  # runs of consecutive samples of one file
            k = int(file_of[j])
            end = j + 1
            while end < len(index) and file_of[end] == k:
                end += 1
            arrays = self._load(k)
            rows = index[j:end] - self.starts[k]
            for o, a in zip(out, arrays):
                o[j:end] = a[rows]
            j = end
        return out

    def order(self, epoch, seed):
        """Files in a fresh order, rows shuffled within each file; files never interleave."""
        rng = np.random.default_rng([seed, epoch])
        parts = [self.starts[k] + rng.permutation(int(self.rows[k]))
                 for k in rng.permutation(len(self.files))]
        return np.concatenate(parts)

    def row(self, top, i):
        k = int(np.searchsorted(self.starts, i, side="right") - 1)
        return f"{self.files[k]}: dataset \"{top}\", row {i - int(self.starts[k])}"


# ---- image lists ----------------------------------------------------------------------------

class ImagesKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root_folder: str = Field("", description="images: prefixed to each listed path as a plain "
                                             "string (keep its trailing slash)")
    new_height: int = Field(0, ge=0, description="images: resize to this height (with "
                                                 "new_width; 0: keep the size)")
    new_width: int = Field(0, ge=0, description="images: resize to this width (with "
                                                "new_height; 0: keep the size)")
    is_color: bool = Field(True, description="images: decode as 3-channel BGR (false: 1 gray "
                                             "channel)")
    rand_skip: int = Field(0, ge=0, description="images: skip a random number (< rand_skip) "
                                                "of lines at the start")

    @model_validator(mode="after")
    def _both(self):
        if (self.new_height > 0) != (self.new_width > 0):
            raise ValueError("give new_height and new_width both, or neither")
        return self


@register_source("images")
class Images(DataSource):
    """Caffe's ImageData: a list of `path label` lines (module docstring)."""

    Params = ImagesKeys
    what = "an image list (backend: images)"
    streams = True
    decodes_images = True

    def open(self, tops):
        if len(tops) > 2:
            raise UserError(f"{len(tops)} tops, but an image list gives two (data, label); "
                            f"use 1 or 2 tops")
        self.tops = list(tops)
        self.list_file = self.path(self.p.source)
        try:
            text = self.list_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise file_error(self.list_file, exc, "an image list (`path label` lines)") from None
        self.names, self.lines, labels = [], [], []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            name, sep, label = line.rpartition(" ")
            try:
                value = int(label)
            except ValueError:
                value = None
            if not sep or not name.strip() or value is None:
                raise UserError(f"{self.list_file}:{number}: expected `path label` (the label "
                                f"an integer, after the last space), got {line!r}")
            self.names.append(name.strip())
            self.lines.append(number)
            labels.append(value)
        self.labels = np.asarray(labels, np.int64)
        self.num_samples = len(self.names)
        p = self.p
        self.channels = 3 if p.force_color else 1 if p.force_gray else (
            3 if p.is_color else 1)
        if self.num_samples:
            self.first = self._image(0)

    def _file(self, i: int) -> Path:
        name = self.names[i]
        if self.p.root_folder:
            return self.path(self.p.root_folder + name)  # Caffe: a plain prefix
        return listed_path(name, self.list_file)

    def _image(self, i: int) -> np.ndarray:
        path = self._file(i)
        where = f"{self.list_file}:{self.lines[i]}: {self.names[i]}"
        if not path.is_file():
            shown = str(path) if self.p.root_folder else tried(self.names[i], self.list_file)
            raise UserError(f"{where}: image not found (tried {shown})")
        x = decode(str(path), self.channels, where)
        if self.p.new_height:
            x = resize(x, self.p.new_height, self.p.new_width)
        return x

    def shapes(self):
        return [tuple(self.first.shape), ()][:len(self.tops)]

    def read(self, index):
        xs = [self._image(int(i)) for i in index]
        return [stack_or_list(xs), self.labels[index]][:len(self.tops)]

    def first_position(self, rng):
        return int(rng.integers(self.p.rand_skip)) if self.p.rand_skip else 0

    def row(self, top, i):
        return f"{self.list_file}:{self.lines[i]}: {self.names[i]}"
