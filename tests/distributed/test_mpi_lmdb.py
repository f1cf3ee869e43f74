"""Data-parallel training from an LMDB with Caffe's random transform and prefetch: 2 processes
with batch b train the weights of 1 process with batch 2b, then resume exactly.

Each process reads its slice of every global batch; the random crops and flips are drawn for
the whole global batch and sliced (`Transformer.offsets`), so each sample is transformed as the
single process transforms it. The Datum records are encoded by hand here (channels 1, height 2,
width 3, data 4, label 5).
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from test_mpi import MPIRUN, mpirun, single, weights  # noqa: F401

lmdb = pytest.importorskip("lmdb")
pytest.importorskip("mpi4py")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (the mpi extra)")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def datum(x: np.ndarray, label: int) -> bytes:
    c, h, w = x.shape
    data = x.tobytes()
    return (b"\x08" + varint(c) + b"\x10" + varint(h) + b"\x18" + varint(w)
            + b"\x22" + varint(len(data)) + data + b"\x28" + varint(label))


def write_run(folder: Path, name: str, batch: int, **solver) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "train_lmdb"
    if not db.exists():
        rng = np.random.default_rng(0)
        env = lmdb.open(str(db), map_size=1 << 24)
        with env.begin(write=True) as txn:
            for i in range(40):
                x = rng.integers(0, 256, (2, 6, 7), dtype=np.uint8)
                txn.put(f"{i:08d}".encode(), datum(x, i % 3))
        env.close()
    (folder / f"net_{name}.yaml").write_text(textwrap.dedent(f"""\
        name: lmdb_mlp
        dtype: float64
        layers:
          - {{name: data, type: Data, top: [data, label], source: train_lmdb, backend: lmdb,
             batch_size: {batch}, shuffle: true, crop_size: 5, mirror: true, scale: 0.01}}
          - {{name: ip1, type: InnerProduct, num_output: 3,
             weight_filler: {{type: gaussian, std: 0.1}}}}
          - {{name: loss, type: SoftmaxLoss, bottom: [ip1, label]}}
        """))
    keys = {"net": f"net_{name}.yaml", "base_lr": 0.1, "momentum": 0.9, "max_iter": 12,
            "snapshot": 6, "random_seed": 3, "snapshot_prefix": f"out_{name}/s", **solver}
    path = folder / f"solver_{name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def test_two_processes_from_an_lmdb_with_crops_and_mirrors(tmp_path):
    one = write_run(tmp_path, "one", 8)
    many = write_run(tmp_path, "many", 4)
    r1 = single("train", one, "--json", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    rn = mpirun(2, "train", many, "--json", cwd=tmp_path)
    assert rn.returncode == 0, rn.stderr
    a, b = weights(tmp_path, "one", 12), weights(tmp_path, "many", 12)
    for key in a:  # float64: the sums differ only in their order
        np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12)
    # and a resume of the 2-process run from its snapshot gives the same weights again
    resumed = write_run(tmp_path / "again", "many", 4)
    state = tmp_path / "out_many" / "s_iter_6.solverstate"
    rr = mpirun(2, "train", resumed, "--resume", state, "--json", cwd=tmp_path / "again")
    assert rr.returncode == 0, rr.stderr
    c = weights(tmp_path / "again", "many", 12)
    for key in b:
        assert np.array_equal(b[key], c[key]), key
