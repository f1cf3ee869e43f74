"""Caffe's binary formats: .caffemodel weights and .binaryproto blobs (mean files).

A .caffemodel is a serialized NetParameter whose layers carry their params as BlobProtos, in
the layer's blob order (reference section 9). Old models keep V1 `layers` (blobs in field 6)
or V0 nested layers; they go through the same upgrades as text nets. Blobs map to layerflow's
param names per layer type:

    Convolution, Deconvolution, InnerProduct   weight, bias
    BatchNorm                                  mean, variance, scale_factor (Caffe's sums)
    Scale                                      weight, bias  (with two bottoms: bias)
    Bias                                       bias
    PReLU                                      weight

A BlobProto's shape is its legacy num/channels/height/width when any of them is present, else
`shape.dim`; its values are `double_data` when present, else `data`. Legacy shapes are
right-aligned 4-D (an InnerProduct weight N x K is stored 1 x 1 x N x K), so a blob whose
shape differs from the net's param only by leading 1s is reshaped to it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError, file_error
from .proto import messages
from .upgrade import upgrade_net

PARAM_NAMES = {
    "Convolution": ("weight", "bias"),
    "Deconvolution": ("weight", "bias"),
    "InnerProduct": ("weight", "bias"),
    "BatchNorm": ("mean", "variance", "scale_factor"),
    "Scale": ("weight", "bias"),
    "Bias": ("bias",),
    "PReLU": ("weight",),
}
LEGACY_DIMS = ("num", "channels", "height", "width")


def blob_to_array(blob, where: str) -> np.ndarray:
    """A BlobProto's values in its shape: float32 from `data`, float64 from `double_data`."""
    if any(blob.HasField(f) for f in LEGACY_DIMS):
        shape = tuple(int(getattr(blob, f)) for f in LEGACY_DIMS)
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    if len(blob.double_data):
        values = np.asarray(blob.double_data, dtype=np.float64)
    else:
        values = np.asarray(blob.data, dtype=np.float32)
    count = int(np.prod(shape)) if shape else 1
    if values.size != count:
        raise UserError(f"{where}: the blob has shape {list(shape)} ({count} values) but "
                        f"holds {values.size} values")
    return values.reshape(shape)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def array_to_blob(array: np.ndarray, blob) -> None:
    """Write `array` as Caffe writes blobs: `shape`, and `data` (float32) or `double_data`.

    The values go in as one packed field merged into the message by protobuf's own parser
    (tag, byte length, the little-endian values): filling the repeated field from Python
    costs ~0.3 s per million values (11 s for AlexNet's fc6), this ~5 ms."""
    blob.shape.dim.extend(int(d) for d in array.shape)
    field, dtype = (8, "<f8") if array.dtype == np.float64 else (5, "<f4")
    raw = np.ascontiguousarray(array, dtype).tobytes()
    blob.MergeFromString(_varint(field << 3 | 2) + _varint(len(raw)) + raw)


def _read_message(path: Path, cls, what: str):
    from google.protobuf.message import DecodeError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise file_error(path, exc, f"a {what}", what) from None
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: not a valid {what} (truncated or not a {cls.__name__}): "
                        f"{exc}") from None


def read_caffemodel(path: str | Path):
    """The upgraded NetParameter of a .caffemodel (new, V1 or V0 layers)."""
    net = _read_message(Path(path), messages().NetParameter, ".caffemodel file")
    upgrade_net(net)
    return net


def caffemodel_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """(`<layer>.<param>` -> array, notes on layers whose blobs were not taken)."""
    path = Path(path)
    net = read_caffemodel(path)
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for layer in net.layer:
        if not len(layer.blobs):
            continue
        names = PARAM_NAMES.get(layer.type)
        if layer.type == "Scale" and len(layer.bottom) == 2:
            names = ("bias",)
        if names is None:
            notes.append(f"layer {layer.name} ({layer.type}): {len(layer.blobs)} blob(s) "
                         f"skipped: layerflow has no {layer.type} layer")
            continue
        if len(layer.blobs) > len(names):
            raise UserError(f"{path}: layer {layer.name} ({layer.type}) has "
                            f"{len(layer.blobs)} blobs; a {layer.type} layer has at most "
                            f"{len(names)} ({', '.join(names)})")
        for name, blob in zip(names, layer.blobs):
            key = f"{layer.name}.{name}"
            if key in out:
                raise UserError(f"{path}: two layers named {layer.name} carry weights")
            out[key] = blob_to_array(blob, f"{path}: layer {layer.name} blob {name}")
    return out, notes


def write_caffemodel(weights: dict[str, np.ndarray], config, path: str | Path) -> dict:
    """A .caffemodel of `weights` for the net `config` (a NetConfig): one layer per net layer
    (name, type, bottoms, tops) with its blobs in Caffe's order, as Caffe's CopyTrainedLayersFrom
    reads them. Every key must belong to a layer of the net."""
    from .nets import _lf_to_caffe_type

    msgs = messages()
    net = msgs.NetParameter()
    net.name = config.name
    used: set[str] = set()
    seen: set[str] = set()
    layers = 0
    for lc in config.layers:
        if lc.name in seen:
            continue  # the same layer in another phase (train and test data layers)
        seen.add(lc.name)
        ctype = _lf_to_caffe_type(lc.cls.type, lc.params.model_dump())
        lp = net.layer.add()
        lp.name = lc.name
        lp.type = ctype
        if lc.spec.bottom is not None:
            lp.bottom.extend(lc.spec.bottom)
        lp.top.extend(lc.spec.top if lc.spec.top is not None else [lc.name])
        names = PARAM_NAMES.get(ctype, ())
        keys = [f"{lc.name}.{n}" for n in names if f"{lc.name}.{n}" in weights]
        others = [k for k in weights if k.rpartition(".")[0] == lc.name and k not in keys]
        if others:
            raise UserError(f"{path}: {', '.join(others)}: a Caffe {ctype} layer has no such "
                            f"blob (its blobs: {', '.join(names) or 'none'})")
        for key in keys:
            array_to_blob(np.ascontiguousarray(weights[key]), lp.blobs.add())
            used.add(key)
        layers += bool(keys)
    unused = sorted(set(weights) - used)
    if unused:
        raise UserError(f"{path}: {', '.join(unused)}: no layer of net {config.name} has "
                        f"these params (is --net the net these weights were trained with?)")
    data = net.SerializeToString()
    from ..snapshot import atomic_write

    atomic_write(Path(path), data)
    return {"layers": layers, "params": len(used), "bytes": len(data)}


def read_binaryproto(path: str | Path) -> np.ndarray:
    """The array of a .binaryproto file (one BlobProto, e.g. compute_image_mean's mean)."""
    path = Path(path)
    blob = _read_message(path, messages().BlobProto, ".binaryproto file")
    return blob_to_array(blob, str(path))


def write_binaryproto(array: np.ndarray, path: str | Path) -> None:
    blob = messages().BlobProto()
    array_to_blob(np.asarray(array), blob)
    from ..snapshot import atomic_write

    atomic_write(Path(path), blob.SerializeToString())
