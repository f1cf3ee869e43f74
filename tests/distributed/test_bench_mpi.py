"""benchmarks/bench_mpi.py runs end to end: real mpirun jobs of 1 and 2 processes, the Allreduce
over shared memory and loopback TCP, and the alpha-beta model, written into a results file
beside a section that must be kept. A smoke run (1 job per cell, 5 steps, messages up to
64 KB), under a timeout: the numbers are not judged here, only that every cell is measured and
the model's table follows from its own columns.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mpi.py"
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def test_bench_mpi_smoke_run_writes_every_cell(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# MLP\n\nkept as it is\n\n## Data-parallel training over MPI\n\nold\n")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--repeats", "1", "--steps", "5", "--warmup", "2",
         "--max-bytes", "65536", "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# MLP\n\nkept as it is\n")
    assert text.count("## Data-parallel training over MPI") == 1 and "\nold\n" not in text

    measured = re.findall(r"^\| (mlp|lenet) \| ([12]) \| (\d+) \| ([\d,]+) \(", text, re.M)
    assert sorted((m, p) for m, p, _, _ in measured) == [
        ("lenet", "1"), ("lenet", "2"), ("mlp", "1"), ("mlp", "2")]
    assert all(float(s.replace(",", "")) > 0 for *_, s in measured)

    assert "| bytes | shared memory | loopback TCP |" in text
    sizes = re.findall(r"^\| ([\d,]+) \| ([\d.]+) us \| ([\d.]+) us \|", text, re.M)
    assert [int(n.replace(",", "")) for n, _, _ in sizes] == [1024, 4096, 16384, 65536]
    assert len(re.findall(r"^Fit t = a \+ b n, (shared memory|loopback TCP): ", text,
                          re.M)) == 2

    # the model's rows: 2 models x (8, 64, 256) processes x 3 links, and samples/s is
    # p x the per-process batch (half the global batch) / the modelled step
    modelled = re.findall(r"^\| (mlp|lenet) \| (\d+) \| ([^|]+) \| ([\d.]+) \| (\d+)% \| "
                          r"([\d,]+) \|", text, re.M)
    assert len(modelled) == 2 * 3 * 3
    per_process = {"mlp": 64, "lenet": 32}
    for model, p, link, step_ms, share, rate in modelled:
        assert link.strip() in ("shared memory", "loopback TCP", "10 GbE (assumed)")
        assert 0 <= int(share) <= 100
        # the step is printed to 0.01 ms, samples/s to 1: the rate must lie in the interval
        # the printed step allows
        samples, step = int(p) * per_process[model], float(step_ms)
        low, high = samples / ((step + 0.005) / 1e3), samples / ((step - 0.005) / 1e3)
        assert low - 1 <= float(rate.replace(",", "")) <= high + 1
