"""`--weights`: initial params from weights files, Caffe's way.

    --weights a.safetensors                 one file
    --weights base.caffemodel,head.safetensors   a comma-separated list, applied in order: a
                                            later file overrides what an earlier one set

Params are matched by layer name (Caffe's CopyTrainedLayersFrom); layers of a file that the
net does not have are reported (Caffe's "Ignoring source layer"), not an error. A .caffemodel
(the `caffe` extra) is read through layerflow.caffe; its legacy blob shapes (an InnerProduct
weight stored 1 x 1 x N x K) are reshaped to the net's param shape when they differ from it
only by leading 1s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .snapshot import load_weights


def split_list(spec) -> list[Path]:
    """`a,b` (or a list of such) -> [Path(a), Path(b)]."""
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    return [Path(p.strip()) for item in items for p in str(item).split(",") if p.strip()]


def read_weights(path: str | Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """(`<layer>.<param>` -> array, notes) of a .safetensors or .caffemodel file."""
    path = Path(path)
    if path.suffix.lower() == ".caffemodel":
        from .caffe.weights import caffemodel_arrays

        return caffemodel_arrays(path)
    return load_weights(path), []


def _right_aligned_equal(a: tuple, b: tuple) -> bool:
    strip = lambda s: tuple(s[next((i for i, d in enumerate(s) if d != 1), len(s)):])  # noqa: E731
    return strip(tuple(a)) == strip(tuple(b))


def conform(weights: dict[str, np.ndarray], net) -> dict[str, np.ndarray]:
    """Reshape arrays whose shape equals the net's param shape up to leading 1s."""
    mine = net.state_dict()
    out = {}
    for key, arr in weights.items():
        target = mine.get(key)
        if target is not None and arr.shape != target.shape and arr.size == target.size \
                and _right_aligned_equal(arr.shape, target.shape):
            arr = arr.reshape(target.shape)
        out[key] = arr
    return out


def copy_weight_files(net, spec) -> tuple[list[str], list[str]]:
    """Copy the files of `spec` (a path, a comma-separated list or a list) into `net`, in
    order. Returns (keys copied, notes: source layers ignored and blobs skipped)."""
    copied: dict[str, None] = {}
    notes: list[str] = []
    layers = set(net.params)
    for path in split_list(spec):
        weights, file_notes = read_weights(path)
        notes += [f"{path}: {n}" for n in file_notes]
        ignored = sorted({k.rpartition(".")[0] for k in weights} - layers)
        if ignored:
            notes.append(f"{path}: ignoring source layer{'s' if len(ignored) > 1 else ''} "
                         f"{', '.join(ignored)} (not in net {net.name})")
        for key in net.copy_from(conform(weights, net), str(path)):
            copied[key] = None
    if not split_list(spec):
        raise UserError("--weights: no file given")
    return list(copied), notes
