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

from dataclasses import dataclass, field
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


@dataclass
class Copied:
    """What `copy_weight_files` did: the net's params it set (qualified names, net order),
    the files' params the net has no use for, the messages saying so, and every key read."""

    copied: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


def copy_weight_files(net, spec) -> Copied:
    """Copy the files of `spec` (a path, a comma-separated list or a list) into `net`, in
    order; a later file overrides what an earlier one set. Source layers the net lacks, and
    params a layer of the net lacks, are reported in `notes` (Caffe's "Ignoring source
    layer"), not errors; a shape mismatch is (Net.copy_from)."""
    paths = split_list(spec)
    if not paths:
        raise UserError("--weights: no file given")
    out = Copied()
    mine = net.state_dict()
    done: set[str] = set()
    for path in paths:
        weights, file_notes = read_weights(path)
        out.notes += [f"{path}: {n}" for n in file_notes]
        out.seen += [k for k in weights if k not in out.seen]
        by_layer: dict[str, list[str]] = {}
        for key in sorted(k for k in weights if k not in mine):
            by_layer.setdefault(key.rpartition(".")[0], []).append(key)
            if key not in out.ignored:
                out.ignored.append(key)
        for layer, keys in by_layer.items():
            if layer in net.params:
                out.notes.append(f"{path}: ignoring {', '.join(keys)}: layer {layer} of the "
                                 f"net has no such param")
            else:
                out.notes.append(f"{path}: ignoring source layer {layer} ({', '.join(keys)}): "
                                 f"net {net.name} has no layer of that name")
        done.update(net.copy_from(conform(weights, net), str(path)))
    out.copied = [key for key in mine if key in done]
    return out
