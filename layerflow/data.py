"""Datasets: where samples come from (sources) and in which order they are drawn (the cursor).

Every source is a plain function returning a dict of named numpy arrays that share their first
dimension (the sample axis), in the dtype they are stored in (IDX images stay uint8). Every
problem with a file is a `UserError` naming the file and the culprit (array, line, column):
a truncated download or a NaN is never silently trained on.

    spiral(num_classes, points_per_class, noise, seed)  data (N, 2) f8, label (N,) i8
    read_idx(path)                                      one array, in the file's own dtype
    read_npz(path, names)                               {name: array} for each name asked
    read_csv(path, label_column)                        data (N, F) f8, label (N,), line (N,)
    fashion_mnist(split)                                data (N, 1, 28, 28) u1, label (N,) u1

`Cursor` hands out the sample indices of each batch: in order, or a fresh permutation per epoch
derived from one seed, so its whole state is a few integers.
"""
from __future__ import annotations

import csv
import gzip
import os
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError, as_written, file_error

# ---- checks shared by the readers ------------------------------------------------------


def check_finite(array: np.ndarray, file, name: str) -> None:
    """Raise a UserError naming `file`, the array `name` and the first NaN/inf index."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return
    bad = ~np.isfinite(array)
    if bad.any():
        flat = int(np.flatnonzero(bad)[0])
        index = tuple(int(i) for i in np.unravel_index(flat, array.shape))
        where = index[0] if len(index) == 1 else index
        raise UserError(f"{file}: array \"{name}\" has {int(bad.sum())} NaN or infinite "
                        f"value(s), the first at index {where} ({as_written(array[index])}); "
                        f"clean the data before training on it")


def _check_numeric(array: np.ndarray, file, name: str) -> np.ndarray:
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise UserError(f"{file}: array \"{name}\" has dtype {array.dtype}; a dataset array "
                        f"must hold integers or floats")
    if array.ndim == 0:
        raise UserError(f"{file}: array \"{name}\" is a scalar; a dataset array needs a first "
                        f"(sample) dimension")
    check_finite(array, file, name)
    return array


def check_same_length(arrays: dict[str, np.ndarray], file) -> None:
    """Raise a UserError naming two arrays whose first dimensions differ."""
    items = list(arrays.items())
    first, a = items[0]
    for name, b in items[1:]:
        if len(b) != len(a):
            raise UserError(f"{file}: arrays \"{first}\" and \"{name}\" have different lengths "
                            f"({len(a)} vs {len(b)}); every array needs one entry per sample")


def _open(path):
    """open(path, "rb"), its usual failures turned into UserErrors naming the file."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise file_error(path, exc, "a data file") from None


def _read_bytes(path) -> bytes:
    with _open(path) as f:
        try:
            return f.read()
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None


# ---- spiral ----------------------------------------------------------------------------


def spiral(num_classes: int = 3, points_per_class: int = 100, noise: float = 0.2,
           seed: int = 0) -> dict[str, np.ndarray]:
    """CS231n's spiral: class j's points lie on an arm r = linspace(0, 1, P),
    t = linspace(4j, 4(j + 1), P) + noise * randn(P), at (r sin t, r cos t).

    Returns {"data": (K * P, 2) float64, "label": (K * P,) int64}, class by class.
    """
    if num_classes < 1 or points_per_class < 1:
        raise UserError(f"spiral: num_classes ({num_classes}) and points_per_class "
                        f"({points_per_class}) must be at least 1")
    if not (np.isfinite(noise) and noise >= 0):
        raise UserError(f"spiral: noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    p = points_per_class
    data = np.zeros((num_classes * p, 2))
    label = np.zeros(num_classes * p, np.int64)
    r = np.linspace(0.0, 1.0, p)
    for j in range(num_classes):
        t = np.linspace(4.0 * j, 4.0 * (j + 1), p) + rng.standard_normal(p) * noise
        data[j * p:(j + 1) * p, 0] = r * np.sin(t)
        data[j * p:(j + 1) * p, 1] = r * np.cos(t)
        label[j * p:(j + 1) * p] = j
    return {"data": data, "label": label}


# ---- IDX (MNIST) -----------------------------------------------------------------------

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), raw or gzipped (told by its 1f 8b magic).

    Header: bytes 0-1 zero, byte 2 the type (08 u1, 09 i1, 0B i2, 0C i4, 0D f4, 0E f8), byte 3
    the number of dimensions, then one big-endian uint32 per dimension; then the data in C
    order. Returns the array in its native-endian dtype, shaped as the header says.

    The data is streamed straight into its final array once the header has told its size, so
    loading costs the data set's size once (no decompressed copy beside it).
    """
    with _open(path) as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        try:
            if not gzipped:
                return _read_idx_stream(raw, path)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _read_idx_stream(f, path)
        except (OSError, EOFError, zlib.error) as exc:
            if not gzipped:
                raise UserError(f"{path}: cannot read: {exc}") from None
            raise UserError(f"{path}: not a valid gzip file ({exc}); the download may be "
                            f"incomplete") from None


def _read_idx_stream(f, path) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4:
        raise UserError(f"{path}: not an IDX file: {len(magic)} bytes, shorter than the 4-byte "
                        f"magic number")
    zero, code, ndim = magic[:2], magic[2], magic[3]
    if zero != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise UserError(
            f"{path}: not an IDX file: bad magic number {magic.hex(' ')} (expected 00 00, "
            f"a type byte in {{08, 09, 0B, 0C, 0D, 0E}}, then the number of dimensions >= 1)")
    header = 4 + 4 * ndim
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise UserError(f"{path}: truncated IDX header: {ndim} dimensions need {header} "
                        f"header bytes, the file has {4 + len(raw_dims)}")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4"))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    array = np.empty(expected // dtype.itemsize, dtype)
    actual = f.readinto(memoryview(array).cast("B")) if expected else 0
    while actual < expected:  # readinto may return early on a pipe or gzip member boundary
        n = f.readinto(memoryview(array).cast("B")[actual:])
        if not n:
            break
        actual += n
    extra = len(f.read(1 << 20)) if actual == expected else 0
    if actual != expected or extra:
        what = "truncated" if actual < expected else "has extra bytes"
        if extra:
            actual += extra + len(f.read())
        raise UserError(f"{path}: {what}: the IDX header (shape {dims}, {dtype.name}) "
                        f"promises {expected} data bytes, the file has {actual}")
    array = array.astype(dtype.newbyteorder("="), copy=False).reshape(dims)
    check_finite(array, path, "data")
    return array


# ---- NPZ -------------------------------------------------------------------------------


def read_npz(path, names) -> dict[str, np.ndarray]:
    """Read the arrays `names` from an .npz archive (no pickles: object arrays are refused)."""
    names = list(names)
    try:
        archive = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise file_error(path, exc, "an .npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: holds a single array (.npy), expected an .npz archive of "
                        f"named arrays ({', '.join(names)}); save it with np.savez")
    out = {}
    with archive:
        present = list(archive.files)
        for name in names:
            if name not in present:
                raise UserError(f"{path}: no array named \"{name}\" (the layer's tops name the "
                                f"arrays to read); the file has: {', '.join(present) or 'none'}")
            try:
                array = archive[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "bject" in str(exc):
                    raise UserError(f"{path}: array \"{name}\" is an object array, which would "
                                    f"need pickle; store numbers only") from None
                raise UserError(f"{path}: array \"{name}\" cannot be read: {exc}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise UserError(f"{path}: array \"{name}\" cannot be read: {exc}") from None
            out[name] = np.ascontiguousarray(_check_numeric(array, path, name))
    check_same_length(out, path)
    return out


# ---- CSV -------------------------------------------------------------------------------


def read_csv(path, label_column: str = "label") -> dict[str, np.ndarray]:
    """Read a comma-separated file with a header row.

    The column `label_column` gives the labels (int64 when every value is whole, else
    float64); every other column is a feature: {"data": (N, F) float64, "label": (N,),
    "line": (N,) int64 the line of the file each sample was read from (for messages)}.
    """
    def check_header(header: list[str]) -> None:
        if header.count(label_column) != 1:
            what = "no" if label_column not in header else "more than one"
            raise UserError(f"{path}:1: {what} column named \"{label_column}\" (the "
                            f"label_column); the columns are: {', '.join(header)}")
        if len(header) < 2:
            raise UserError(f"{path}:1: only the label column \"{label_column}\"; "
                            f"a feature column is needed too")

    header, table, lines = read_csv_table(path, check_header)
    li = header.index(label_column)
    label = table[:, li]
    data = np.ascontiguousarray(np.delete(table, li, axis=1))
    if np.all(label == np.round(label)):
        label = label.astype(np.int64)
    return {"data": data, "label": label, "line": lines}


def read_csv_table(path, check_header: Callable[[list[str]], None] | None = None
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The header (names stripped), every data row as numbers and the line each row stands on:
    (header, (N, columns) float64, (N,) int64). Blank lines are skipped. `check_header`, if
    given, sees the header before any row is read.

    Raises UserError naming the file, and the line and column where it applies: an empty
    file, a row with another number of cells than the header, a cell that is not a number or
    is NaN or infinite, no data rows, an unreadable file.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise UserError(f"{path}: empty file; expected a header row naming the columns")
            header = [h.strip() for h in header]
            if check_header is not None:
                check_header(header)
            values, lines = [], []
            for row in rows:
                line = rows.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(header):
                    raise UserError(f"{path}:{line}: {len(row)} cells, the header has "
                                    f"{len(header)} columns")
                parsed = []
                for col, cell in zip(header, row):
                    try:
                        v = float(cell)
                    except ValueError:
                        raise UserError(f"{path}:{line}: column \"{col}\": {cell!r} is not a "
                                        f"number") from None
                    if not np.isfinite(v):
                        raise UserError(f"{path}:{line}: column \"{col}\": {cell.strip()!r} is "
                                        f"NaN or infinite; clean the data first")
                    parsed.append(v)
                values.append(parsed)
                lines.append(line)
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, exc, "a CSV file") from None
    except csv.Error as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    if not values:
        raise UserError(f"{path}: a header row but no data rows")
    return header, np.array(values, dtype=np.float64), np.array(lines, np.int64)


# ---- Fashion-MNIST ---------------------------------------------------------------------

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's `dataset-fashion-mnist` package installs the (gzipped) IDX files."""

_FASHION_PREFIX = {"train": "train", "test": "t10k"}
_fashion_cache: dict[tuple, dict[str, np.ndarray]] = {}


def fashion_mnist_dirs() -> list[Path]:
    """The folders searched, in order: $LAYERFLOW_DATA/fashion-mnist, then the system one."""
    dirs = []
    if os.environ.get("LAYERFLOW_DATA"):
        dirs.append(Path(os.environ["LAYERFLOW_DATA"]).expanduser() / "fashion-mnist")
    dirs.append(Path(FASHION_MNIST_SYSTEM_DIR))
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist(split: str) -> dict[str, np.ndarray]:
    """Zalando's Fashion-MNIST, split "train" (60000) or "test" (10000).

    Returns {"data": (N, 1, 28, 28) uint8, "label": (N,) uint8}, read once per process (the
    arrays are shared and read-only).
    """
    if split not in _FASHION_PREFIX:
        raise UserError(f"fashion-mnist: unknown split {split!r}; use train or test")
    prefix = _FASHION_PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    searched = []
    for folder in fashion_mnist_dirs():
        images, labels = _find(folder, stems[0]), _find(folder, stems[1])
        if images and labels:
            break
        if images or labels:
            missing = stems[1] if images else stems[0]
            raise UserError(f"fashion-mnist: {folder} has {(images or labels).name} but not "
                            f"{missing}[.gz]; place both files there")
        searched.append(str(folder))
    else:
        raise UserError(
            f"fashion-mnist: the {split} files are not in {' nor '.join(searched)}. Install "
            f"them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or place "
            f"{stems[0]}.gz and {stems[1]}.gz (gzipped or not) from "
            f"https://github.com/zalandoresearch/fashion-mnist in "
            f"$LAYERFLOW_DATA/fashion-mnist/")
    key = (str(images.resolve()), str(labels.resolve()))
    if key not in _fashion_cache:
        data, label = read_idx(images), read_idx(labels)
        if data.dtype != np.uint8 or data.ndim != 3 or data.shape[1:] != (28, 28):
            raise UserError(f"{images}: expected uint8 images of shape (N, 28, 28), got "
                            f"{data.dtype} {data.shape}")
        if label.dtype != np.uint8 or label.ndim != 1:
            raise UserError(f"{labels}: expected uint8 labels of shape (N,), got "
                            f"{label.dtype} {label.shape}")
        if len(label) != len(data):
            raise UserError(f"fashion-mnist: {labels} has {len(label)} labels but {images} has "
                            f"{len(data)} images")
        if label.size and label.max() > 9:
            i = int(np.argmax(label > 9))
            raise UserError(f"{labels}: label {label[i]} at index {i} is not a class in 0..9")
        data = data.reshape(len(data), 1, 28, 28)
        data.flags.writeable = False
        label.flags.writeable = False
        _fashion_cache[key] = {"data": data, "label": label}
    return dict(_fashion_cache[key])


# ---- the cursor ------------------------------------------------------------------------


def share(m: int, shard: tuple[int, int]) -> tuple[int, int]:
    """[lo, hi): process r's contiguous part of a global batch of `m` samples split over s
    processes (`shard` = (r, s)); parts differ by at most one sample, and are b each when
    m = s * b (data-parallel training's per-process batch_size)."""
    r, s = shard
    return r * m // s, (r + 1) * m // s


class Cursor:
    """The indices of the samples of each batch, epoch after epoch.

    Without shuffling, samples come in stored order; with it, epoch e follows the permutation
    `default_rng([seed, e]).permutation(n)`, or the source's own `order(e, seed)` when it gives
    one (HDF5 lists shuffle files, then rows within a file). A batch that reaches the end of an
    epoch takes the rest of it, then continues with the next epoch's order. The state is
    (position, epoch, seed), plus the dataset size to catch a changed dataset on resume.

    `peek` computes a batch from any (position, epoch) without moving the cursor, so a
    prefetch thread can make the next batch while the cursor still says where the batch the
    net consumed ended (the state a snapshot saves).
    """

    def __init__(self, num_samples: int, shuffle: bool, seed: int,
                 order: Callable[[int, int], np.ndarray] | None = None):
        self.num_samples = int(num_samples)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._source_order = order
        self._orders: dict[tuple[int, int], np.ndarray] = {}  # (seed, epoch) -> order
        self._lock = threading.Lock()

    def _order(self, epoch: int) -> np.ndarray | None:
        """The order of epoch `epoch` (None: stored order); the last few are kept."""
        if not self.shuffle:
            return None
        key = (self.seed, int(epoch))
        with self._lock:
            order = self._orders.get(key)
        if order is None:
            made = self._source_order(int(epoch), self.seed) if self._source_order else None
            if made is not None:
                order = np.asarray(made, np.int64)
            else:
                order = np.random.default_rng([self.seed, int(epoch)]).permutation(
                    self.num_samples)
            with self._lock:
                while len(self._orders) >= 3:
                    self._orders.pop(next(iter(self._orders)))
                self._orders[key] = order
        return order

    def peek(self, position: int, epoch: int, size: int) -> tuple[np.ndarray, int, int]:
        """(indices of the `size` samples from (position, epoch), the position and epoch
        after them); the cursor itself does not move."""
        out = np.empty(size, np.int64)
        filled = 0
        while filled < size:
            take = min(size - filled, self.num_samples - position)
            order = self._order(epoch)
            if order is None:
                out[filled:filled + take] = np.arange(position, position + take)
            else:
                out[filled:filled + take] = order[position:position + take]
            filled += take
            position += take
            if position == self.num_samples:
                epoch += 1
                position = 0
        return out, position, epoch

    def next(self, out: np.ndarray) -> np.ndarray:
        """Fill `out` (int64, one entry per sample of the batch) with the next indices."""
        out[:], self.position, self.epoch = self.peek(self.position, self.epoch, len(out))
        return out

    def rewind(self) -> None:
        """Back to the first sample of the first epoch's order (a test pass starts there)."""
        self.position, self.epoch = 0, 0

    def state(self) -> dict[str, np.ndarray]:
        return {"cursor": np.array([self.position], np.int64),
                "epoch": np.array([self.epoch], np.int64),
                "seed": np.array([self.seed], np.int64),
                "num_samples": np.array([self.num_samples], np.int64)}

    def load_state(self, state: dict[str, np.ndarray], context: str = "data cursor") -> None:
        missing = [k for k in ("cursor", "epoch", "seed", "num_samples") if k not in state]
        if missing:
            raise UserError(f"{context}: the saved state lacks {', '.join(missing)}")
        position, epoch, seed, n = (int(np.asarray(state[k]).reshape(-1)[0])
                                    for k in ("cursor", "epoch", "seed", "num_samples"))
        if n != self.num_samples:
            raise UserError(f"{context}: the saved state is for a dataset of {n} samples, the "
                            f"data now has {self.num_samples}; the data changed since the "
                            f"snapshot")
        if not (0 <= position < n and epoch >= 0):
            raise UserError(f"{context}: invalid saved state (position {position}, epoch "
                            f"{epoch}, {n} samples)")
        self.position, self.epoch, self.seed = position, epoch, seed


# ---- prefetch ----------------------------------------------------------------------------


class Prefetcher:
    """One job made ahead in a background thread: the next batch of a data layer, as Caffe's
    data layers prefetch theirs while the net computes.

    `submit(key, make)` starts `make(key)` in a new thread (after waiting for the previous job);
    `take(key)` waits for the job and returns its result when it was made for `key`, else None
    (the caller makes the batch itself: the layer was rewound, resized or restored meanwhile).
    Whatever the job raised is raised by `take`, in the caller's thread, when the job was for
    `key`; a dropped job's error is dropped with it (the caller's own attempt raises it again).
    The job always ends (its exceptions are caught), so `take` never waits forever on a failed
    job. The thread is not a daemon: at exit the interpreter lets a batch in flight finish
    rather than kill it mid-read.
    """

    def __init__(self, name: str):
        self.name = name
        self._thread: threading.Thread | None = None
        self._key = None
        self._result = None
        self._error: BaseException | None = None

    def submit(self, key, make: Callable) -> None:
        self.wait()
        self._key, self._result, self._error = key, None, None

        def job():
            try:
                self._result = make(key)
            except BaseException as exc:  # noqa: BLE001  (handed to the main thread)
                self._error = exc

        self._thread = threading.Thread(target=job, name=f"layerflow-prefetch-{self.name}")
        self._thread.start()

    def wait(self) -> None:
        """Wait for the job in flight, if any (its result is kept for `take`)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def take(self, key):
        """The result of the job made for `key` (raising its error), or None."""
        if self._key is None:
            return None
        self.wait()
        made_for, result, error = self._key, self._result, self._error
        self._key = self._result = self._error = None
        if made_for != key:
            return None
        if error is not None:
            raise error
        return result

    def close(self) -> None:
        """Wait for the job in flight and drop it."""
        self.wait()
        self._key = self._result = self._error = None
