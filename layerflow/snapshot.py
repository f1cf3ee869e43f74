"""Snapshots on disk: weights and solver state as safetensors, written atomically.

    <prefix>_iter_<N>.safetensors   weights, keys "<layer>.<param>"
    <prefix>_iter_<N>.solverstate   solver state (iteration, history, RNG states, data cursors)
                                    plus metadata: the weights file's *name* (not its path, so
                                    a moved folder still resumes), SHA-256 digests of both
                                    files' arrays, and the net's fingerprint

Write order: (remove a stale state file of the same iteration), weights, then state; each
through a temporary file in the same folder, fsync, os.replace, fsync of the folder. So a
state file exists only once both files are complete: a crash (even kill -9) at any moment
leaves either the new snapshot or no state file for it, and every older snapshot intact.
Stale temporary files of a killed write are removed by `remove_temporaries`.

Reading checks everything: both files parse, the digests match (a flipped byte is caught),
the weights file is the one the state was written with. Any failure is a `SnapshotError`
(a UserError) naming the file at fault.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .errors import UserError, file_error

FORMAT = "layerflow-snapshot-1"


class SnapshotError(UserError):
    """A snapshot file that cannot be used: missing, truncated, corrupted, not ours."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # asarray keeps a 0-d (scalar) param 0-d; ascontiguousarray would save it as shape (1,)
    return {k: np.asarray(v, order="C") for k, v in arrays.items()}


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of `arrays`, in name order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.asarray(arrays[key], order="C")
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_weights(path: Path, weights: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    atomic_write(path, st_save(_contiguous(weights), metadata=meta))


def read_safetensors(path: Path, what: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Load a safetensors file; any problem is a SnapshotError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise file_error(path, exc, f"a {what} file", f"{what} file", SnapshotError) from None
    try:
        arrays = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise SnapshotError(f"{path}: not a valid {what} file (truncated or corrupted?): "
                            f"{type(exc).__name__}: {exc}") from None
    return arrays, header.get("__metadata__") or {}


def load_weights(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = read_safetensors(path, "weights")
    return arrays


def weights_of(state_path: Path) -> Path:
    """The weights file written beside a solver state (same name, .safetensors)."""
    return Path(state_path).with_suffix(".safetensors")


def weights_of_state(path: Path) -> Path | None:
    """For a solver state, the weights file it was written with (named in its metadata, in
    its folder); None for any other file. A state whose weights file is gone is an error."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "state_sha256" not in meta or "weights" not in meta:
        return None
    weights = path.parent / meta["weights"]
    if not weights.is_file():
        raise SnapshotError(f"{path}: is a solver state, and the weights file it was "
                            f"written with, {weights}, is missing; give a .safetensors "
                            f"weights file")
    return weights


def snapshot_paths(prefix: Path, it: int) -> tuple[Path, Path]:
    base = f"{prefix}_iter_{it}"
    return Path(base + ".safetensors"), Path(base + ".solverstate")


def save_snapshot(prefix: Path, it: int, weights: dict[str, np.ndarray],
                  state: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write weights then solver state for iteration `it`; returns the state file's path."""
    wpath, spath = snapshot_paths(prefix, it)
    weights = _contiguous(weights)
    state = _contiguous(state)
    if spath.exists():  # an older run's state must never pair with the new weights
        spath.unlink()
        _fsync_dir(spath.parent)
    save_weights(wpath, weights, {"iter": it})
    meta = {"format": FORMAT, "weights": wpath.name, "weights_sha256": digest(weights),
            "state_sha256": digest(state), "written_ns": str(time.time_ns()),
            **{k: str(v) for k, v in metadata.items()}}
    atomic_write(spath, st_save(state, metadata=meta))
    return spath


def _files(prefix: Path, tail: str) -> list[tuple[re.Match, Path]]:
    """(match, path) of the files in prefix's folder named `<prefix name><tail>` (a regex)."""
    prefix = Path(prefix)
    folder = prefix.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(prefix.name) + tail + "$")
    return [(m, folder / name) for name in os.listdir(folder) if (m := pattern.match(name))]


def list_snapshots(prefix: Path) -> list[tuple[int, Path]]:
    """(iteration, state path) of every solverstate under `prefix`, newest first."""
    states = _files(prefix, r"_iter_(\d+)\.solverstate")
    return sorted(((int(m.group(1)), path) for m, path in states), reverse=True)


def by_write_time(prefix: Path) -> list[tuple[int, Path]]:
    """(iteration, state path) of every solverstate under `prefix`, the one written last
    first: by the time its metadata records (`written_ns`), else by its file's mtime, so a
    folder copied without keeping mtimes still orders right."""
    def written(item):
        it, path = item
        try:
            stamp = int(read_metadata(path).get("written_ns", ""))
        except ValueError:
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                stamp = 0
        return stamp, it

    return sorted(list_snapshots(prefix), key=written, reverse=True)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, reading only its header; {} if unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 1 << 24:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


# the files a run writes under its prefix (besides temporaries)
_RUN_FILES = r"(_iter_\d+\.(safetensors|solverstate)|_metrics\.jsonl|_solver\.yaml|_net\.yaml)"


def run_files(prefix: Path) -> list[Path]:
    """The files of a run under `prefix`: snapshots, weights, the metrics log, the saved
    configuration; sorted by name."""
    return sorted(path for _, path in _files(prefix, _RUN_FILES))


def move_aside(prefix: Path) -> Path:
    """Move the files of the run under `prefix` into a new folder beside them, named after
    the time the newest of them was written: `<prefix>-run-20240611-101500/`. Returns it."""
    files = run_files(prefix)
    prefix = Path(prefix)
    newest = max((f.stat().st_mtime for f in files), default=time.time())
    base = f"{prefix.name}-run-{datetime.fromtimestamp(newest):%Y%m%d-%H%M%S}"
    folder, n = prefix.parent / base, 1
    while folder.exists():
        n += 1
        folder = prefix.parent / f"{base}-{n}"
    folder.mkdir(parents=True)
    for f in files:
        os.replace(f, folder / f.name)
    _fsync_dir(prefix.parent)
    return folder


def load_snapshot(state_path: Path) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(state arrays, metadata, weights) of a snapshot; a SnapshotError if anything is wrong."""
    state_path = Path(state_path)
    if state_path.suffix == ".safetensors":
        raise SnapshotError(f"{state_path}: this is a weights file; resume from the matching "
                            f".solverstate (or use --weights to start from these weights)")
    state, meta = read_safetensors(state_path, "solver state")
    if meta.get("format") != FORMAT or "weights" not in meta:
        raise SnapshotError(f"{state_path}: not a layerflow solver state")
    if "state_sha256" in meta and digest(state) != meta["state_sha256"]:
        raise SnapshotError(f"{state_path}: corrupted: its arrays do not match their checksum")
    weights_path = state_path.parent / meta["weights"]
    weights = load_weights(weights_path)
    if "weights_sha256" in meta and digest(weights) != meta["weights_sha256"]:
        raise SnapshotError(f"{weights_path}: corrupted, or not the weights {state_path.name} "
                            f"was written with: its arrays do not match the checksum")
    return state, meta, weights


def check_fingerprint(path: Path, meta: dict[str, str], mine: dict) -> None:
    """A UserError unless the snapshot at `path` (its metadata `meta`) was written by a solver
    of the same type over params of the same names and shapes as `mine` (a solver's
    `fingerprint()`); the first param that differs, in net order, is named."""
    try:
        theirs = json.loads(meta.get("fingerprint", "{}"))
    except json.JSONDecodeError:
        raise SnapshotError(f"{path}: corrupted metadata (fingerprint)") from None
    if theirs.get("params") != mine["params"]:
        theirs_params = {name: shape for name, shape in theirs.get("params", [])}
        for name, shape in mine["params"]:
            if theirs_params.get(name) != shape:
                found = theirs_params.get(name)
                raise UserError(
                    f"{path}: written by a different net: layer {name.rsplit('.', 1)[0]}: "
                    f"param {name} is {tuple(found) if found else 'missing'} in the "
                    f"snapshot but {tuple(shape)} in this net")
        extra = [n for n in theirs_params if n not in dict(mine["params"])]
        raise UserError(f"{path}: written by a different net: the snapshot has params "
                        f"this net lacks: {', '.join(extra)}")
    if theirs.get("solver") != mine["solver"]:
        raise UserError(f"{path}: written by solver type {theirs.get('solver')}, this "
                        f"solver is {mine['solver']}; resume with the same type")


def remove_snapshot(state_path: Path) -> None:
    """Delete one snapshot's files (state first, so a crash never leaves state sans weights)."""
    state_path = Path(state_path)
    state_path.unlink(missing_ok=True)
    state_path.with_suffix(".safetensors").unlink(missing_ok=True)


def prune(prefix: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` snapshots under `prefix` (oldest first); also weights
    files older than the oldest kept one that lost their state. Returns the removed states."""
    if keep <= 0:
        return []
    found = list_snapshots(prefix)
    removed = []
    for _, path in reversed(found[keep:]):
        remove_snapshot(path)
        removed.append(path)
    if len(found) >= keep:
        oldest_kept = found[:keep][-1][0]
        for m, path in _files(prefix, r"_iter_(\d+)\.safetensors"):
            if int(m.group(1)) < oldest_kept and not path.with_suffix(".solverstate").exists():
                path.unlink(missing_ok=True)
    return removed


def remove_temporaries(prefix: Path) -> list[Path]:
    """Delete the temporary files a killed snapshot write left under `prefix`."""
    prefix = Path(prefix)
    # atomic_write names them ".<final name>.<random>.tmp" in the same folder
    temporaries = _files(prefix.with_name("." + prefix.name),
                         r"_iter_\d+\.(safetensors|solverstate)\..*\.tmp")
    for _, path in temporaries:
        path.unlink(missing_ok=True)
    return [path for _, path in temporaries]
