"""Fixtures of the Caffe-format tests (the `caffe` extra; skipped without protobuf).

- `wire`: a protobuf wire-format encoder written here from the encoding rules (varints,
  length-delimited fields, packed repeated scalars), independent of layerflow's caffe.proto,
  so a fixture built with it checks the field numbers the project's .proto declares;
- `lmdb_db(path, images, labels)`: an LMDB of hand-encoded Datum records (raw uint8
  C x H x W, keys as convert_imageset writes them), read by layerflow's "lmdb" source;
- `write(tmp_path, name, text)`: a fixture file with dedented text;
- `cli`: `cli.invoke(*args, cwd=None)` runs `layerflow` in this process (from `cwd`, as a
  Caffe user runs `caffe` from a working directory); `cli.ok(result)` and
  `cli.error(result, *fragments)` check the exit status and messages;
- `have(*types)`: whether layerflow has these layer types (Convolution, Pooling, LRN and
  Deconvolution arrive from other branches: the tests that need them skip until then).
"""
from __future__ import annotations

import struct
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("google.protobuf")


# ---- protobuf wire format, by hand ----------------------------------------------------------

def varint(n: int) -> bytes:
    """Base-128 varint, least significant group first; negative int32/int64 as 10 bytes."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def f_varint(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def f_bytes(field: int, data: bytes) -> bytes:
    return key(field, 2) + varint(len(data)) + data


def f_str(field: int, s: str) -> bytes:
    return f_bytes(field, s.encode())


def f_float(field: int, x: float) -> bytes:
    return key(field, 5) + struct.pack("<f", x)


def f_packed_floats(field: int, xs) -> bytes:
    return f_bytes(field, struct.pack(f"<{len(xs)}f", *xs))


def f_packed_doubles(field: int, xs) -> bytes:
    return f_bytes(field, struct.pack(f"<{len(xs)}d", *xs))


def f_packed_varints(field: int, ns) -> bytes:
    return f_bytes(field, b"".join(varint(n) for n in ns))


def blob_shape(dims) -> bytes:        # BlobShape: dim = 1 (packed int64)
    return f_packed_varints(1, dims)


def blob(values, shape=None, legacy=None, double=False, unpacked=False) -> bytes:
    """BlobProto: num/channels/height/width 1-4, data 5, shape 7, double_data 8."""
    out = b""
    if legacy is not None:
        for field, d in zip((1, 2, 3, 4), legacy):
            out += f_varint(field, d)
    if shape is not None:
        out += f_bytes(7, blob_shape(shape))
    values = [float(v) for v in np.asarray(values).reshape(-1)]
    if double:
        out += f_packed_doubles(8, values)
    elif unpacked:  # proto2 readers accept repeated scalars unpacked too
        out += b"".join(f_float(5, v) for v in values)
    else:
        out += f_packed_floats(5, values)
    return out


def layer(name, type_, blobs=(), bottom=(), top=()) -> bytes:
    """LayerParameter: name 1, type 2, bottom 3, top 4, blobs 7."""
    out = f_str(1, name) + f_str(2, type_)
    out += b"".join(f_str(3, b) for b in bottom) + b"".join(f_str(4, t) for t in top)
    return out + b"".join(f_bytes(7, b) for b in blobs)


def v1_layer(name, type_enum, blobs=()) -> bytes:
    """V1LayerParameter: name 4, type 5 (enum), blobs 6."""
    return f_str(4, name) + f_varint(5, type_enum) + b"".join(f_bytes(6, b) for b in blobs)


def net(name, layers=(), v1_layers=()) -> bytes:
    """NetParameter: name 1, layers 2 (V1), layer 100."""
    return (f_str(1, name) + b"".join(f_bytes(2, l) for l in v1_layers)
            + b"".join(f_bytes(100, l) for l in layers))


def datum(channels, height, width, data: bytes, label: int) -> bytes:
    """Datum: channels 1, height 2, width 3, data 4, label 5."""
    return (f_varint(1, channels) + f_varint(2, height) + f_varint(3, width)
            + f_bytes(4, data) + f_varint(5, label))


@pytest.fixture
def wire():
    return SimpleNamespace(varint=varint, key=key, f_varint=f_varint, f_bytes=f_bytes,
                           f_str=f_str, f_float=f_float, blob=blob, layer=layer,
                           v1_layer=v1_layer, net=net, datum=datum, blob_shape=blob_shape)


# ---- fixture files --------------------------------------------------------------------------

def write_text(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def write():
    return write_text


def make_lmdb(path: Path, images: np.ndarray, labels) -> Path:
    """An LMDB of hand-encoded Datum records, keys as convert_imageset writes them."""
    lmdb = pytest.importorskip("lmdb")
    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (img, lab) in enumerate(zip(images, labels)):
            c, h, w = img.shape
            txn.put(f"{i:08d}_img{i}.png".encode(),
                    datum(c, h, w, np.ascontiguousarray(img, np.uint8).tobytes(), int(lab)))
    env.close()
    return path


@pytest.fixture
def lmdb_db():
    return make_lmdb


def have(*types: str) -> bool:
    from layerflow.registry import LAYERS

    return all(LAYERS.lookup(t) is not None for t in types)


# ---- the command line -----------------------------------------------------------------------

def _describe(result) -> str:
    return f"exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


class Cli:
    def invoke(self, *args, cwd=None):
        import os

        from typer.testing import CliRunner

        from layerflow.cli import app

        old = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, [str(a) for a in args])
        finally:
            os.chdir(old)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def ok(self, result):
        assert result.exit_code == 0, _describe(result)
        return result

    def error(self, result, *fragments):
        assert result.exit_code == 2, _describe(result)
        assert "Traceback" not in result.output, _describe(result)
        assert result.stderr.startswith("error: "), _describe(result)
        for f in fragments:
            assert f in result.stderr, _describe(result)
        return result.stderr


@pytest.fixture
def cli():
    return Cli()
