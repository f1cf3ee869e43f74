"""The same CNN training step in layerflow, PyTorch (CPU) and a plain numpy im2col loop.

    python benchmarks/bench_cnn.py              # full run (about 20 minutes), writes RESULTS.md
    python benchmarks/bench_cnn.py --quick      # a short run (about 4 minutes)
    python benchmarks/bench_cnn.py --profile    # only the per-layer split of a layerflow step

Two of Caffe's nets, on random data (float32, x uniform in [0, 1), labels uniform in 0..9):
  lenet          examples/mnist/lenet: 1x28x28, conv 20@5, max pool 2/2, conv 50@5, max pool
                 2/2, ip 500, ReLU, ip 10; batch 64
  cifar10_quick  examples/cifar10/cifar10_quick: 3x32x32, conv 32@5 pad 2, max pool 3/2, ReLU,
                 conv 32@5 pad 2, ReLU, ave pool 3/2, conv 64@5 pad 2, ReLU, ave pool 3/2,
                 ip 64, ip 10; batch 100
Pooling rounds up (Caffe's CEIL: torch ceil_mode=True, count_include_pad=True; the numpy loop
pads to the last window). Every framework starts from the same weights (xavier: U(-a, a),
a = sqrt(3 / fan_in); biases 0), sees the same batches (each step copies its batch into the
framework's input buffer) and trains with the same SGD (lr 0.01, momentum 0.9, weight decay
5e-4 on every param), softmax cross-entropy. The loss curves of the three are compared step by
step before any speed is quoted.

Method (bench_mlp.py's): every measurement runs in a fresh subprocess (one per framework, net
and repetition, taken in turn so that a slow spell of the shared host hits all of them), with
the same thread count on every side: NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS,
MKL_NUM_THREADS and torch.set_num_threads. Reported:
  train samples/s   median over the repetitions of the timed steps (warm-up steps excluded),
                    with the min-max range
  infer samples/s   forward only (layerflow: the test-phase net; torch: eval mode under
                    no_grad; numpy: the forward functions), timed after the training steps
  GFLOP/s           the convolutions' and inner products' multiply-adds, 2 flops each:
                    forward, weight gradient, and data gradient of every layer but the first
  % of peak         of the best float32 matrix-multiply rate measured by this script (numpy's
                    OpenBLAS and torch, square matrices, same threads)
  profile           one more layerflow process: per-layer forward and backward ms of a training
                    step (layerflow.profile.LayerTimer), the solver's update as the rest of the
                    step, and for each convolution the time of its GEMMs alone (the same calls
                    on the same shapes, images split over the threads as the layer does,
                    without im2col/col2im): the GEMM and the non-GEMM shares of the step
  other load        cores kept busy by other processes of the machine during the run; a run
                    above 0.3 cores is repeated (--retries) and the least disturbed one kept
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import (LR, MOMENTUM, WEIGHT_DECAY, cpu_model, launch, matmul_peaks,
                     numba_threading_layer, sgd_solver, thread_env, thread_pools,
                     torch_sgd_step, versions)

HERE = Path(__file__).resolve().parent
NUM_BATCHES = 8  # distinct batches, cycled
CHECK_STEPS = 10  # loss curves compared over these first steps (also the warm-up)
INFER_WARMUP = 3
FRAMEWORKS = ("layerflow", "torch", "numpy")

# layer specs: ("conv", num_output, kernel, pad) | ("pool", MAX|AVE, kernel, stride) | ("relu",)
# | ("ip", num_output)
NETS = {
    "lenet": {"input": (1, 28, 28), "batch": 64, "layers": [
        ("conv", 20, 5, 0), ("pool", "MAX", 2, 2), ("conv", 50, 5, 0), ("pool", "MAX", 2, 2),
        ("ip", 500), ("relu",), ("ip", 10)]},
    "cifar10_quick": {"input": (3, 32, 32), "batch": 100, "layers": [
        ("conv", 32, 5, 2), ("pool", "MAX", 3, 2), ("relu",), ("conv", 32, 5, 2), ("relu",),
        ("pool", "AVE", 3, 2), ("conv", 64, 5, 2), ("relu",), ("pool", "AVE", 3, 2),
        ("ip", 64), ("ip", 10)]},
}
ITERS = {"lenet": (300, 600), "cifar10_quick": (80, 200)}  # (train steps, inference batches)
QUICK_ITERS = {"lenet": (120, 240), "cifar10_quick": (30, 80)}


def pooled(size: int, k: int, s: int) -> int:
    """Caffe's CEIL output size without padding: ceil((size - k) / s) + 1."""
    return -(-(size - k) // s) + 1


def layer_shapes(spec) -> list[dict]:
    """Per layer: its name, kind, input and output shape (C, H, W) or (D,), and for the
    convolutions and inner products the weight shape and multiply-adds per sample."""
    shape, out, counts = spec["input"], [], {}
    for layer in spec["layers"]:
        kind = layer[0]
        counts[kind] = counts.get(kind, 0) + 1
        row = {"name": f"{kind}{counts[kind]}", "kind": kind, "in": shape, "layer": layer}
        if kind == "conv":
            _, o, k, p = layer
            c, h, w = shape
            shape = (o, h + 2 * p - k + 1, w + 2 * p - k + 1)
            row["weight"] = (o, c, k, k)
            row["macs"] = o * shape[1] * shape[2] * c * k * k
        elif kind == "pool":
            _, _, k, s = layer
            c, h, w = shape
            shape = (c, pooled(h, k, s), pooled(w, k, s))
        elif kind == "ip":
            d = int(np.prod(shape))
            shape = (layer[1],)
            row["weight"] = (layer[1], d)
            row["macs"] = layer[1] * d
        row["out"] = shape
        out.append(row)
    return out


def step_flops(spec) -> tuple[int, int]:
    """(training step, forward) FLOPs per sample of the convolutions and inner products: 2 per
    multiply-add; forward + weight gradient + data gradient, the first layer without the last."""
    rows = [r for r in layer_shapes(spec) if "macs" in r]
    fwd = sum(2 * r["macs"] for r in rows)
    return 3 * fwd - 2 * rows[0]["macs"], fwd


# ---- the three frameworks ------------------------------------------------------------------

def layerflow_yaml(spec, phase_batch=None) -> str:
    batch = phase_batch or spec["batch"]
    c, h, w = spec["input"]
    lines = ["name: bench_cnn", "layers:",
             f"  - {{name: data, type: Input, top: [data, label], "
             f"shape: [[{batch}, {c}, {h}, {w}], [{batch}]]}}"]
    bottom = "data"
    for row in layer_shapes(spec):
        layer, name = row["layer"], row["name"]
        if row["kind"] == "conv":
            lines.append(f"  - {{name: {name}, type: Convolution, bottom: {bottom}, "
                         f"num_output: {layer[1]}, kernel_size: {layer[2]}, pad: {layer[3]}}}")
            bottom = name
        elif row["kind"] == "pool":
            lines.append(f"  - {{name: {name}, type: Pooling, bottom: {bottom}, pool: {layer[1]}, "
                         f"kernel_size: {layer[2]}, stride: {layer[3]}}}")
            bottom = name
        elif row["kind"] == "relu":
            lines.append(f"  - {{name: {name}, type: ReLU, bottom: {bottom}, top: {bottom}}}")
        else:
            lines.append(f"  - {{name: {name}, type: InnerProduct, bottom: {bottom}, "
                         f"num_output: {layer[1]}}}")
            bottom = name
    lines.append(f"  - {{name: loss, type: SoftmaxLoss, bottom: [{bottom}, label]}}")
    return "\n".join(lines) + "\n"


def layerflow_nets(spec, weights, workdir: Path):
    """(solver, test-phase net sharing nothing) built from the spec, weights copied in."""
    import layerflow as lf

    solver = sgd_solver(workdir, layerflow_yaml(spec))
    named = {f"{r['name']}.{k}": weights[f"{r['name']}.{k}"]
             for r in layer_shapes(spec) if "weight" in r for k in ("weight", "bias")}
    copied = solver.net.copy_from(named)
    assert len(copied) == len(named), copied
    infer = lf.Net.from_yaml(workdir / "net.yaml", phase="test")
    infer.copy_from(named)
    return solver, infer


def layerflow_trainer(spec, weights, workdir):
    solver, infer = layerflow_nets(spec, weights, workdir)
    net = solver.net

    def step(x, y):
        net.feed({"data": x, "label": y})
        return solver.step(1)

    def forward(x, y):
        infer.feed({"data": x, "label": y})
        infer.run_forward()
    return step, forward


def torch_model(spec, weights):
    import torch

    mods, c = [], spec["input"][0]
    for row in layer_shapes(spec):
        layer = row["layer"]
        if row["kind"] == "conv":
            m = torch.nn.Conv2d(c, layer[1], layer[2], padding=layer[3])
            c = layer[1]
        elif row["kind"] == "pool":
            cls = torch.nn.MaxPool2d if layer[1] == "MAX" else torch.nn.AvgPool2d
            kw = {"count_include_pad": True} if layer[1] == "AVE" else {}
            mods.append(cls(layer[2], layer[3], ceil_mode=True, **kw))
            continue
        elif row["kind"] == "relu":
            mods.append(torch.nn.ReLU())
            continue
        else:
            if len(row["in"]) > 1:
                mods.append(torch.nn.Flatten())
            m = torch.nn.Linear(int(np.prod(row["in"])), layer[1])
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(weights[f"{row['name']}.weight"]))
            m.bias.copy_(torch.from_numpy(weights[f"{row['name']}.bias"]))
        mods.append(m)
    return torch.nn.Sequential(*mods)


def torch_trainer(spec, weights, threads):
    import torch

    torch.set_num_threads(threads)
    model = torch_model(spec, weights)
    b = spec["batch"]
    xb, yb = torch.empty((b,) + spec["input"]), torch.empty(b, dtype=torch.int64)
    step = torch_sgd_step(model, xb, yb)
    infer_model = torch_model(spec, weights).eval()

    def forward(x, y):
        xb.copy_(x)
        with torch.no_grad():
            infer_model(xb)
    return step, forward


# -- the plain numpy loop: im2col as k*k strided slice copies, one GEMM over the whole batch

def np_conv_forward(x, w, b, pad):
    """x (N, C, H, W), w (O, C, k, k) -> y (N, O, OH, OW), cols (C k k, N OH OW)."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    cols = np.empty((c, k, k, n, oh, ow), x.dtype)
    xt = xp.transpose(1, 0, 2, 3)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xt[:, :, i:i + oh, j:j + ow]
    cols = cols.reshape(c * k * k, n * oh * ow)
    y = (w.reshape(o, -1) @ cols).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(y) + b[None, :, None, None], cols


def np_conv_backward(dy, x_shape, w, cols, pad, need_dx):
    n, c, h, wd = x_shape
    o, _, k, _ = w.shape
    oh, ow = dy.shape[2:]
    dy2 = dy.transpose(1, 0, 2, 3).reshape(o, -1)
    dw = (dy2 @ cols.T).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dw, db
    dcols = (w.reshape(o, -1).T @ dy2).reshape(c, k, k, n, oh, ow)
    dxp = np.zeros((c, n, h + 2 * pad, wd + 2 * pad), dy.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + oh, j:j + ow] += dcols[:, i, j]
    return dxp[:, :, pad:pad + h, pad:pad + wd].transpose(1, 0, 2, 3), dw, db


def np_pool_forward(x, pool, k, s):
    """Caffe's CEIL pooling without padding: the input is padded up to the last window."""
    n, c, h, w = x.shape
    ph, pw = pooled(h, k, s), pooled(w, k, s)
    hp, wp = (ph - 1) * s + k, (pw - 1) * s + k
    fill = -np.inf if pool == "MAX" else 0
    xp = np.full((n, c, hp, wp), fill, x.dtype)
    xp[:, :, :h, :w] = x
    if pool == "MAX":
        out = np.full((n, c, ph, pw), -np.inf, x.dtype)
        arg = np.zeros((n, c, ph, pw), np.int8)
        for i in range(k):
            for j in range(k):
                v = xp[:, :, i:i + s * (ph - 1) + 1:s, j:j + s * (pw - 1) + 1:s]
                better = v > out  # strict: ties go to the first in row-major order
                np.copyto(out, v, where=better)
                arg[better] = i * k + j
        return out, arg
    out = np.zeros((n, c, ph, pw), x.dtype)
    for i in range(k):
        for j in range(k):
            out += xp[:, :, i:i + s * (ph - 1) + 1:s, j:j + s * (pw - 1) + 1:s]
    rows = np.minimum(np.arange(ph) * s + k, h) - np.arange(ph) * s
    cols = np.minimum(np.arange(pw) * s + k, w) - np.arange(pw) * s
    count = (rows[:, None] * cols[None, :]).astype(x.dtype)
    return out / count, count


def np_pool_backward(dout, x_shape, pool, k, s, cache):
    n, c, h, w = x_shape
    ph, pw = dout.shape[2:]
    dxp = np.zeros((n, c, (ph - 1) * s + k, (pw - 1) * s + k), dout.dtype)
    if pool == "AVE":
        dout = dout / cache
    for i in range(k):
        for j in range(k):
            sl = dxp[:, :, i:i + s * (ph - 1) + 1:s, j:j + s * (pw - 1) + 1:s]
            sl += dout if pool == "AVE" else np.where(cache == i * k + j, dout, 0)
    return dxp[:, :, :h, :w]


def numpy_trainer(spec, weights):
    rows = layer_shapes(spec)
    params = {}
    for r in rows:
        if "weight" in r:
            params[f"{r['name']}.weight"] = weights[f"{r['name']}.weight"].copy()
            params[f"{r['name']}.bias"] = weights[f"{r['name']}.bias"].copy()
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    lr, m, wd = np.float32(LR), np.float32(MOMENTUM), np.float32(WEIGHT_DECAY)
    b = spec["batch"]
    xb, yb = np.empty((b,) + spec["input"], np.float32), np.empty(b, np.int64)
    batch_rows = np.arange(b)

    def forward(x):
        caches = []
        for r in rows:
            kind, layer = r["kind"], r["layer"]
            if kind == "conv":
                w_, b_ = params[f"{r['name']}.weight"], params[f"{r['name']}.bias"]
                y, cols = np_conv_forward(x, w_, b_, layer[3])
                caches.append((x.shape, cols))
            elif kind == "pool":
                y, cache = np_pool_forward(x, layer[1], layer[2], layer[3])
                caches.append((x.shape, cache))
            elif kind == "relu":
                y = np.maximum(x, 0)
                caches.append(y > 0)
            else:
                x2 = x.reshape(len(x), -1)
                y = x2 @ params[f"{r['name']}.weight"].T + params[f"{r['name']}.bias"]
                caches.append((x.shape, x2))
            x = y
        return x, caches

    def step(x, y):
        np.copyto(xb, x)
        np.copyto(yb, y)
        scores, caches = forward(xb)
        s = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - s[batch_rows, yb]))
        d = e / total
        d[batch_rows, yb] -= 1
        d /= np.float32(b)
        grads = {}
        for idx in reversed(range(len(rows))):
            r, cache = rows[idx], caches[idx]
            kind, layer, name = r["kind"], r["layer"], r["name"]
            if kind == "conv":
                d, grads[f"{name}.weight"], grads[f"{name}.bias"] = np_conv_backward(
                    d, cache[0], params[f"{name}.weight"], cache[1], layer[3], idx > 0)
            elif kind == "pool":
                d = np_pool_backward(d, cache[0], layer[1], layer[2], layer[3], cache[1])
            elif kind == "relu":
                d = d * cache
            else:
                shape, x2 = cache
                grads[f"{name}.weight"] = d.T @ x2
                grads[f"{name}.bias"] = d.sum(axis=0)
                d = (d @ params[f"{name}.weight"]).reshape(shape) if idx > 0 else None
        for k, p in params.items():
            g = grads[k]
            g += wd * p
            v = velocity[k]
            v *= m
            v += lr * g
            p -= v
        return loss

    def infer(x, y):
        np.copyto(xb, x)
        forward(xb)
    return step, infer


# ---- workers ---------------------------------------------------------------------------------

def worker(args) -> None:
    """One framework, one net, one process: print a JSON line of measurements."""
    spec = NETS[args.net]
    rec = {"framework": args.worker, "net": args.net, "threads": args.threads}
    d = np.load(args.data)
    xs = [np.ascontiguousarray(d["x"][i]) for i in range(NUM_BATCHES)]
    ys = [d["y"][i] for i in range(NUM_BATCHES)]
    weights = {k: d[k] for k in d.files if k not in ("x", "y")}
    with tempfile.TemporaryDirectory() as tmp:
        if args.worker == "layerflow":
            import numba
            step, infer = layerflow_trainer(spec, weights, Path(tmp))
            ys = [y.astype(np.float32) for y in ys]
        elif args.worker == "torch":
            import torch
            step, infer = torch_trainer(spec, weights, args.threads)
            xs = [torch.from_numpy(x) for x in xs]
            ys = [torch.from_numpy(y.astype(np.int64)) for y in ys]
        else:
            step, infer = numpy_trainer(spec, weights)
        losses = [step(xs[i % NUM_BATCHES], ys[i % NUM_BATCHES]) for i in range(CHECK_STEPS)]
        rec["losses"] = losses
        t = time.perf_counter()
        for i in range(args.iters):
            j = (CHECK_STEPS + i) % NUM_BATCHES
            step(xs[j], ys[j])
        rec["train_s"] = time.perf_counter() - t
        rec["train_samples_per_s"] = args.iters * spec["batch"] / rec["train_s"]
        for i in range(INFER_WARMUP):
            infer(xs[i], ys[i])
        t = time.perf_counter()
        for i in range(args.infer_iters):
            infer(xs[i % NUM_BATCHES], ys[i % NUM_BATCHES])
        rec["infer_s"] = time.perf_counter() - t
        rec["infer_samples_per_s"] = args.infer_iters * spec["batch"] / rec["infer_s"]
    if args.worker == "layerflow":
        rec["numba_threads"] = numba.get_num_threads()
        rec["numba_threading_layer"] = numba_threading_layer()
    if args.worker == "torch":
        rec["torch_threads"] = torch.get_num_threads()
    rec["thread_pools"] = thread_pools()
    print(json.dumps(rec))


def profile_worker(args) -> None:
    """Per-layer ms of a layerflow training step, the solver's share, and the GEMM floor of
    every convolution."""
    import numba

    from layerflow.profile import LayerTimer

    spec = NETS[args.net]
    d = np.load(args.data)
    xs = [np.ascontiguousarray(d["x"][i]) for i in range(NUM_BATCHES)]
    ys = [d["y"][i].astype(np.float32) for i in range(NUM_BATCHES)]
    weights = {k: d[k] for k in d.files if k not in ("x", "y")}
    with tempfile.TemporaryDirectory() as tmp:
        solver, _ = layerflow_nets(spec, weights, Path(tmp))
        net = solver.net
        for i in range(CHECK_STEPS):
            net.feed({"data": xs[i % NUM_BATCHES], "label": ys[i % NUM_BATCHES]})
            solver.step(1)
        # three timed spells; the least disturbed (shortest) is kept
        best_step, best_report = float("inf"), None
        n = args.iters
        for _ in range(3):
            timer = net.add_hook(LayerTimer(net))
            t = time.perf_counter()
            for i in range(n):
                net.feed({"data": xs[i % NUM_BATCHES], "label": ys[i % NUM_BATCHES]})
                solver.step(1)
            spell = (time.perf_counter() - t) / n
            net.remove_hook(timer)
            if spell < best_step:
                best_step, best_report = spell, timer.report(n)
        layers = {}
        for r in layer_shapes(spec):
            if r["kind"] == "conv":
                layer = net.layer_by_name[r["name"]]
                layers[r["name"]] = gemm_floor_ms(layer, spec["batch"])
    print(json.dumps({"net": args.net, "threads": numba.get_num_threads(),
                      "step_ms": 1e3 * best_step, "layers": best_report["layers"],
                      "forward_ms": best_report["forward_ms_per_iter"],
                      "backward_ms": best_report["backward_ms_per_iter"],
                      "gemm_floor_ms": layers}))


def gemm_floor_ms(layer, batch: int) -> dict:
    """The milliseconds of a Convolution layer's GEMMs alone, per training step: per image the
    forward w @ col, the weight gradient col @ dy^T and the data gradient w^T @ dy, on the
    layer's shapes, images split over Numba's threads with one BLAS thread per call, as the
    layer runs them; im2col and col2im are left out (the column buffer holds random values)."""
    from layerflow.blas import serial_blas

    g, og, k = layer.w3
    positions = layer.out4[3]
    slots = layer.slots
    rng = np.random.default_rng(0)
    w = rng.random((g, og, k), np.float32)
    cols = rng.random((slots, g, k, positions), np.float32)
    out = np.zeros((batch, g, og, positions), np.float32)
    dy = rng.random((batch, g, og, positions), np.float32)
    dwt = np.zeros((slots, g, k, og), np.float32)
    times = {}
    for name, which in (("forward", 0), ("weight grad", 1), ("data grad", 2)):
        with serial_blas(slots > 1):
            _gemm_loop(w, cols, out, dy, dwt, which)
            best = float("inf")
            for _ in range(7):
                t = time.perf_counter()
                for _ in range(5):
                    _gemm_loop(w, cols, out, dy, dwt, which)
                best = min(best, (time.perf_counter() - t) / 5)
        times[name] = 1e3 * best
    return times


def _gemm_loop_py(w, cols, out, dy, dwt, which):
    """Per image, in a prange over thread slots: the layer's GEMM calls without im2col."""
    n = out.shape[0]
    t_slots = cols.shape[0]
    g = w.shape[0]
    for t in _prange(t_slots):
        for i in range(t * n // t_slots, (t + 1) * n // t_slots):
            for j in range(g):
                if which == 0:
                    _gemm(w[j], cols[t, j], out[i, j], False, False, 1.0, 0.0)
                elif which == 1:
                    _gemm(cols[t, j], dy[i, j], dwt[t, j], False, True, 1.0, 1.0)
                else:
                    _gemm(w[j], dy[i, j], cols[t, j], True, False, 1.0, 0.0)


def _make_gemm_loop():
    global _gemm_loop, _prange, _gemm
    import numba

    from layerflow.blas import gemm

    _prange, _gemm = numba.prange, gemm
    _gemm_loop = numba.njit(parallel=True, cache=False)(_gemm_loop_py)


def _gemm_loop(*a):  # replaced by the jitted loop on first use
    _make_gemm_loop()
    return _gemm_loop(*a)


# ---- the driver ------------------------------------------------------------------------------

def make_data(folder: Path) -> None:
    """Random batches and the shared initial weights, one file per net."""
    for s, (name, spec) in enumerate(NETS.items()):
        rng = np.random.default_rng(s)
        b = spec["batch"]
        arrays = {"x": rng.random((NUM_BATCHES, b) + spec["input"], np.float32),
                  "y": rng.integers(0, 10, (NUM_BATCHES, b)).astype(np.int64)}
        for r in layer_shapes(spec):
            if "weight" in r:
                fan_in = int(np.prod(r["weight"][1:]))
                a = np.sqrt(3.0 / fan_in)
                arrays[f"{r['name']}.weight"] = rng.uniform(-a, a, r["weight"]).astype(np.float32)
                arrays[f"{r['name']}.bias"] = np.zeros(r["weight"][0], np.float32)
        np.savez(folder / f"{name}.npz", **arrays)


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.2f}k" if x >= 1000 else f"{x:.0f}"


def run(args) -> None:
    threads_list = [int(t) for t in args.threads.split(",")] if args.threads else [2, 1]
    reps = args.repeats or (3 if args.quick else 5)
    nets = args.net_list
    iters = QUICK_ITERS if args.quick else ITERS
    frameworks = list(FRAMEWORKS) if not args.profile else []
    tmp = Path(tempfile.mkdtemp(prefix="bench_cnn_"))
    loads = {"start": os.getloadavg()}
    try:
        make_data(tmp)
        results = {}
        for threads in threads_list:
            env = dict(thread_env(threads), NUMBA_CACHE_DIR=str(tmp / "numba_cache"))
            print(f"== {threads} thread(s)", flush=True)
            peak = {}
            if frameworks:
                peak = launch(__file__, ["--worker", "peak", "--threads", str(threads)]
                              + (["--quick"] if args.quick else []), env, retries=args.retries)
                peak.pop("other_load", None)
                print(f"   matmul peak GFLOP/s: {peak}", flush=True)
            runs: dict = {}
            for net in nets:  # fill the Numba cache: not counted
                launch(__file__, ["--worker", "layerflow", "--net", net, "--threads",
                                  str(threads), "--iters", "1", "--infer-iters", "1", "--data",
                                  str(tmp / f"{net}.npz")], env)
            for r in range(reps):
                for net in nets:
                    for fw in frameworks:
                        rec = launch(__file__, ["--worker", fw, "--net", net, "--threads",
                                                str(threads), "--iters", str(iters[net][0]),
                                                "--infer-iters", str(iters[net][1]), "--data",
                                                str(tmp / f"{net}.npz")],
                                     env, retries=args.retries)
                        runs.setdefault((net, fw), []).append(rec)
                        print(f"   rep {r} {net:14s} {fw:9s} train "
                              f"{fmt_rate(rec['train_samples_per_s'])}/s, infer "
                              f"{fmt_rate(rec['infer_samples_per_s'])}/s, other load "
                              f"{rec['other_load']:.2f}", flush=True)
            profiles = {}
            for net in nets:
                profiles[net] = launch(__file__, ["--worker", "profile", "--net", net,
                                                  "--threads", str(threads), "--iters",
                                                  str(iters[net][0] // 3), "--data",
                                                  str(tmp / f"{net}.npz")], env,
                                       retries=args.retries)
                print(f"   profile {net}: step {profiles[net]['step_ms']:.2f} ms", flush=True)
            results[threads] = (peak, runs, profiles)
        loads["end"] = os.getloadavg()
        raw = Path(tempfile.gettempdir()) / "bench_cnn_last.json"
        raw.write_text(json.dumps({"results": {t: [p, [[list(k), v] for k, v in r.items()], f]
                                               for t, (p, r, f) in results.items()},
                                   "frameworks": frameworks, "reps": reps, "iters": iters,
                                   "nets": nets, "loads": loads}))
        print(f"raw measurements: {raw} (--report-from rewrites the report from them)")
        text = report(results, frameworks, reps, iters, nets, loads, args)
        print(text)
        if frameworks and not args.no_write:
            write_section(Path(args.out) if args.out else HERE / "RESULTS.md", text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SECTION_START, SECTION_END = "<!-- bench_cnn.py: start -->", "<!-- bench_cnn.py: end -->"


def write_section(path: Path, text: str) -> None:
    """Put this script's report between its markers in RESULTS.md, keeping the rest (the MLP
    section of bench_mlp.py) as it is."""
    block = f"{SECTION_START}\n{text.rstrip()}\n{SECTION_END}\n"
    old = path.read_text() if path.is_file() else ""
    if SECTION_START in old and SECTION_END in old:
        head, rest = old.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = (old.rstrip() + "\n\n" if old else "") + block
    path.write_text(new)


def profile_table(prof, spec, peak_best) -> list[str]:
    """The per-layer split of one layerflow training step."""
    rows = {r["name"]: r for r in layer_shapes(spec)}
    flops = {name: 2 * r["macs"] for name, r in rows.items() if "macs" in r}
    lines = ["| layer | type | forward ms | backward ms | share of step | GFLOP/s | "
             "GEMMs alone ms (fwd / dW / dx) | non-GEMM ms |", "|---|---|---|---|---|---|---|---|"]
    step = prof["step_ms"]
    gemm_total = nongemm_conv = 0.0
    first = next(iter(flops))
    for lay in prof["layers"]:
        name = lay["name"]
        f, b = lay["forward_ms_per_iter"], lay["backward_ms_per_iter"]
        rate, floor, rest = "", "", ""
        if name in flops:
            fl = flops[name] * spec["batch"] * (2 if name == first else 3)
            rate = f"{fl / ((f + b) * 1e-3) / 1e9:.0f}"
        if name in prof["gemm_floor_ms"]:
            g = prof["gemm_floor_ms"][name]
            used = g["forward"] + g["weight grad"] + (0 if name == first else g["data grad"])
            gemm_total += used
            nongemm_conv += f + b - used
            floor = (f"{g['forward']:.2f} / {g['weight grad']:.2f} / "
                     + ("-" if name == first else f"{g['data grad']:.2f}"))
            rest = f"{f + b - used:.2f}"
        elif name in flops:
            gemm_total += f + b
        lines.append(f"| {name} | {lay['type']} | {f:.3f} | {b:.3f} | "
                     f"{100 * (f + b) / step:.1f}% | {rate} | {floor} | {rest} |")
    layers_ms = prof["forward_ms"] + prof["backward_ms"]
    lines.append(f"| (solver update, feed) | | | | {100 * (step - layers_ms) / step:.1f}% | | | "
                 f"{step - layers_ms:.2f} |")
    other = layers_ms - gemm_total - nongemm_conv
    lines += ["", f"Step {step:.2f} ms: GEMMs {gemm_total:.2f} ms "
                  f"({100 * gemm_total / step:.0f}%: the convolutions' GEMMs alone plus the inner "
                  f"products), im2col/col2im/bias in the convolutions {nongemm_conv:.2f} ms "
                  f"({100 * nongemm_conv / step:.0f}%), pooling/ReLU/loss {other:.2f} ms "
                  f"({100 * other / step:.0f}%), solver update and feed "
                  f"{step - layers_ms:.2f} ms ({100 * (step - layers_ms) / step:.0f}%)."]
    if peak_best:
        train_flops = step_flops(spec)[0] * spec["batch"]
        lines.append(f"At the peak of {peak_best:.0f} GFLOP/s the step's "
                     f"{train_flops / 1e9:.2f} GFLOP would take "
                     f"{1e3 * train_flops / peak_best / 1e9:.2f} ms.")
    return lines


def report(results, frameworks, reps, iters, nets, loads, args) -> str:
    v = versions(("numba", "scipy", "torch"))
    lines = ["# CNN training and inference: layerflow vs PyTorch CPU vs a plain numpy im2col loop",
             "", f"Written by `python benchmarks/bench_cnn.py{' --quick' if args.quick else ''}` "
                 f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; "
             + ", ".join(f"{k} {val}" for k, val in v.items()),
             "- nets: Caffe's LeNet (1x28x28, batch 64) and CIFAR-10 quick (3x32x32, batch 100), "
             f"random data, {NUM_BATCHES} batches cycled, float32; SGD lr {LR}, momentum "
             f"{MOMENTUM}, weight decay {WEIGHT_DECAY}; the same xavier initial weights in all "
             "three",
             f"- samples/s: median of {reps} fresh processes per cell (min-max), after "
             f"{CHECK_STEPS} warm-up steps; " + ", ".join(
                 f"{n}: {iters[n][0]} training steps and {iters[n][1]} inference batches"
                 for n in nets),
             "- GFLOP/s: the multiply-adds of the convolutions and inner products (2 flops "
             "each) of forward, weight gradient and data gradient (not of the first layer); "
             "% of peak: of the best float32 matmul rate measured here (numpy's OpenBLAS, torch)",
             f"- machine load (uptime's 1/5/15-minute averages): {loads['start']} at the start, "
             f"{loads.get('end')} at the end; 'other load' = cores other processes kept busy "
             "during a cell's kept runs (median; runs above 0.3 were repeated up to "
             f"{args.retries} times, the least disturbed kept)", ""]
    targets = []
    for threads, (peak, runs, profiles) in results.items():
        best = max(peak.values()) if peak else 0.0
        lines += [f"## {threads} thread(s)", ""]
        if frameworks:
            lf_rec = runs[(nets[0], "layerflow")][-1]
            pools = "; ".join(f"{p['lib']} ({p['api']}) {p['threads']}"
                              for p in lf_rec["thread_pools"])
            lines += [f"Threads: numba {lf_rec['numba_threads']} "
                      f"({lf_rec['numba_threading_layer']}), torch "
                      f"{runs[(nets[0], 'torch')][-1]['torch_threads']}, BLAS pools: {pools}.  ",
                      "Matmul peak (best of square float32 products): "
                      + ", ".join(f"{k} {val:.0f}" for k, val in peak.items())
                      + f" GFLOP/s -> peak = {best:.0f} GFLOP/s", "",
                      "| net | batch | framework | train samples/s | range | layerflow x "
                      "| GFLOP/s | % peak | infer samples/s | range | layerflow x | other load |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            med = {}
            for net in nets:
                spec = NETS[net]
                flops = step_flops(spec)[0]
                for fw in frameworks:
                    rs = runs[(net, fw)]
                    med[(net, fw, "train")] = statistics.median(r["train_samples_per_s"]
                                                                for r in rs)
                    med[(net, fw, "infer")] = statistics.median(r["infer_samples_per_s"]
                                                                for r in rs)
                for fw in frameworks:
                    rs = runs[(net, fw)]
                    cells = []
                    for mode in ("train", "infer"):
                        rates = [r[f"{mode}_samples_per_s"] for r in rs]
                        x = "" if fw == "layerflow" else \
                            f"{med[(net, 'layerflow', mode)] / med[(net, fw, mode)]:.2f}"
                        cells.append((fmt_rate(med[(net, fw, mode)]),
                                      f"{fmt_rate(min(rates))}-{fmt_rate(max(rates))}", x))
                    gf = med[(net, fw, "train")] * flops / 1e9
                    (tr, trr, trx), (inf, infr, infx) = cells
                    lines.append(f"| {net} | {spec['batch']} | {fw} | {tr} | {trr} | {trx} | "
                                 f"{gf:.1f} | {100 * gf / best:.1f}% | {inf} | {infr} | {infx} | "
                                 f"{statistics.median(r['other_load'] for r in rs):.2f} |")
            lines += ["", "Loss curves (first steps, max |loss - layerflow's| over "
                          f"{CHECK_STEPS} steps and all runs):", ""]
            for net in nets:
                ref = runs[(net, "layerflow")][0]["losses"]
                diffs = []
                for fw in frameworks:
                    worst = max(abs(a - b) for r in runs[(net, fw)]
                                for a, b in zip(r["losses"], ref))
                    diffs.append(f"{fw} {worst:.1e}")
                lines.append(f"- {net}: layerflow losses {ref[0]:.4f} -> {ref[-1]:.4f}; "
                             + ", ".join(diffs))
            t = [f"Targets at {threads} thread(s):"]
            if "lenet" in nets:
                x = med[("lenet", "layerflow", "train")] / med[("lenet", "torch", "train")]
                t.append(f"- LeNet training, layerflow / PyTorch >= 1.5: {x:.2f}"
                         + (" -> met" if x >= 1.5 else " -> NOT met"))
            if "cifar10_quick" in nets:
                x = med[("cifar10_quick", "layerflow", "train")] / \
                    med[("cifar10_quick", "torch", "train")]
                t.append(f"- CIFAR-10 quick training, layerflow / PyTorch >= 1.0: {x:.2f}"
                         + (" -> met" if x >= 1.0 else " -> NOT met"))
                gf = med[("cifar10_quick", "layerflow", "train")] * \
                    step_flops(NETS["cifar10_quick"])[0] / 1e9
                t.append(f"- CIFAR-10 quick, >= 65% of the matmul peak: {100 * gf / best:.1f}%"
                         + (" -> met" if gf >= 0.65 * best else " -> NOT met")
                         + f" ({100 * gf / peak['numpy']:.1f}% of the OpenBLAS peak, "
                           f"{peak['numpy']:.0f} GFLOP/s, the BLAS layerflow calls)")
            lines += [""] + t + [""]
            targets += t
        for net in nets:
            prof = profiles[net]
            lines += [f"Per-layer split of a layerflow training step, {net} (batch "
                      f"{NETS[net]['batch']}, {prof['threads']} thread(s), "
                      f"LayerTimer, least disturbed of 3 spells; other load "
                      f"{prof['other_load']:.2f}):", ""]
            lines += profile_table(prof, NETS[net], best) + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    ap.add_argument("--profile", action="store_true",
                    help="only the per-layer profile of layerflow (prints, writes nothing)")
    ap.add_argument("--threads", help="comma-separated thread counts (default: 2,1)")
    ap.add_argument("--nets", help="comma-separated nets (default: lenet,cifar10_quick)")
    ap.add_argument("--repeats", type=int, help="fresh processes per cell (default 5, quick 3)")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeat a run disturbed by other processes (> 0.3 cores busy) up to "
                         "this many times, for every framework alike (default 2)")
    ap.add_argument("--out", help="the results file (default benchmarks/RESULTS.md; the CNN "
                                  "section is replaced, the rest kept)")
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    ap.add_argument("--report-from", help="rewrite the report from the raw measurements a run "
                                          "saved (its last line names the file)")
    ap.add_argument("--worker", choices=FRAMEWORKS + ("peak", "profile"), help=argparse.SUPPRESS)
    ap.add_argument("--net", help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--infer-iters", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.net_list = args.nets.split(",") if args.nets else list(NETS)
    unknown = [n for n in args.net_list if n not in NETS]
    if unknown:
        ap.error(f"--nets: unknown {unknown}; known: {', '.join(NETS)}")
    if args.report_from:
        d = json.loads(Path(args.report_from).read_text())
        results = {int(t): (p, {tuple(k): v for k, v in r}, f)
                   for t, (p, r, f) in d["results"].items()}
        text = report(results, d["frameworks"], d["reps"], d["iters"], d["nets"], d["loads"],
                      args)
        print(text)
        if not args.no_write:
            write_section(Path(args.out) if args.out else HERE / "RESULTS.md", text)
        return
    if args.worker == "peak":
        print(json.dumps(matmul_peaks(int(args.threads), args.quick)))
    elif args.worker == "profile":
        args.threads = int(args.threads)
        profile_worker(args)
    elif args.worker:
        args.threads = int(args.threads)
        worker(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
