"""The same MLP training step in layerflow, PyTorch (CPU) and a plain numpy loop, side by side.

    python benchmarks/bench_mlp.py            # full run (about 10 minutes), writes RESULTS.md
    python benchmarks/bench_mlp.py --quick    # a short run (about 2 minutes)

Three sizes: 784-100-10 batch 64, 784-512-512-10 batch 128, 784-2048-2048-10 batch 512. Every
framework trains the same net (InnerProduct + ReLU layers, softmax cross-entropy), from the same
initial weights (xavier: U(-a, a), a = sqrt(3 / fan_in); biases 0), on the same float32 batches
(the first Fashion-MNIST training images scaled to [0, 1], random data if the files are absent;
each step copies its batch into the framework's input buffer: `net.feed` in layerflow,
`copy_`/`copyto` into a preallocated tensor/array in the other two),
with the same SGD (momentum 0.9, weight decay 5e-4, lr 0.01, applied to every param), all in
float32. The loss curves of the three are compared step by step before any speed is quoted.

Every measurement runs in a fresh subprocess (one per framework, size and repetition, taken in
turn so that a slow spell of the shared host hits all of them), with the same thread count on
every side: NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS (every OpenBLAS pool, checked with
threadpoolctl), OMP_NUM_THREADS, MKL_NUM_THREADS and torch.set_num_threads. Reported:
  samples/s   median over the repetitions (warm-up steps excluded), with the min-max range
  GFLOP/s     exact count per step: 6 B P - 2 B D0 H1 (P weights; the first layer needs no dx)
  % of peak   of the best float32 matrix-multiply rate measured by this script (numpy and
              torch, square matrices, same threads)
  first iter  seconds from launching the process to the end of the first training step;
              layerflow with a cold Numba cache (NUMBA_CACHE_DIR an empty folder) and warm
  peak RSS    ru_maxrss of the subprocess, and its value right after the imports
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import (LR, MOMENTUM, WEIGHT_DECAY, MLP_SIZES as SIZES, launch, matmul_peaks,
                     mlp_net_yaml, numba_threading_layer, peak_rss_mb, sgd_solver, thread_env,
                     thread_pools, torch_sgd_step, versions)

HERE = Path(__file__).resolve().parent
NUM_BATCHES = 16  # distinct batches, cycled
CHECK_STEPS = 10  # loss curve compared over these first steps
FRAMEWORKS = ("layerflow", "torch", "numpy")
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
OTHER_SECTIONS = ("<!-- bench_cnn.py: start -->", "## Data-parallel training over MPI")
FASHION_LABELS = Path("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz")


def step_flops(sizes, batch) -> int:
    """Exact FLOPs of one training step of the matrix products: 6 B P - 2 B D0 H1."""
    p = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6 * batch * p - 2 * batch * sizes[0] * sizes[1]


# ---- the three training steps ------------------------------------------------------------

def layerflow_trainer(sizes, batch, weights, workdir):
    solver = sgd_solver(workdir, mlp_net_yaml(sizes, batch))
    net = solver.net
    copied = net.copy_from({f"ip{i + 1}.{k}": weights[f"{k[0]}{i}"]
                            for i in range(len(sizes) - 1) for k in ("weight", "bias")})
    assert len(copied) == 2 * (len(sizes) - 1), copied

    def step(x, y):
        net.feed({"data": x, "label": y})
        return solver.step(1)
    return step


def torch_trainer(sizes, batch, weights, threads):
    import torch

    torch.set_num_threads(threads)
    mods = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(weights[f"w{i}"]))
            lin.bias.copy_(torch.from_numpy(weights[f"b{i}"]))
        mods.append(lin)
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    xb, yb = torch.empty(batch, sizes[0]), torch.empty(batch, dtype=torch.int64)
    return torch_sgd_step(model, xb, yb)


def numpy_trainer(sizes, batch, weights):
    """A plain numpy loop, written the way one writes it: operators, a few in-place updates."""
    ws = [weights[f"w{i}"].copy() for i in range(len(sizes) - 1)]
    bs = [weights[f"b{i}"].copy() for i in range(len(sizes) - 1)]
    vw = [np.zeros_like(w) for w in ws]
    vb = [np.zeros_like(b) for b in bs]
    rows = np.arange(batch)
    lr, m, wd = np.float32(LR), np.float32(MOMENTUM), np.float32(WEIGHT_DECAY)
    xb, yb = np.empty((batch, sizes[0]), np.float32), np.empty(batch, np.int64)

    def step(x, y):
        np.copyto(xb, x)  # the batch into an input buffer, as layerflow's feed does
        np.copyto(yb, y)
        x, y = xb, yb
        acts = [x]
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = acts[-1] @ w.T + b
            if i < len(ws) - 1:
                np.maximum(h, 0, out=h)
            acts.append(h)
        s = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - s[rows, y]))
        d = e / total
        d[rows, y] -= 1
        d /= np.float32(batch)
        for i in reversed(range(len(ws))):
            gw = d.T @ acts[i]
            gb = d.sum(axis=0)
            if i > 0:
                d = d @ ws[i]
                d *= acts[i] > 0
            for p, g, v in ((ws[i], gw, vw[i]), (bs[i], gb, vb[i])):
                g += wd * p
                v *= m
                v += lr * g
                p -= v
        return loss
    return step


def worker(args) -> None:
    """One framework, one size, one process: print a JSON line of measurements."""
    t_launch = args.t0
    sizes, batch = SIZES[args.size]
    threads = args.threads
    rec = {"framework": args.worker, "size": args.size, "threads": threads}
    d = np.load(args.data)
    x_all, y_all = d["x"], d["y"]
    xs = [np.ascontiguousarray(x_all[i * batch:(i + 1) * batch]) for i in range(NUM_BATCHES)]
    ys = [y_all[i * batch:(i + 1) * batch] for i in range(NUM_BATCHES)]
    del x_all, y_all
    weights = {k: d[k] for k in d.files if k[0] in "wb"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.worker == "layerflow":
            import numba
            import layerflow  # noqa: F401

            rec["rss_import_mb"] = peak_rss_mb()
            step = layerflow_trainer(sizes, batch, weights, Path(tmp))
            ys = [y.astype(np.float32) for y in ys]
        elif args.worker == "torch":
            import torch

            rec["rss_import_mb"] = peak_rss_mb()
            step = torch_trainer(sizes, batch, weights, threads)
            xs = [torch.from_numpy(x) for x in xs]
            ys = [torch.from_numpy(y.astype(np.int64)) for y in ys]
        else:
            rec["rss_import_mb"] = peak_rss_mb()
            step = numpy_trainer(sizes, batch, weights)
            ys = [y.astype(np.int64) for y in ys]
        losses = [step(xs[0], ys[0])]
        rec["first_iter_s"] = time.time() - t_launch
        for i in range(1, args.warmup):
            losses.append(step(xs[i % NUM_BATCHES], ys[i % NUM_BATCHES]))
        rec["losses"] = losses[:CHECK_STEPS]
        if args.iters:
            k = args.warmup
            t = time.perf_counter()
            for i in range(args.iters):
                j = (k + i) % NUM_BATCHES
                step(xs[j], ys[j])
            rec["seconds"] = time.perf_counter() - t
            rec["samples_per_s"] = args.iters * batch / rec["seconds"]
    rec["rss_peak_mb"] = peak_rss_mb()
    rec["thread_pools"] = thread_pools()
    if args.worker == "layerflow":
        rec["numba_threading_layer"] = numba_threading_layer()  # before get_num_threads starts it
        rec["numba_threads"] = numba.get_num_threads()
    if args.worker == "torch":
        rec["torch_threads"] = torch.get_num_threads()
    print(json.dumps(rec))


# ---- the driver --------------------------------------------------------------------------

def make_data(path: Path) -> str:
    """Batches (the first Fashion-MNIST training images, or random) and initial weights."""
    n = NUM_BATCHES * max(b for _, b in SIZES)
    if FASHION.is_file() and FASHION_LABELS.is_file():
        import gzip

        with gzip.open(FASHION, "rb") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n]
        with gzip.open(FASHION_LABELS, "rb") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        source = f"Fashion-MNIST, the first {n} training images, scaled to [0, 1]"
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n, np.uint8)
        source = f"random uint8 images scaled to [0, 1] ({FASHION} not found)"
    arrays = {"x": (x / np.float32(255)).astype(np.float32), "y": y.astype(np.int64)}
    rng = np.random.default_rng(1)
    for s, (sizes, _) in enumerate(SIZES):
        for i, (k, h) in enumerate(zip(sizes[:-1], sizes[1:])):
            a = np.sqrt(3.0 / k)
            arrays[f"w{i}_{s}"] = rng.uniform(-a, a, (h, k)).astype(np.float32)
            arrays[f"b{i}_{s}"] = np.zeros(h, np.float32)
    for s in range(len(SIZES)):  # one file per size: workers load only their own weights
        sub = {"x": arrays["x"], "y": arrays["y"]}
        sub.update({k.rsplit("_", 1)[0]: v for k, v in arrays.items() if k.endswith(f"_{s}")})
        np.savez(path / f"data{s}.npz", **sub)
    return source


def cpu_info() -> dict:
    info = {"cpus": os.cpu_count(), "model": platform.processor() or "?", "flags": ""}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                info["model"] = value.strip()
            elif key == "flags":
                flags = set(value.split())
                info["flags"] = " ".join(f for f in ("fma", "avx2", "avx512f", "avx512_bf16",
                                                     "amx_tile", "hypervisor") if f in flags)
            elif key == "cpu MHz":
                info["mhz"] = value.strip()
    except OSError:
        pass
    return info


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def run(args) -> None:
    threads_list = [int(t) for t in args.threads.split(",")] if args.threads else (
        [os.cpu_count() or 1] if args.quick else sorted({1, os.cpu_count() or 1}, reverse=True))
    reps = args.repeats or (3 if args.quick else 5)
    chosen = args.size_list
    cold_reps = 1 if args.quick else 3
    iters = [500, 120, 12] if args.quick else [2000, 500, 40]
    warmup = CHECK_STEPS
    frameworks = [f for f in FRAMEWORKS if f != "torch" or _has_torch()]
    tmp = Path(tempfile.mkdtemp(prefix="bench_mlp_"))
    try:
        source = make_data(tmp)
        results = {}
        for threads in threads_list:
            env = thread_env(threads)
            print(f"== {threads} thread(s)", flush=True)
            peak = launch(__file__, ["--worker", "peak", "--threads", str(threads)]
                          + (["--quick"] if args.quick else []), env, send_t0=True)
            peak.pop("other_load", None)
            print(f"   matmul peak GFLOP/s: {peak}", flush=True)
            runs: dict = {}
            warm_cache = tmp / f"numba_cache_{threads}"
            for s in chosen:
                for r in range(cold_reps):
                    cache = tmp / f"cold_{threads}_{s}_{r}"
                    cache.mkdir()
                    e = dict(env, NUMBA_CACHE_DIR=str(cache))
                    rec = launch(__file__, ["--worker", "layerflow", "--size", str(s),
                                            "--threads", str(threads), "--iters", "0", "--warmup",
                                            "1", "--data", str(tmp / f"data{s}.npz")], e,
                                 send_t0=True)
                    runs.setdefault((s, "cold"), []).append(rec)
                    shutil.rmtree(cache, ignore_errors=True)
                    print(f"   size {s} layerflow cold first iteration "
                          f"{rec['first_iter_s']:.2f} s", flush=True)
            for s in chosen:  # fill the warm cache: these runs are not counted
                launch(__file__, ["--worker", "layerflow", "--size", str(s), "--threads",
                                  str(threads), "--iters", "0", "--warmup", "1", "--data",
                                  str(tmp / f"data{s}.npz")],
                       dict(env, NUMBA_CACHE_DIR=str(warm_cache)), send_t0=True)
            for r in range(reps):
                for s in chosen:
                    for fw in frameworks:
                        e = dict(env, NUMBA_CACHE_DIR=str(warm_cache))
                        rec = launch(__file__, ["--worker", fw, "--size", str(s), "--threads",
                                                str(threads), "--iters", str(iters[s]),
                                                "--warmup", str(warmup), "--data",
                                                str(tmp / f"data{s}.npz")], e,
                                     retries=args.retries, send_t0=True)
                        runs.setdefault((s, fw), []).append(rec)
                        print(f"   rep {r} size {s} {fw:9s} {fmt_rate(rec['samples_per_s'])} "
                              f"samples/s, first iter {rec['first_iter_s']:.2f} s, "
                              f"other load {rec['other_load']:.2f} cores", flush=True)
            results[threads] = (peak, runs)
        report = write_report(results, source, frameworks, reps, cold_reps, iters, args)
        print(report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_torch() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def write_report(results, source, frameworks, reps, cold_reps, iters, args) -> str:
    v = versions(("numba", "scipy", "torch", "threadpoolctl"), packages=("layerflow",))
    cpu = cpu_info()
    lines = ["# MLP training step: layerflow vs PyTorch CPU vs a plain numpy loop", "",
             f"Written by `python benchmarks/bench_mlp.py{' --quick' if args.quick else ''}"
             f"{f' --sizes {args.sizes}' if args.sizes else ''}` "
             f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- CPU: {cpu['model']}, {cpu['cpus']} logical CPUs, flags: {cpu['flags']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- data: {source}; {NUM_BATCHES} batches cycled; float32 everywhere",
             f"- training: SGD lr {LR}, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY} on "
             f"every param; xavier-uniform init shared by all three; softmax cross-entropy",
             f"- samples/s: median of {reps} fresh processes per cell (min-max in brackets), "
             f"{CHECK_STEPS} warm-up steps excluded, then {iters} steps per size",
             "- GFLOP/s counts 6BP - 2*B*D0*H1 per step (P = weights); % of peak uses the best "
             "float32 matmul rate measured below",
             f"- first iter: launch of a fresh process to the end of step 1; cold = empty "
             f"NUMBA_CACHE_DIR (median of {cold_reps}), warm = populated cache",
             "- peak RSS: ru_maxrss of the worker; in brackets, right after the imports",
             "- other load: cores kept busy by other processes of this shared machine during "
             f"the run (median); a run above 0.3 was repeated, up to {args.retries} times, the "
             "least disturbed kept", ""]
    targets = []
    chosen = args.size_list
    for threads, (peak, runs) in results.items():
        best = max(peak.values())
        lf_rec = runs[(chosen[0], "layerflow")][-1]
        pools = "; ".join(f"{p['lib']} ({p['api']}, {p['arch']}) {p['threads']}"
                          for p in lf_rec["thread_pools"])
        torch_threads = runs.get((chosen[0], "torch"), [{}])[-1].get("torch_threads", "-")
        lines += [f"## {threads} thread(s)", "",
                  f"Threads: numba {lf_rec['numba_threads']} "
                  f"(layer {lf_rec['numba_threading_layer']}), torch {torch_threads}, BLAS "
                  f"pools: {pools}.  ",
                  "Matmul peak (best of square float32 products): "
                  + ", ".join(f"{k} {val:.0f}" for k, val in peak.items())
                  + f" GFLOP/s -> peak = {best:.0f} GFLOP/s", "",
                  "| size | batch | framework | samples/s | range | layerflow x | GFLOP/s "
                  "| % peak | first iter cold / warm (s) | peak RSS MB (import) | other load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in chosen:
            sizes, batch = SIZES[s]
            flops = step_flops(sizes, batch)
            med = {fw: statistics.median(r["samples_per_s"] for r in runs[(s, fw)])
                   for fw in frameworks}
            for fw in frameworks:
                rs = runs[(s, fw)]
                rates = [r["samples_per_s"] for r in rs]
                gf = med[fw] / batch * flops / 1e9
                first = f"{statistics.median(r['first_iter_s'] for r in rs):.2f}"
                if fw == "layerflow":
                    cold = statistics.median(r["first_iter_s"] for r in runs[(s, "cold")])
                    first = f"{cold:.2f} / {first}"
                ratio = "" if fw == "layerflow" else f"{med['layerflow'] / med[fw]:.2f}"
                rss = statistics.median(r["rss_peak_mb"] for r in rs)
                rss0 = statistics.median(r["rss_import_mb"] for r in rs)
                lines.append(f"| {'-'.join(map(str, sizes))} | {batch} | {fw} | "
                             f"{fmt_rate(med[fw])} | {fmt_rate(min(rates))}-"
                             f"{fmt_rate(max(rates))} | {ratio} | {gf:.1f} | "
                             f"{100 * gf / best:.1f}% | {first} | {rss:.0f} ({rss0:.0f}) | "
                             f"{statistics.median(r['other_load'] for r in rs):.2f} |")
        lines.append("")
        lines.append("Loss curves (first steps, max |loss - layerflow's| over "
                     f"{CHECK_STEPS} steps and all runs):")
        lines.append("")
        for s in chosen:
            sizes, batch = SIZES[s]
            ref = runs[(s, "layerflow")][0]["losses"]
            diffs = []
            for fw in frameworks:
                worst = max(abs(a - b) for r in runs[(s, fw)] for a, b in zip(r["losses"], ref))
                diffs.append(f"{fw} {worst:.1e}")
            lines.append(f"- {'-'.join(map(str, sizes))}: layerflow losses "
                         f"{ref[0]:.4f} -> {ref[-1]:.4f}; " + ", ".join(diffs))
        lines.append("")
        # the targets of issue 4
        last = len(SIZES) - 1
        all_sizes = last in chosen and len(chosen) == len(SIZES)
        med = {(s, fw): statistics.median(r["samples_per_s"] for r in runs[(s, fw)])
               for s in chosen for fw in frameworks}
        warm = statistics.median(r["first_iter_s"] for s in chosen
                                 for r in runs[(s, "layerflow")])
        t = [f"Targets at {threads} thread(s):"]
        if "torch" in frameworks:
            ratios = [med[(s, "layerflow")] / med[(s, "torch")] for s in chosen]
            t.append(f"- layerflow / PyTorch >= 1.5 on every size{'' if all_sizes else ' run'}: "
                     + ", ".join(f"{x:.2f}" for x in ratios)
                     + (" -> met" if min(ratios) >= 1.5 else " -> NOT met"))
        if last in chosen and "numpy" in frameworks:
            gf = med[(last, "layerflow")] / SIZES[last][1] * step_flops(*SIZES[last]) / 1e9
            x = med[(last, "layerflow")] / med[(last, "numpy")]
            t.append(f"- layerflow / numpy >= 0.95 on the largest: {x:.2f}"
                     + (" -> met" if x >= 0.95 else " -> NOT met"))
            t.append(f"- >= 70% of matmul peak on the largest: {100 * gf / best:.1f}%"
                     + (" -> met" if gf >= 0.7 * best else " -> NOT met")
                     + f" ({100 * gf / peak['numpy']:.1f}% of the OpenBLAS peak that "
                       f"layerflow's BLAS reaches, {peak['numpy']:.0f} GFLOP/s)")
        t.append(f"- warm start to the first iteration <= 1.5 s: {warm:.2f} s"
                 + (" -> met" if warm <= 1.5 else " -> NOT met"))
        lines += t + [""]
        targets += t
    text = "\n".join(lines)
    out = Path(args.out) if args.out else HERE / "RESULTS.md"
    # the sections of bench_cnn.py and bench_mpi.py follow this one: keep them
    old = out.read_text() if out.is_file() else ""
    starts = [old.index(m) for m in OTHER_SECTIONS if m in old]
    rest = old[min(starts):] if starts else ""
    out.write_text(text + ("\n" + rest if rest else ""))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    ap.add_argument("--threads", help="comma-separated thread counts (default: 1 and all CPUs; "
                                      "--quick: all CPUs)")
    ap.add_argument("--repeats", type=int, help="fresh processes per cell (default 5, quick 3)")
    ap.add_argument("--sizes", help="comma-separated sizes to run, by index: 0 = 784-100-10, "
                                    "1 = 784-512-512-10, 2 = 784-2048-2048-10 (default: all); "
                                    "the largest-size targets are checked only when 2 runs")
    ap.add_argument("--out", help="where to write the table (default benchmarks/RESULTS.md)")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeat a run disturbed by other processes (> 0.3 cores busy) up to "
                         "this many times, for every framework alike (default 2)")
    # worker mode (internal)
    ap.add_argument("--worker", choices=FRAMEWORKS + ("peak",), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=CHECK_STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.size_list = sorted({int(i) for i in args.sizes.split(",")}) if args.sizes else list(
        range(len(SIZES)))
    if not all(0 <= i < len(SIZES) for i in args.size_list):
        ap.error(f"--sizes: indices are 0..{len(SIZES) - 1}")
    if args.worker == "peak":
        print(json.dumps(matmul_peaks(int(args.threads), args.quick)))
    elif args.worker:
        args.threads = int(args.threads)
        args.t0 = args.t0 or time.time()
        worker(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
