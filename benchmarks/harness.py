"""The measuring machinery the benchmark scripts share.

A script imports it as `from harness import ...`: scripts run as `python benchmarks/bench_x.py`,
which puts this folder on sys.path, for the driver and for the workers it re-launches alike.

- thread_env, THREAD_VARS: one thread count for Numba, OpenBLAS, OpenMP and MKL alike
- launch: one measurement in a fresh worker process, with the load that other processes of the
  shared machine put on it meanwhile (busy_seconds, wait_for_quiet)
- matmul_peaks: the float32 matrix-multiply rate that a benchmark's GFLOP/s are quoted against
- peak_rss_mb, thread_pools, numba_threading_layer, versions, cpu_model: what a worker or a
  report records about the process and the machine
- LR, MOMENTUM, WEIGHT_DECAY, sgd_solver, torch_sgd_step, MLP_SIZES, mlp_net_yaml: the SGD
  training that every training benchmark runs (layerflow's and torch's) and the MLP that
  bench_mlp.py and step_breakdown.py train

numpy, torch and layerflow are imported inside the functions that use them, never here:
step_breakdown.py imports this module before it sets the thread variables, which a BLAS reads
once, when it loads.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
# (layer widths, batch) of bench_mlp.py's three MLPs, which step_breakdown.py times too
MLP_SIZES = [((784, 100, 10), 64), ((784, 512, 512, 10), 128), ((784, 2048, 2048, 10), 512)]


# ---- worker processes and the load of the shared machine ---------------------------------------

def thread_env(threads: int) -> dict:
    """This process's environment with every thread pool (THREAD_VARS) set to `threads`."""
    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    return env


def busy_seconds() -> float:
    """CPU-seconds spent busy by every process of the machine so far (/proc/stat); nan where
    there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_load: float, max_wait: float) -> None:
    """Wait (at most max_wait seconds) until other processes keep fewer than max_load cores
    busy over one second: the machine is shared, and a worker started during someone else's
    burst measures that burst."""
    deadline = time.perf_counter() + max_wait
    while True:
        busy0 = busy_seconds()
        time.sleep(1.0)
        if busy_seconds() - busy0 <= max_load or time.perf_counter() > deadline:
            return


def launch(script: str, argv: list[str], env: dict, retries: int = 0, max_load: float = 0.3,
           max_wait: float = 0.0, send_t0: bool = False) -> dict:
    """Run `python script *argv` as one worker and return the JSON object its last line of
    output holds, plus "other_load": the cores (a float) that other processes kept busy
    meanwhile, from /proc/stat less the worker's own CPU time, over its wall time.

    The shared host is sometimes busy with other work. A run during which other processes
    kept more than `max_load` cores busy is repeated (up to `retries` times, the same rule for
    every framework) and the least disturbed attempt is kept; its load is reported. With
    `max_wait` > 0, each attempt first waits up to that many seconds for a quiet machine
    (wait_for_quiet). With `send_t0`, the worker gets `--t0 <time.time() at its launch>`, to
    time from its launch to its first step.
    """
    best = None
    for _ in range(retries + 1):
        if max_wait > 0:
            wait_for_quiet(max_load, max_wait)
        cmd = [sys.executable, str(Path(script).resolve()), *argv]
        if send_t0:
            cmd += ["--t0", repr(time.time())]
        ru0, busy0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), \
            time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        ru1, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
        if res.returncode != 0:
            raise SystemExit(f"benchmark worker failed: {' '.join(argv)}\n{res.stderr[-3000:]}")
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        rec["other_load"] = max(0.0, (busy1 - busy0 - own) / wall)
        if best is None or rec["other_load"] < best["other_load"]:
            best = rec
        if rec["other_load"] <= max_load:
            break
    return best


# ---- what a worker measures about itself -------------------------------------------------------

def matmul_peaks(threads: int, quick: bool) -> dict:
    """The best float32 matrix-multiply rate, in GFLOP/s (2 n^3 flops per product), of numpy's
    BLAS ("numpy") and of torch ("torch", left out when torch is not installed): square
    products of n = 1024, 2048 and 3072 (quick: 1024 and 2048), each timed after a warm-up
    product, best of 5 (n > 2048: of 2). torch runs `threads` threads; numpy's BLAS runs what
    the environment (thread_env) gives it."""
    import numpy as np

    sizes = (1024, 2048) if quick else (1024, 2048, 3072)

    def numpy_operands(n):
        a = np.random.default_rng(0).random((n, n), np.float32)
        b = np.random.default_rng(1).random((n, n), np.float32)
        return a, b, np.empty((n, n), np.float32)

    out = {"numpy": _best_matmul_rate(sizes, numpy_operands, np.dot)}
    try:
        import torch
    except ImportError:
        return out
    torch.set_num_threads(threads)
    out["torch"] = _best_matmul_rate(
        sizes, lambda n: (torch.rand(n, n), torch.rand(n, n), torch.empty(n, n)),
        lambda a, b, c: torch.mm(a, b, out=c))
    return out


def _best_matmul_rate(sizes, operands, matmul) -> float:
    """GFLOP/s of the fastest `matmul(a, b, c)` (c = a b) over the square sizes."""
    best = 0.0
    for n in sizes:
        a, b, c = operands(n)
        for _ in range(2 if n > 2048 else 5):
            matmul(a, b, c)
            t = time.perf_counter()
            matmul(a, b, c)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far (ru_maxrss), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def thread_pools() -> list[dict]:
    """The native thread pools this process has loaded (BLAS, OpenMP; from threadpoolctl, [] when
    it is not installed): per pool its API, library file, thread count and CPU architecture."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"api": i["internal_api"], "lib": Path(i["filepath"]).name,
             "threads": i["num_threads"], "arch": i.get("architecture")}
            for i in threadpool_info()]


def numba_threading_layer() -> str:
    """The threading layer Numba runs its parallel kernels on (omp, tbb, workqueue). Numba
    chooses it at the first parallel kernel; where none ran yet (a small MLP may run none),
    a tiny one is run to find out, and the answer says so."""
    import numba
    import numpy as np

    try:
        return numba.threading_layer()
    except ValueError:
        @numba.njit(parallel=True, cache=False)
        def touch(x):
            for i in numba.prange(x.size):
                x[i] += 1
        touch(np.zeros(4))
        return numba.threading_layer() + ", no parallel kernel ran"


# ---- what a report says about the machine ------------------------------------------------------

def versions(modules: tuple[str, ...], packages: tuple[str, ...] = ()) -> dict:
    """Version strings: python, numpy, then each of `modules` by its __version__ ("not
    installed" when it cannot be imported), then each of `packages` by its installed
    metadata ("?" when there is none)."""
    import numpy as np

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in modules:
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    for package in packages:
        try:
            from importlib.metadata import version
            out[package] = version(package)
        except Exception:
            out[package] = "?"
    return out


def cpu_model(unknown: str = "?") -> str:
    """The CPU's model name (/proc/cpuinfo, else platform.processor(), else `unknown`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or unknown


# ---- the training setup ------------------------------------------------------------------------

def mlp_net_yaml(sizes, batch: int) -> str:
    """A layerflow net: an Input of `batch` rows of sizes[0] values and their labels, an
    InnerProduct per further size with a ReLU after each but the last, softmax loss."""
    lines = ["name: bench_mlp", "layers:",
             f"  - {{name: data, type: Input, top: [data, label], "
             f"shape: [[{batch}, {sizes[0]}], [{batch}]]}}"]
    bottom = "data"
    for i, h in enumerate(sizes[1:], 1):
        lines.append(f"  - {{name: ip{i}, type: InnerProduct, bottom: {bottom}, num_output: {h}}}")
        bottom = f"ip{i}"
        if i < len(sizes) - 1:
            lines.append(f"  - {{name: relu{i}, type: ReLU, bottom: {bottom}, top: {bottom}}}")
    lines.append(f"  - {{name: loss, type: SoftmaxLoss, bottom: [{bottom}, label]}}")
    return "\n".join(lines) + "\n"


def sgd_solver(folder: Path, net_yaml: str):
    """A layerflow Solver training `net_yaml` with SGD at LR, MOMENTUM and WEIGHT_DECAY, a fixed
    rate and seed 1; writes net.yaml and solver.yaml into `folder`."""
    import layerflow as lf

    (folder / "net.yaml").write_text(net_yaml)
    (folder / "solver.yaml").write_text(
        f"net: net.yaml\ntype: SGD\nbase_lr: {LR}\nmomentum: {MOMENTUM}\n"
        f"weight_decay: {WEIGHT_DECAY}\nlr_policy: fixed\nmax_iter: 100000000\nrandom_seed: 1\n")
    return lf.Solver.from_yaml(folder / "solver.yaml")


def torch_sgd_step(model, xb, yb):
    """The torch side of sgd_solver: step(x, y) copies the batch into the input buffers xb and
    yb (as layerflow's feed copies it into the net), trains `model` one step with softmax
    cross-entropy and SGD at LR, MOMENTUM and WEIGHT_DECAY, and returns the loss."""
    import torch

    # torch's v = m v + (g + wd w), w -= lr v equals Caffe's v = m v + lr (g + wd w), w -= v
    # at a fixed lr.
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        xb.copy_(x)
        yb.copy_(y)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()
    return step
