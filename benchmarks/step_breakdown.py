"""Where the time of one MLP training step goes: the forward/backward passes (mostly GEMMs)
against the rest of the solver's iteration (zeroing the gradients, clipping, regularization and
the update: memory-bound passes over every param).

    python benchmarks/step_breakdown.py [--threads 2] [--repeats 7]

For each of bench_mlp.py's three sizes it times, in one process, `solver.iteration()` (the
whole step) and `net.run_forward(); net.backward()` (the same passes without the solver's
own work) alternately, and reports the minimum over the repeats of the per-step mean (the
least disturbed spell of a shared machine). The difference is the time of the non-GEMM
solver passes. It uses only the public API, so the same script measures older versions.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import MLP_SIZES, THREAD_VARS, mlp_net_yaml, sgd_solver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import numpy as np

    rng = np.random.default_rng(0)
    print(f"layerflow at {Path(__import__('layerflow').__file__).parent}, "
          f"{args.threads} thread(s)")
    print(f"{'size':<18}{'step ms':>10}{'fwd+bwd ms':>12}{'solver passes ms':>18}{'share':>8}")
    for sizes, batch in MLP_SIZES:
        steps = max(5, int(2e9 / (6 * batch * sum(a * b for a, b in zip(sizes, sizes[1:])))))
        with tempfile.TemporaryDirectory() as tmp:
            solver = sgd_solver(Path(tmp), mlp_net_yaml(sizes, batch))
            net = solver.net
            x = rng.random((batch, sizes[0]), dtype=np.float32)
            y = rng.integers(0, sizes[-1], batch).astype(np.float32)
            net.feed({"data": x, "label": y})
            for _ in range(3):
                solver.iteration()
            best_step = best_fb = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for _ in range(steps):
                    solver.iteration()
                t1 = time.perf_counter()
                for _ in range(steps):
                    net.run_forward()
                    net.backward()
                t2 = time.perf_counter()
                best_step = min(best_step, (t1 - t0) / steps)
                best_fb = min(best_fb, (t2 - t1) / steps)
        name = "-".join(map(str, sizes))
        rest = best_step - best_fb
        print(f"{name:<18}{1e3 * best_step:>10.3f}{1e3 * best_fb:>12.3f}{1e3 * rest:>18.3f}"
              f"{100 * rest / best_step:>7.1f}%")


if __name__ == "__main__":
    if "--threads" in sys.argv:
        n = sys.argv[sys.argv.index("--threads") + 1]
        for var in THREAD_VARS:
            os.environ[var] = n
    main()
