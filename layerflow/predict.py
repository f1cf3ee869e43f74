"""`layerflow predict`: a trained model's top-k classes for new inputs (Caffe's `classification`
tool and pycaffe's Classifier, on the deploy net of `layerflow.deploy`).

Inputs, files or folders (a folder: the files below it with a known suffix, sorted by path):
    .png .jpg .jpeg .bmp .gif .tif .tiff .webp .pgm .ppm   one sample each, read by Pillow and
        converted to the net's input: gray (C = 1 or no channel axis) or RGB (C = 3), resized
        to its H x W (bilinear), pixel values 0-255, as a Data layer stores images
    .npy   an array of samples (N, ...) or one sample, raw as the data set stores them; for a
           net of gray images (1, H, W) also (N, H, W) and (H, W), as MNIST-style data is kept
    .npz   the array named after the net's input (or the only one), and the labels when an
           array is named as the training data's labels
    .csv   a header row; the training CSV's columns, the label column optional
Samples reach the deploy net raw: its Transform layer does what the Data layer did in training.
Samples are named after their file: "a.png", "x.npy[3]", "x.csv:5" (line 5).

Every file is read before any prediction; one that cannot be used (unreadable, a wrong number
of CSV columns, samples of a shape the net cannot take, labels that are not classes) is listed
in `failed` with a message naming it, and the others are still predicted.
"""
from __future__ import annotations

import csv
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .builder import deploy_net
from .data import check_finite, read_csv_table
from .errors import UserError, file_error

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm")
ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


@dataclass
class Samples:
    """The samples of one input file: `count` of them, `names`, and `load()` -> (x, labels)
    with x (count, ...) raw values and labels (count,) or None. Images load when predicted."""

    file: str
    names: list[str]
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]]

    @property
    def count(self) -> int:
        return len(self.names)


class Predictor:
    """A deploy net with its weights, and how to read inputs for it."""

    def __init__(self, net, top_k: int = 5, class_names: list[str] | None = None,
                 names_file: str | Path | None = None):
        if len(net.inputs) != 1:
            raise UserError(f"net {net.name}: predict feeds one input, the deploy net has "
                            f"{len(net.inputs)}: {', '.join(net.inputs) or '(none)'}")
        if len(net.outputs) != 1:
            raise UserError(f"net {net.name}: predict ranks the classes of one output, the "
                            f"deploy net has {len(net.outputs)}: {', '.join(net.outputs)}")
        self.net = net
        self.input = net.inputs[0]
        self.output = net.outputs[0]
        self.sample_shape = tuple(net.blobs[self.input].shape[1:])
        self.classes = self._classes(tuple(net.blobs[self.output].shape))
        if self.classes is None:
            raise UserError(f"net {net.name}: predict ranks classes, but output {self.output} "
                            f"has shape {net.blobs[self.output].shape}, not (N, classes)")
        self.top_k = min(top_k, self.classes)
        self.label_name = net.config.labels.get(self.input, "label")
        if class_names is not None and len(class_names) != self.classes:
            where = f"{names_file}: " if names_file is not None else ""
            raise UserError(f"{where}{len(class_names)} class names for the {self.classes} "
                            f"classes of output {self.output}")
        self.class_names = class_names
        producer = [layer for layer, _, tops in net.wiring()
                    if any(t.name == self.output for t in tops)][-1]
        self.kind = "prob" if producer.probabilities else "score"
        self._shapes: dict[tuple[int, ...], str | None] = {}
        # the first forward loads every kernel (Numba's cache): do it before anything is timed
        net.forward({self.input: np.zeros((1,) + self.sample_shape, net.dtype)})

    @staticmethod
    def _classes(shape: tuple[int, ...]) -> int | None:
        """C of an (N, C) output, trailing axes of size 1 allowed (global pooling nets)."""
        if len(shape) < 2 or any(d != 1 for d in shape[2:]):
            return None
        return shape[1]

    # -- reading inputs -------------------------------------------------------------------
    def expand(self, paths: list[str | Path]) -> tuple[list[Path], list[dict]]:
        """The files the inputs name (folders expanded), and failures of missing inputs."""
        files, failed = [], []
        for path in map(Path, paths):
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file()
                               and not p.name.startswith(".")
                               and p.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES)
                if not found:
                    failed.append(_failure(path, "a folder with no image, .npy, .npz or .csv "
                                                 "file in it"))
                files += found
            elif path.exists():
                files.append(path)
            else:
                failed.append(_failure(path, "no such file or folder"))
        return files, failed

    def read(self, file: Path) -> Samples:
        """The samples of one file; a UserError naming the file if it cannot be used."""
        suffix = file.suffix.lower()
        if suffix == ".npy":
            x = _load_npy(file)
            return self._array_samples(file, x, None)
        if suffix == ".npz":
            x, labels = self._load_npz(file)
            return self._array_samples(file, x, labels)
        if suffix == ".csv":
            return self._csv_samples(file)
        if suffix not in IMAGE_SUFFIXES:
            raise UserError(f"{file}: not an input predict reads: images "
                            f"({' '.join(IMAGE_SUFFIXES)}), .npy, .npz or .csv")
        self._image_shape(file)
        return Samples(str(file), [str(file)],
                       lambda: (self._read_image(file)[None], None))

    def _array_samples(self, file: Path, x: np.ndarray, labels) -> Samples:
        if x.dtype.kind not in "iuf" and x.dtype.kind != "b":
            raise UserError(f"{file}: holds {x.dtype} values; samples must be numbers")
        check_finite(x, file, "samples")
        nd = len(self.sample_shape)
        gray = nd == 3 and self.sample_shape[0] == 1  # (1, H, W): IDX and MNIST-style arrays
        if gray and x.ndim == 3 and x.shape[1:] == self.sample_shape[1:] and \
                x.shape != self.sample_shape:
            x = x[:, None]  # (N, H, W) gray images, as Fashion-MNIST stores them
        elif gray and x.shape == self.sample_shape[1:]:
            x = x[None, None]  # one (H, W) gray image
        elif x.ndim == nd:
            x = x[None]  # one sample
        elif x.ndim != nd + 1:
            raise UserError(f"{file}: an array of shape {x.shape}; net input {self.input} "
                            f"takes samples of shape {self.sample_shape}: give one sample or "
                            f"an array (N, {', '.join(map(str, self.sample_shape))})")
        self.check_shape(file, x.shape[1:])
        if labels is not None:
            labels = self._labels(file, labels, len(x), lambda i: f"{file}: row {i}")
        names = [f"{file}[{i}]" for i in range(len(x))]
        return Samples(str(file), names, lambda: (x, labels))

    def _load_npz(self, file: Path) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            archive = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise UserError(f"{file}: not a readable .npz archive ({exc})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UserError(f"{file}: holds a single array; name it .npy")
        with archive:
            names = list(archive.files)
            data = [n for n in names if n != self.label_name]
            if self.input in names:
                key = self.input
            elif len(data) == 1:
                key = data[0]
            else:
                raise UserError(f"{file}: no array named \"{self.input}\" (the net's input) "
                                f"and more than one other array: {', '.join(names)}")
            try:
                x = archive[key]
                labels = archive[self.label_name] if self.label_name in names else None
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise UserError(f"{file}: cannot read array \"{key}\": {exc}") from None
        return x, labels

    def _csv_samples(self, file: Path) -> Samples:
        features = int(np.prod(self.sample_shape))
        header, table, lines = read_csv_table(file)
        label = header.index(self.label_name) if self.label_name in header else None
        columns = [h for i, h in enumerate(header) if i != label]
        if len(columns) != features:
            with_label = f" besides the label column \"{self.label_name}\"" if label is not \
                None else f" (no label column \"{self.label_name}\")"
            raise UserError(f"{file}:1: {len(columns)} feature columns{with_label}, but net "
                            f"input {self.input} takes {features} values per sample "
                            f"{self.sample_shape}")
        x = np.delete(table, label, axis=1) if label is not None else table
        x = x.reshape((len(table),) + self.sample_shape)
        labels = None
        if label is not None:
            labels = self._labels(file, table[:, label], len(table),
                                  lambda i: f"{file}:{lines[i]}")
        names = [f"{file}:{line}" for line in lines]
        return Samples(str(file), names, lambda: (x, labels))

    def _labels(self, file, labels, n: int, where: Callable[[int], str]) -> np.ndarray:
        """Labels as int64 class indices; `where(i)` names sample i in messages."""
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != n:
            raise UserError(f"{file}: {len(labels)} labels for {n} samples")
        if labels.dtype.kind not in "iuf":
            raise UserError(f"{file}: labels of dtype {labels.dtype}; labels are class indices")
        ok = (labels >= 0) & (labels < self.classes)
        if labels.dtype.kind == "f":
            ok &= labels == np.floor(labels)
        if not ok.all():
            i = int(np.argmin(ok))
            raise UserError(f"{where(i)}: label {labels[i].item()!r} is not a class index in "
                            f"[0, {self.classes})")
        return labels.astype(np.int64)

    def _image_shape(self, file: Path) -> tuple[int, int, int | None]:
        """(H, W, C) images are converted to; C None: no channel axis."""
        s = self.sample_shape
        if len(s) == 3 and s[0] in (1, 3):
            return s[1], s[2], s[0]
        if len(s) == 2:
            return s[0], s[1], None
        raise UserError(f"{file}: an image, but net input {self.input} takes samples of shape "
                        f"{s}, not images (C, H, W) with C 1 or 3, or (H, W)")

    def _read_image(self, file: Path) -> np.ndarray:
        height, width, channels = self._image_shape(file)
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            raise UserError(f"{file}: reading images needs Pillow: pip install "
                            f"'layerflow[images]'") from None
        try:
            with Image.open(file) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise file_error(file, exc, "an image") from None
            raise UserError(f"{file}: not an image Pillow can read ({exc})") from None
        if channels == 3:
            return pixels.transpose(2, 0, 1)
        return pixels[None] if channels == 1 else pixels

    def check_shape(self, file, shape: tuple[int, ...]) -> None:
        """Raise a UserError naming `file` if the net cannot take samples of `shape`."""
        shape = tuple(shape)
        if shape not in self._shapes:
            self._shapes[shape] = None
            if shape != self.sample_shape:
                try:
                    self.net.feed({self.input: np.zeros((1,) + shape, self.net.dtype)})
                    out = self.net.blobs[self.output].shape
                    if self._classes(tuple(out)) != self.classes:
                        self._shapes[shape] = (f"gives output {self.output} of shape {out}, "
                                               f"not (N, {self.classes})")
                except UserError as err:
                    self._shapes[shape] = f"the net cannot take them: {err}"
        problem = self._shapes[shape]
        if problem is not None:
            raise UserError(f"{file}: samples of shape {shape}: {problem}")

    # -- predicting -----------------------------------------------------------------------
    def batches(self, sources: list[Samples], batch_size: int, failed: list[dict]
                ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(names, x, labels) batches of up to `batch_size` samples of one shape, in order,
        labels -1 where there is none; a file whose samples cannot be loaded goes to
        `failed`."""
        pending: list[tuple[list[str], np.ndarray, np.ndarray]] = []
        count = 0

        def flush():
            names = [n for part in pending for n in part[0]]
            if len(pending) == 1:
                x, labels = pending[0][1], pending[0][2]
            else:
                x = np.concatenate([p[1] for p in pending])
                labels = np.concatenate([p[2] for p in pending])
            pending.clear()
            return names, x, labels

        for src in sources:
            try:
                x, y = src.load()
            except UserError as err:
                failed.append({"file": src.file, "error": str(err)})
                continue
            start = 0
            while start < len(x):
                if pending and pending[0][1].shape[1:] != x.shape[1:]:
                    yield flush()
                    count = 0
                stop = start + min(batch_size - count, len(x) - start)
                ys = y[start:stop] if y is not None else np.full(stop - start, -1, np.int64)
                pending.append((src.names[start:stop], x[start:stop], ys))
                count += stop - start
                start = stop
                if count == batch_size:
                    yield flush()
                    count = 0
        if pending:
            yield flush()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The output for a batch of raw samples, as (N, classes)."""
        out = self.net.forward({self.input: x})[self.output]
        return out.reshape(len(x), self.classes)

    def top(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(classes, values) of the top_k of each row, best first: (N, k) each."""
        k = self.top_k
        if k < out.shape[1]:
            idx = np.argpartition(-out, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(out.shape[1]), out.shape).copy()
        vals = np.take_along_axis(out, idx, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _failure(path, message: str) -> dict:
    return {"file": str(path), "error": f"{path}: {message}"}


def _load_npy(file: Path) -> np.ndarray:
    try:
        x = np.load(file, allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"{file}: not a readable .npy array ({exc})") from None
    except OSError as exc:
        raise file_error(file, exc, "an .npy file") from None
    if not isinstance(x, np.ndarray):
        raise UserError(f"{file}: an .npz archive named .npy")
    return x


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (blank lines at the end ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, exc, "a text file of class names") from None
    names = [line.strip() for line in text.rstrip("\n").split("\n")]
    if not names or names == [""]:
        raise UserError(f"{path}: no class names (one per line)")
    return names


def predict(net_path: str | Path, weights: str | Path, inputs: list[str | Path], *,
            top_k: int = 5, labels: str | Path | None = None, batch_size: int = 64,
            plugins: list[str] | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Engine of `layerflow predict`: the top_k classes of every sample of `inputs`.

    Returns {"net", "input", "output", "kind" ("prob" or "score"), "classes", "class_names",
    "top_k", "names" (one per sample), "labels" (int64, -1 where none), "top_classes" and
    "top_values" ((samples, top_k), best first), "failed": [{"file", "error"}], "accuracy"
    ({"top1", "topk", "labelled"} or None), "samples", "elapsed_s", "samples_per_s"};
    `rows(result)` gives them sample by sample. `progress(done, total)` is called after every
    batch. Raises a UserError for a problem of the net, the weights or the options; a bad
    input file is a failure of that file only. The time is that of the batches (reading the
    files and the first forward, which loads the kernels, come before).
    """
    if top_k < 1 or batch_size < 1:
        raise UserError(f"--top-k and --batch-size must be at least 1 (got {top_k} and "
                        f"{batch_size})")
    class_names = read_class_names(labels) if labels is not None else None
    predictor = Predictor(deploy_net(net_path, weights, plugins=plugins), top_k, class_names,
                          labels)
    files, failed = predictor.expand(inputs)
    sources = []
    for file in files:
        try:
            sources.append(predictor.read(file))
        except UserError as err:
            failed.append({"file": str(file), "error": str(err)})
    total = sum(s.count for s in sources)
    names: list[str] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0
    t0 = time.perf_counter()
    for batch_names, x, ys in predictor.batches(sources, batch_size, failed):
        idx, vals = predictor.top(predictor.forward(x))
        names += batch_names
        parts.append((ys, idx, vals))
        done += len(x)
        if progress is not None:
            progress(done, total)
    elapsed = time.perf_counter() - t0
    k = predictor.top_k
    found = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    top_classes = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, k), int)
    top_values = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, k))
    accuracy = None
    has = found >= 0
    if has.any():
        right = top_classes[has] == found[has, None]
        accuracy = {"top1": float(right[:, 0].mean()), "topk": float(right.any(1).mean()),
                    "labelled": int(has.sum())}
    return {"net": predictor.net.name, "input": predictor.input, "output": predictor.output,
            "kind": predictor.kind, "classes": predictor.classes, "class_names": class_names,
            "top_k": k, "names": names, "labels": found, "top_classes": top_classes,
            "top_values": top_values, "failed": failed, "accuracy": accuracy,
            "samples": len(names), "elapsed_s": elapsed,
            "samples_per_s": len(names) / elapsed if elapsed > 0 else None}


def rows(result: dict) -> Iterator[dict]:
    """{"input", "label" (None where none), "top": [(class, value)...]} per sample."""
    for name, label, classes, values in zip(result["names"], result["labels"].tolist(),
                                            result["top_classes"].tolist(),
                                            result["top_values"].tolist()):
        yield {"input": name, "label": None if label < 0 else label,
               "top": list(zip(classes, values))}


# ---- output ----------------------------------------------------------------------------

def _class(result: dict, c: int) -> str:
    names = result["class_names"]
    return names[c] if names else str(c)


def summary(result: dict) -> dict:
    """What is said after the rows: counts, accuracy, failures, speed."""
    return {"net": result["net"], "samples": result["samples"], "accuracy": result["accuracy"],
            "top_k": result["top_k"], "failed": result["failed"],
            "elapsed_s": round(result["elapsed_s"], 4),
            "samples_per_s": (round(result["samples_per_s"], 1)
                              if result["samples_per_s"] else None)}


def format_summary(result: dict) -> str:
    lines = []
    acc = result["accuracy"]
    if acc is not None:
        topk = f", top-{result['top_k']} {acc['topk']:.4f}" if result["top_k"] > 1 else ""
        lines.append(f"accuracy: top-1 {acc['top1']:.4f}{topk} over {acc['labelled']} "
                     f"labelled samples")
    rate = f" ({result['samples_per_s']:,.0f} samples/s)" if result["samples_per_s"] else ""
    lines.append(f"{result['samples']} samples in {result['elapsed_s']:.3f} s{rate}")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """One row per sample: input, label (when any sample has one), the top-k with values."""
    from .tools import table

    kind = result["kind"]
    labelled = bool((result["labels"] >= 0).any())
    header = ["input"] + (["label"] if labelled else []) + [
        f"top {i + 1} ({kind})" for i in range(result["top_k"])]
    cells = []
    for r in rows(result):
        label = [_class(result, r["label"]) if r["label"] is not None else "-"] if labelled \
            else []
        cells.append([r["input"]] + label + [f"{_class(result, c)} {v:.4f}" for c, v in r["top"]])
    return table(header, cells, "l" * len(header))


def json_lines(result: dict) -> Iterator[str]:
    """One JSON object per sample ({"input", "label", "top": [{"class", "name", kind}]}),
    then {"summary": ...}."""
    import json

    kind, names = result["kind"], result["class_names"]
    for r in rows(result):
        top = []
        for c, v in r["top"]:
            entry = {"class": c}
            if names:
                entry["name"] = names[c]
            entry[kind] = v
            top.append(entry)
        record = {"input": r["input"]}
        if r["label"] is not None:
            record["label"] = r["label"]
            if names:
                record["label_name"] = names[r["label"]]
        record["top"] = top
        yield json.dumps(record)
    yield json.dumps({"summary": summary(result)})


def write_csv(result: dict, path: str | Path) -> None:
    """input, label (when any), then class_i, name_i (with class names), <kind>_i per rank."""
    kind, names = result["kind"], result["class_names"]
    labelled = bool((result["labels"] >= 0).any())
    header = ["input"] + (["label"] if labelled else [])
    for i in range(1, result["top_k"] + 1):
        header += [f"class_{i}"] + ([f"name_{i}"] if names else []) + [f"{kind}_{i}"]
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for r in rows(result):
                row = [r["input"]] + ([("" if r["label"] is None else r["label"])]
                                      if labelled else [])
                for c, v in r["top"]:
                    row += [c] + ([names[c]] if names else []) + [repr(float(v))]
                writer.writerow(row)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
