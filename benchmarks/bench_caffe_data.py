"""Caffe data sources: memory against LMDB size, and the step time with and without prefetch.

    python benchmarks/bench_caffe_data.py rss [--sizes 50,200,800] [--dir DIR]
    python benchmarks/bench_caffe_data.py prefetch [--steps 200] [--repeats 3] [--dir DIR]

rss: writes LMDBs of raw 3 x 256 x 256 Datum records (196 KiB each, ImageNet-like) of about
the given sizes in MB, then for each, in a fresh process, reads two full epochs through a Data
layer (batch 32, crop 227, mirror, prefetch on: what a CaffeNet train net does) and reports the
peak of the process's resident memory (VmHWM), and at the end its resident anonymous memory
(RssAnon: the process's own allocations) and its resident file pages (RssFile: the pages of
data.mdb that LMDB's memory map has touched, which the kernel can drop at any time because
they are clean copies of the file).

prefetch: LeNet (Caffe's lenet_train_test) on 28 x 28 Fashion-MNIST-sized images read from an
LMDB of raw Datums and from one of PNG-encoded Datums (decoded every batch), trained for
`--steps` solver iterations with prefetch on and off, alternately, `--repeats` times each; it
reports the fastest per-step mean of each (the least disturbed spell of a shared machine), and
the time one batch takes to read and transform alone.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def datum(c, h, w, data: bytes, label: int, encoded=False) -> bytes:
    """A Datum by the wire format (channels 1, height 2, width 3, data 4, label 5, encoded 7)."""
    def varint(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num, wire, payload):
        return varint((num << 3) | wire) + payload

    out = b""
    if not encoded:
        out += field(1, 0, varint(c)) + field(2, 0, varint(h)) + field(3, 0, varint(w))
    out += field(4, 2, varint(len(data)) + data) + field(5, 0, varint(label))
    if encoded:
        out += field(7, 0, varint(1))
    return out


def write_db(path: Path, n: int, shape, encoded=False, seed=0):
    import lmdb
    import numpy as np

    rng = np.random.default_rng(seed)
    c, h, w = shape
    size = n * (c * h * w + 64) * 2 + (1 << 24)
    env = lmdb.open(str(path), map_size=size)
    txn = env.begin(write=True)
    for i in range(n):
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        if encoded:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(x[0]).save(buf, "PNG")
            value = datum(0, 0, 0, buf.getvalue(), i % 10, encoded=True)
        else:
            value = datum(c, h, w, x.tobytes(), i % 10)
        txn.put(f"{i:08d}_img{i}.jpg".encode(), value)
        if i % 1000 == 999:  # convert_imageset commits every 1000 records
            txn.commit()
            txn = env.begin(write=True)
    txn.commit()
    env.close()


def status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) // 1024  # MiB
    return out


def read_epochs(db: str, epochs: int = 2) -> dict:
    """(in a fresh process) two passes over `db` through a Data layer; memory as it went."""
    import numpy as np

    from layerflow.layers.data import Data

    params = dict(source=db, backend="lmdb", batch_size=32, crop_size=227, mirror=True,
                  scale=0.00390625)
    before = status()
    layer = Data("data", Data.params_model(params)(**params), phase="train",
                 rng=np.random.default_rng(0), top_names=["data", "label"])
    layer.build([])
    start = time.perf_counter()
    steps = epochs * -(-layer.num_samples // 32)
    for _ in range(steps):
        layer.forward([])
    seconds = time.perf_counter() - start
    layer.close()
    return {"records": layer.num_samples, "before": before, "after": status(),
            "batches_per_s": steps / seconds}


def rss(args):
    folder = Path(args.dir or tempfile.mkdtemp(prefix="lf_rss_"))
    rows = []
    for mb in (int(s) for s in args.sizes.split(",")):
        n = max(1, mb * 2**20 // (3 * 256 * 256))
        db = folder / f"db_{mb}mb"
        if not (db / "data.mdb").exists():
            write_db(db, n, (3, 256, 256))
        size = (db / "data.mdb").stat().st_size // 2**20
        out = subprocess.run([sys.executable, __file__, "_read", str(db)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        rows.append((mb, size, r))
        print(f"{size:5d} MiB LMDB ({r['records']} records): peak RSS {r['after']['VmHWM']} MiB, "
              f"end RssAnon {r['after']['RssAnon']} MiB, RssFile {r['after']['RssFile']} MiB "
              f"(before the layer: RSS {r['before']['VmRSS']} MiB); "
              f"{r['batches_per_s']:.1f} batches/s", flush=True)


LENET = """
name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 }
  data_param { source: "@DB@" batch_size: 64 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


def prefetch(args):
    import numpy as np

    from layerflow.solver import Solver

    folder = Path(args.dir or tempfile.mkdtemp(prefix="lf_prefetch_"))
    results = {}
    for kind, encoded in (("raw", False), ("png", True)):
        db = folder / f"lenet_{kind}"
        if not (db / "data.mdb").exists():
            write_db(db, 6400, (1, 28, 28), encoded=encoded)
        (folder / f"net_{kind}.prototxt").write_text(textwrap.dedent(LENET).replace("@DB@", str(db)))
        (folder / f"solver_{kind}.prototxt").write_text(
            f'net: "{folder}/net_{kind}.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\n'
            f'lr_policy: "fixed"\nmax_iter: 1000000\nrandom_seed: 1\n')
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeats):
            for on in (True, False):
                solver = Solver.from_yaml(folder / f"solver_{kind}.prototxt")
                data = solver.net.layer_by_name["mnist"]
                if not on:
                    data.prefetcher = None
                solver.step(10)  # warm-up (compilation, page cache)
                start = time.perf_counter()
                solver.step(args.steps)
                best[on] = min(best[on], (time.perf_counter() - start) / args.steps * 1e3)
                data.close()
        solver = Solver.from_yaml(folder / f"solver_{kind}.prototxt")
        data = solver.net.layer_by_name["mnist"]
        data.prefetcher = None
        data.forward([])
        start = time.perf_counter()
        for _ in range(50):
            data.forward([])
        read_ms = (time.perf_counter() - start) / 50 * 1e3
        results[kind] = (best[True], best[False], read_ms)
        print(f"LeNet, batch 64, {kind} Datums: {best[False]:.1f} ms/step without prefetch, "
              f"{best[True]:.1f} ms/step with it ({best[False] / best[True]:.2f}x); one batch "
              f"read and transformed alone: {read_ms:.2f} ms", flush=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["rss", "prefetch", "_read"])
    ap.add_argument("db", nargs="?")
    ap.add_argument("--sizes", default="50,200,800")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir")
    args = ap.parse_args()
    if args.what == "_read":
        print(json.dumps(read_epochs(args.db)))
    elif args.what == "rss":
        rss(args)
    else:
        prefetch(args)


if __name__ == "__main__":
    main()
