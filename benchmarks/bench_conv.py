"""Convolution layer speed: layerflow's Convolution against torch.nn.functional.conv2d.

    python benchmarks/bench_conv.py             # 5 fresh processes per cell, 1 and 2 threads
    python benchmarks/bench_conv.py --quick     # 3 processes per cell, shorter runs
    python benchmarks/bench_conv.py --threads 2 --layers cifar2,cifar3

The conv layers of Caffe's LeNet (batch 64) and CIFAR-10 quick (batch 100) nets, float32, the
same data and weights on both sides. One training step of a layer is forward + backward: the
weight and bias gradients, and the data gradient except for a net's first layer (its input
needs none, in training as here: layerflow's propagate_down False, torch's requires_grad
False). Both sides start each step with no parameter gradient (layerflow zeroes its grads as
the net does, torch sets .grad to None as optimizers do).

Every measurement runs in a fresh subprocess (the frameworks taken in turn, so a slow spell of
the shared machine hits both), with the same thread count everywhere: NUMBA_NUM_THREADS,
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and torch.set_num_threads. Each process
warms up (compilation, first-touch of buffers), then times a block of steps; a cell reports
the median over processes of the time per step, with the min-max range.

  CPU ms    CPU time of the worker per step (all its threads): the time it ran, not the time
            other processes held the cores; at 1 thread the steadier figure on a busy machine
  GFLOP/s   2 N O (C/G) kh kw Ho Wo per product: forward, weight gradient and (when needed)
            data gradient, so 2x or 3x the forward count; bias terms not counted
  % peak    of the best float32 GEMM rate this script measures with layerflow.blas.gemm (the
            BLAS the layers use) on square matrices, n = 2048, with the same threads
  other     cores kept busy by other processes while the worker ran (/proc/stat); each worker
            waits (up to --max-wait s) for the machine to be quiet, a run above --max-load is
            repeated up to twice and the least disturbed one kept
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from harness import cpu_model, launch, peak_rss_mb, thread_env

# name: (net, batch, C in, C out, image size, kernel, pad, needs the data gradient)
LAYERS = {
    "lenet1": ("LeNet conv1", 64, 1, 20, 28, 5, 0, False),
    "lenet2": ("LeNet conv2", 64, 20, 50, 12, 5, 0, True),
    "cifar1": ("CIFAR-10 quick conv1", 100, 3, 32, 32, 5, 2, False),
    "cifar2": ("CIFAR-10 quick conv2", 100, 32, 32, 16, 5, 2, True),
    "cifar3": ("CIFAR-10 quick conv3", 100, 32, 64, 8, 5, 2, True),
}
FRAMEWORKS = ("layerflow", "torch")
RETRIES = 2  # a worker disturbed by more than --max-load is run again up to this many times


def step_flops(name: str) -> int:
    _, n, c, o, size, k, pad, needs_dx = LAYERS[name]
    out = size + 2 * pad - k + 1
    forward = 2 * n * o * c * k * k * out * out
    return forward * (3 if needs_dx else 2)


def make_data(name: str):
    """Input, upstream gradient, weight and bias of a layer, drawn the same for both sides."""
    _, n, c, o, size, k, pad, _ = LAYERS[name]
    rng = np.random.default_rng(0)
    out = size + 2 * pad - k + 1
    x = rng.standard_normal((n, c, size, size), dtype=np.float32)
    dy = rng.standard_normal((n, o, out, out), dtype=np.float32)
    w = (rng.standard_normal((o, c, k, k)) * np.sqrt(1.0 / (c * k * k))).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    return x, dy, w, b


# ---- the workers ---------------------------------------------------------------------------

def layerflow_step(name: str, x, dy, w, b):
    from layerflow.layers.convolution import Convolution

    _, n, c, o, size, k, pad, needs_dx = LAYERS[name]
    layer = Convolution("conv", Convolution.Params(num_output=o, kernel_size=k, pad=pad),
                        dtype=np.float32, bottom_names=["x"], top_names=["y"])
    layer.build([x.shape])
    layer.propagate_down = [needs_dx]
    layer.params["weight"].data[...] = w
    layer.params["bias"].data[...] = b
    params = list(layer.params.values())

    def forward():
        return layer.forward([x])[0]

    def step():
        for p in params:
            p.grad[...] = 0
        layer.forward([x])
        dx = layer.backward([dy])[0]
        return dx

    def grads():
        return [layer.params["weight"].grad, layer.params["bias"].grad]

    return forward, step, grads, {"slots": layer.slots}


def torch_step(name: str, x, dy, w, b, threads: int):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    _, n, c, o, size, k, pad, needs_dx = LAYERS[name]
    tx = torch.from_numpy(x).requires_grad_(needs_dx)
    tdy = torch.from_numpy(dy)
    tw = torch.from_numpy(w.copy()).requires_grad_(True)
    tb = torch.from_numpy(b.copy()).requires_grad_(True)

    def forward():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, padding=pad).numpy()

    def step():
        tw.grad = tb.grad = tx.grad = None
        F.conv2d(tx, tw, tb, padding=pad).backward(tdy)
        return None if tx.grad is None else tx.grad.numpy()

    def grads():
        return [tw.grad.numpy(), tb.grad.numpy()]

    return forward, step, grads, {"torch_threads": torch.get_num_threads(),
                                  "torch_version": torch.__version__}


def worker(args) -> None:
    """One framework, one layer, one process: print a JSON line of measurements."""
    name, threads = args.layer, args.threads
    x, dy, w, b = make_data(name)
    if args.worker == "layerflow":
        forward, step, grads, info = layerflow_step(name, x, dy, w, b)
    else:
        forward, step, grads, info = torch_step(name, x, dy, w, b, threads)
    rec = {"framework": args.worker, "layer": name, "threads": threads, **info}
    t = time.perf_counter()
    y = np.array(forward())
    dx = step()
    rec["first_step_s"] = time.perf_counter() - t
    dw, db = grads()
    rec["checks"] = {"y": y.astype(np.float64).ravel()[::101].tolist(),
                     "dw": dw.astype(np.float64).ravel()[::7].tolist(),
                     "db": db.astype(np.float64).tolist(),
                     "dx": None if dx is None else
                     np.asarray(dx, np.float64).ravel()[::101].tolist()}
    for _ in range(args.warmup):
        step()
    t = time.perf_counter()
    for _ in range(3):  # calibration: how many steps make --seconds
        step()
    iters = max(5, int(args.seconds * 3 / (time.perf_counter() - t)))
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    rec["step_ms"] = (time.perf_counter() - t) / iters * 1e3
    rec["cpu_ms"] = (time.process_time() - cpu) / iters * 1e3
    rec["iters"] = iters
    t = time.perf_counter()
    for _ in range(iters):
        forward()
    rec["forward_ms"] = (time.perf_counter() - t) / iters * 1e3
    if args.worker == "layerflow":
        import numba

        from layerflow.blas import _blas_thread_control

        rec["numba_threads"] = numba.get_num_threads()
        rec["numba_threading_layer"] = numba.threading_layer()
        control = _blas_thread_control()
        rec["blas_threads"] = control[0]() if control else None
    rec["rss_mb"] = peak_rss_mb()
    print(json.dumps(rec))


def peak_worker(args) -> None:
    """The best float32 GEMM rate (GFLOP/s) of layerflow.blas.gemm, square n = 2048."""
    from numba import njit

    from layerflow.blas import gemm

    @njit(cache=False)
    def products(a, b, c, reps):
        for _ in range(reps):
            gemm(a, b, c, False, False, 1.0, 0.0)

    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    c = np.empty((n, n), np.float32)
    products(a, b, c, 1)
    best = 0.0
    for _ in range(8):
        t = time.perf_counter()
        products(a, b, c, 2)
        best = max(best, 2 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    print(json.dumps({"peak_gflops": best}))


# ---- the driver ----------------------------------------------------------------------------

def agreement(recs) -> str:
    """Largest relative difference between layerflow's and torch's outputs and gradients."""
    lf = next((r for r in recs if r["framework"] == "layerflow"), None)
    th = next((r for r in recs if r["framework"] == "torch"), None)
    if lf is None or th is None:
        return "-"
    worst = 0.0
    for key in ("y", "dw", "db", "dx"):
        a, b = lf["checks"][key], th["checks"][key]
        if a is None or b is None:
            continue
        a, b = np.asarray(a), np.asarray(b)
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0))))
    return f"{worst:.1e}"


def run(args) -> None:
    names = args.layers.split(",") if args.layers else list(LAYERS)
    frameworks = [f for f in FRAMEWORKS if f in args.frameworks.split(",")]
    reps = args.reps or (3 if args.quick else 5)
    seconds = 0.6 if args.quick else 1.5
    lines = [f"# Convolution layer: layerflow vs torch.nn.functional.conv2d (forward + backward)",
             "", f"Measured by `python benchmarks/bench_conv.py{' --quick' if args.quick else ''}`"
             f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"{cpu_model(unknown='unknown CPU')}, "
             f"{os.cpu_count()} logical CPUs; python {platform.python_version()}, numpy "
             f"{np.__version__}.", "",
             f"Median of {reps} fresh processes per cell (min-max in brackets), {args.warmup} "
             f"warm-up steps excluded, then about {seconds} s of steps. float32.", ""]
    for threads in [int(t) for t in args.threads.split(",")]:
        env = thread_env(threads)
        peak = statistics.median(
            launch(__file__, ["--peak"], env, retries=RETRIES, max_load=args.max_load,
                   max_wait=args.max_wait)["peak_gflops"]
            for _ in range(3))
        lines += [f"## {threads} thread(s)", "",
                  f"GEMM peak (layerflow.blas.gemm, float32, n = 2048, best of 8, median of 3 "
                  f"processes): {peak:.0f} GFLOP/s", "",
                  "| layer | shape | framework | step ms | range | CPU ms | fwd ms | layerflow x | "
                  "GFLOP/s | % peak | other load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        print("\n".join(lines[-5:]), flush=True)
        meta = {}
        for name in names:
            net, n, c, o, size, k, pad, needs_dx = LAYERS[name]
            recs = {f: [] for f in frameworks}
            for _ in range(reps):
                for f in frameworks:
                    argv = ["--worker", f, "--layer", name, "--threads", str(threads),
                            "--warmup", str(args.warmup), "--seconds", str(seconds)]
                    recs[f].append(launch(__file__, argv, env, retries=RETRIES,
                                          max_load=args.max_load, max_wait=args.max_wait))
            medians = {f: statistics.median(r["step_ms"] for r in rs) for f, rs in recs.items()}
            shape = (f"{n}x{c}x{size}x{size} -> {o}, k{k}" + (f" pad{pad}" if pad else "") +
                     ("" if needs_dx else ", no dx"))
            for f, rs in recs.items():
                ms = medians[f]
                times = [r["step_ms"] for r in rs]
                gflops = step_flops(name) / (ms / 1e3) / 1e9
                ratio = f"{medians['torch'] / ms:.2f}" if f == "layerflow" and \
                    "torch" in medians else ""
                lines.append(
                    f"| {net} | {shape} | {f} | {ms:.2f} | {min(times):.2f}-{max(times):.2f} | "
                    f"{statistics.median(r['cpu_ms'] for r in rs):.2f} | "
                    f"{statistics.median(r['forward_ms'] for r in rs):.2f} | {ratio} | "
                    f"{gflops:.0f} | {100 * gflops / peak:.0f}% | "
                    f"{statistics.median(r['other_load'] for r in rs):.2f} |")
                print(lines[-1], flush=True)
                meta.update({k: v for k, v in rs[0].items() if k in (
                    "numba_threads", "numba_threading_layer", "blas_threads", "torch_threads",
                    "torch_version", "slots")})
            meta[f"agreement {name}"] = agreement([rs[0] for rs in recs.values()])
        lines += ["", "Threads and agreement (max relative difference of outputs and gradients, "
                  "layerflow vs torch): " + ", ".join(f"{k} {v}" for k, v in meta.items()), ""]
        print(lines[-2], flush=True)
    if args.write:
        Path(args.write).write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 processes per cell, shorter runs")
    ap.add_argument("--threads", default="1,2", help="thread counts to run, e.g. 1,2")
    ap.add_argument("--layers", default="", help=f"subset of {','.join(LAYERS)}")
    ap.add_argument("--frameworks", default="layerflow,torch")
    ap.add_argument("--reps", type=int, default=0, help="processes per cell")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-load", type=float, default=0.3, help="rerun a worker when other "
                    "processes kept more cores than this busy")
    ap.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for the "
                    "machine to be quiet (other load below --max-load) before each worker")
    ap.add_argument("--write", default="", help="also write the markdown report to this file")
    # worker modes (internal)
    ap.add_argument("--worker", choices=FRAMEWORKS)
    ap.add_argument("--peak", action="store_true")
    ap.add_argument("--layer", choices=list(LAYERS))
    ap.add_argument("--seconds", type=float, default=1.5)
    args = ap.parse_args()
    if args.peak:
        peak_worker(args)
    elif args.worker:
        args.threads = int(args.threads)
        worker(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
