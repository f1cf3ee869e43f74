"""Pooling and LRN, forward and forward+backward: layerflow's layers against PyTorch (CPU).

    python benchmarks/bench_pool_lrn.py            # 5 processes per framework and thread count
    python benchmarks/bench_pool_lrn.py --quick    # 2 processes, fewer iterations

Shapes (float32, NCHW):
  pooling   Caffe's CIFAR-10-quick (batch 100): pool1 MAX 3/2 on 32x32x32, pool2 AVE 3/2 on
            32x16x16, pool3 AVE 3/2 on 64x8x8; LeNet (batch 64): pool1 MAX 2/2 on 20x24x24,
            pool2 MAX 2/2 on 50x8x8. Caffe's CEIL rounding on both sides (torch ceil_mode=True;
            avg_pool2d counts padding like Caffe, count_include_pad=True).
  LRN       ACROSS_CHANNELS n 5, alpha 1e-4, beta 0.75 (AlexNet's) on 32x16x16 (batch 100) and
            on CaffeNet's norm1, 96x27x27 at batch 8 (torch: F.local_response_norm, the same
            formula); WITHIN_CHANNEL n 3, alpha 5e-5, beta 0.75 (CIFAR-10-full's norm1 and
            norm2: 32x16x16 and 32x8x8, batch 100); torch has no such op, so its side is the
            formula written with avg_pool2d (x * (1 + alpha * avgpool3x3(x^2))^-beta) and autograd.

What is timed, per call: `forward` alone (layerflow: layer.forward; torch: the op under
no_grad), and forward + backward (layerflow: forward then backward of a fixed top diff; torch:
the op on an input with requires_grad, then torch.autograd.grad of the same top diff). Both
sides compute into fresh or preallocated buffers as they normally do; nothing else is inside
the timed region.

Method: every (framework, thread count, repetition) runs in a fresh subprocess with
OMP_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS and torch.set_num_threads all set to the
thread count; inside it, each case gets warm-up calls (compilation or cache load excluded),
then `iters` timed calls, and the median call time is kept. The table gives the median over
the processes, with the min-max of those medians. This host is shared: the cores other
processes kept busy during each worker are measured (/proc/stat less the worker's own CPU
time); a worker disturbed by more than 0.3 cores is rerun (--retries) and the least disturbed
run kept. A busy core hurts 2-thread runs most: a parallel region waits for its slowest
thread. Before any timing, the outputs and input gradients of the two frameworks are compared
on every case.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from harness import launch, thread_env

POOL_CASES = [
    ("cifar10_quick pool1", (100, 32, 32, 32), "MAX", 3, 2),
    ("cifar10_quick pool2", (100, 32, 16, 16), "AVE", 3, 2),
    ("cifar10_quick pool3", (100, 64, 8, 8), "AVE", 3, 2),
    ("lenet pool1", (64, 20, 24, 24), "MAX", 2, 2),
    ("lenet pool2", (64, 50, 8, 8), "MAX", 2, 2),
]
LRN_CASES = [
    ("LRN across, 32x16x16", (100, 32, 16, 16), "ACROSS_CHANNELS", 5, 1e-4, 0.75),
    ("LRN across, caffenet norm1", (8, 96, 27, 27), "ACROSS_CHANNELS", 5, 1e-4, 0.75),
    ("LRN within, cifar10_full norm1", (100, 32, 16, 16), "WITHIN_CHANNEL", 3, 5e-5, 0.75),
    ("LRN within, cifar10_full norm2", (100, 32, 8, 8), "WITHIN_CHANNEL", 3, 5e-5, 0.75),
]
CASES = [c[0] for c in POOL_CASES + LRN_CASES]


def case_data(name):
    """(shape, x, dout-shape maker) for a case: the same float32 data in every process."""
    spec = next(c for c in POOL_CASES + LRN_CASES if c[0] == name)
    rng = np.random.default_rng(CASES.index(name))
    # LRN sees the output of a ReLU'd convolution in these nets: magnitudes of order 1-10
    scale = 1.0 if spec in POOL_CASES else 5.0
    x = (rng.standard_normal(spec[1]) * scale).astype(np.float32)
    return spec, x, rng


# ---- the two sides -----------------------------------------------------------------------------

def layerflow_case(name):
    """(forward(), forward_backward(), outputs()) of layerflow's layer for a case."""
    from layerflow.layers.lrn import LRN
    from layerflow.layers.pooling import Pooling

    spec, x, rng = case_data(name)
    if spec in POOL_CASES:
        _, shape, pool, k, s = spec
        cls, params = Pooling, Pooling.Params(pool=pool, kernel_size=k, stride=s)
    else:
        _, shape, region, n, alpha, beta = spec
        cls, params = LRN, LRN.Params(local_size=n, alpha=alpha, beta=beta, norm_region=region)
    layer = cls(name, params, dtype=np.float32, bottom_names=["x"], top_names=["y"])
    (top_shape,) = layer.build([shape])
    layer.propagate_down = [True]
    dout = rng.standard_normal(top_shape).astype(np.float32)

    def forward():
        layer.forward([x])

    def forward_backward():
        layer.forward([x])
        layer.backward([dout])

    def outputs():
        y = np.array(layer.forward([x])[0])
        return y, np.array(layer.backward([dout])[0])

    return forward, forward_backward, outputs


def torch_case(name):
    import torch
    import torch.nn.functional as F

    spec, x_np, rng = case_data(name)
    x = torch.from_numpy(x_np)
    if spec in POOL_CASES:
        _, shape, pool, k, s = spec
        if pool == "MAX":
            def op(t):
                return F.max_pool2d(t, k, s, ceil_mode=True)
        else:
            def op(t):
                return F.avg_pool2d(t, k, s, ceil_mode=True, count_include_pad=True)
    else:
        _, shape, region, n, alpha, beta = spec
        if region == "ACROSS_CHANNELS":
            def op(t):
                return F.local_response_norm(t, n, alpha, beta, 1.0)
        else:
            def op(t):
                pooled = F.avg_pool2d(t * t, n, 1, (n - 1) // 2, count_include_pad=True)
                return t * (1.0 + alpha * pooled).pow(-beta)
    with torch.no_grad():
        top_shape = tuple(op(x).shape)
    dout = torch.from_numpy(rng.standard_normal(top_shape).astype(np.float32))
    xg = x.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            op(x)

    def forward_backward():
        y = op(xg)
        torch.autograd.grad(y, xg, dout)

    def outputs():
        y = op(xg)
        (dx,) = torch.autograd.grad(y, xg, dout)
        return y.detach().numpy().copy(), dx.numpy().copy()

    return forward, forward_backward, outputs


# ---- a worker: one framework, one thread count, every case -------------------------------------

def worker(framework, threads, iters, cases):
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        got_threads = torch.get_num_threads()
        make = torch_case
    else:
        import numba
        numba.set_num_threads(threads)
        got_threads = numba.get_num_threads()
        make = layerflow_case
    results = {}
    for name in cases:
        forward, forward_backward, _ = make(name)
        row = {}
        for mode, fn in (("forward", forward), ("forward+backward", forward_backward)):
            for _ in range(3):
                fn()
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            row[mode] = statistics.median(times)
        results[name] = row
    info = {"threads": got_threads}
    if framework == "layerflow":
        import numba
        info["threading_layer"] = numba.threading_layer()
    print(json.dumps({"results": results, "info": info}))


def run_worker(framework, threads, iters, cases, retries):
    """One worker process (harness.launch): a run during which other processes kept more than
    0.3 cores busy is repeated up to `retries` times (the same rule for both frameworks) and
    the least disturbed one kept; its "other_load" is those cores."""
    return launch(__file__, ["--worker", framework, str(threads), str(iters), json.dumps(cases)],
                  thread_env(threads), retries=retries)


# ---- checks, then the timings --------------------------------------------------------------

def check_agreement():
    """Max relative difference (|a - b| / max(|a|, |b|, 1)) of outputs and input gradients."""
    rows = []
    for name in CASES:
        y_lf, dx_lf = layerflow_case(name)[2]()
        y_t, dx_t = torch_case(name)[2]()
        errs = []
        for a, b in ((y_lf, y_t), (dx_lf, dx_t)):
            assert a.shape == b.shape, (name, a.shape, b.shape)
            errs.append(float(np.max(np.abs(a - b) / np.maximum(np.maximum(abs(a), abs(b)), 1))))
        rows.append((name, *errs))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 processes, 20 iterations")
    ap.add_argument("--reps", type=int, default=None, help="processes per configuration")
    ap.add_argument("--iters", type=int, default=None, help="timed calls per case and process")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma separated")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeat a process disturbed by other load (> 0.3 cores) up to N times")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        framework, threads, iters, cases = args.worker
        worker(framework, int(threads), int(iters), json.loads(cases))
        return
    reps = args.reps or (2 if args.quick else 5)
    iters = args.iters or (20 if args.quick else 50)
    thread_counts = [int(t) for t in args.threads.split(",")]

    import numba
    import torch
    print(f"# Pooling and LRN: layerflow vs PyTorch CPU\n")
    print(f"- {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"python {platform.python_version()}, numpy {np.__version__}, numba "
          f"{numba.__version__}, torch {torch.__version__}")
    print(f"- float32; median call time over {iters} calls after 3 warm-up calls, per fresh "
          f"process; median of {reps} processes per cell, [min-max] of those medians; "
          f"x = torch's time / layerflow's\n")
    print("Agreement (max relative difference, output / input gradient):\n")
    for name, e_y, e_dx in check_agreement():
        print(f"- {name}: {e_y:.1e} / {e_dx:.1e}")

    # (framework, threads) -> list of per-process results; processes taken in turn
    runs = {(fw, t): [] for t in thread_counts for fw in ("layerflow", "torch")}
    for _ in range(reps):
        for key in runs:
            runs[key].append(run_worker(key[0], key[1], iters, CASES, args.retries))
    for t in thread_counts:
        lf_info = runs[("layerflow", t)][0]["info"]
        loads = [r["other_load"] for fw in ("layerflow", "torch") for r in runs[(fw, t)]]
        print(f"\n## {t} thread(s)\n")
        print(f"numba {lf_info['threads']} ({lf_info['threading_layer']}), torch "
              f"{runs[('torch', t)][0]['info']['threads']}; cores kept busy by other processes "
              f"during the kept runs: median {statistics.median(loads):.2f}, "
              f"{min(loads):.2f}-{max(loads):.2f} of {os.cpu_count()}\n")
        print("| case | shape | mode | layerflow ms | torch ms | x |")
        print("|---|---|---|---|---|---|")
        for name in CASES:
            spec = next(c for c in POOL_CASES + LRN_CASES if c[0] == name)
            for mode in ("forward", "forward+backward"):
                cells = []
                for fw in ("layerflow", "torch"):
                    ms = [r["results"][name][mode] * 1e3 for r in runs[(fw, t)]]
                    cells.append((statistics.median(ms), min(ms), max(ms)))
                (lf_ms, lf_lo, lf_hi), (t_ms, t_lo, t_hi) = cells
                print(f"| {name} | {'x'.join(map(str, spec[1]))} | {mode} | {lf_ms:.3f} "
                      f"[{lf_lo:.3f}-{lf_hi:.3f}] | {t_ms:.3f} [{t_lo:.3f}-{t_hi:.3f}] | "
                      f"{t_ms / lf_ms:.2f} |")


if __name__ == "__main__":
    main()
