"""Snapshots on disk: weights and solver state as safetensors, written atomically.

    <prefix>_iter_<N>.safetensors   weights, keys "<layer>.<param>"
    <prefix>_iter_<N>.solverstate   solver state (iteration, history, RNG/data cursors) plus
                                    metadata: the weights file's *name* (not its path, so a
                                    moved folder still resumes) and the net's fingerprint

Write order: weights, then state; each through a temporary file in the same folder, fsync and
os.replace. A snapshot counts as complete only when its state file loads and names a weights
file that loads, so a crash at any moment leaves the previous snapshot usable.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .errors import UserError

FORMAT = "layerflow-snapshot-1"


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
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def save_weights(path: Path, weights: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    atomic_write(path, st_save(_contiguous(weights), metadata=meta))


def read_safetensors(path: Path, what: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Load a safetensors file; any problem is a UserError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc}") from None
    try:
        arrays = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, Exception) as exc:
        raise UserError(f"{path}: not a valid {what} file (truncated or corrupted?): "
                        f"{type(exc).__name__}: {exc}") from None
    return arrays, header.get("__metadata__") or {}


def load_weights(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = read_safetensors(path, "weights")
    return arrays


def snapshot_paths(prefix: Path, it: int) -> tuple[Path, Path]:
    base = f"{prefix}_iter_{it}"
    return Path(base + ".safetensors"), Path(base + ".solverstate")


def save_snapshot(prefix: Path, it: int, weights: dict[str, np.ndarray],
                  state: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write weights then solver state for iteration `it`; returns the state file's path."""
    wpath, spath = snapshot_paths(prefix, it)
    save_weights(wpath, weights, {"iter": it})
    meta = {"format": FORMAT, "weights": wpath.name, **metadata}
    atomic_write(spath, st_save(_contiguous(state), metadata=meta))
    return spath


def list_snapshots(prefix: Path) -> list[tuple[int, Path]]:
    """(iteration, state path) of every solverstate under `prefix`, newest first."""
    prefix = Path(prefix)
    folder = prefix.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(prefix.name) + r"_iter_(\d+)\.solverstate$")
    found = [(int(m.group(1)), folder / name) for name in os.listdir(folder)
             if (m := pattern.match(name))]
    return sorted(found, reverse=True)


def load_snapshot(state_path: Path) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(state arrays, metadata, weights) of a snapshot; a UserError if anything is wrong."""
    state_path = Path(state_path)
    if state_path.suffix == ".safetensors":
        raise UserError(f"{state_path}: this is a weights file; resume from the matching "
                        f".solverstate (or use --weights to start from these weights)")
    state, meta = read_safetensors(state_path, "solver state")
    if meta.get("format") != FORMAT or "weights" not in meta:
        raise UserError(f"{state_path}: not a layerflow solver state")
    weights_path = state_path.parent / meta["weights"]
    weights = load_weights(weights_path)
    return state, meta, weights


def remove_snapshot(state_path: Path) -> None:
    """Delete one snapshot's files (state first, so a crash never leaves state sans weights)."""
    state_path = Path(state_path)
    wpath = state_path.with_suffix(".safetensors")
    for p in (state_path, wpath):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
