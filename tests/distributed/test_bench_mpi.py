"""benchmarks/bench_mpi.py runs end to end: real mpirun jobs of 1 and 2 processes, the Allreduce
over shared memory and loopback TCP, and the alpha-beta model, written into a results file
beside a section that must be kept. A smoke run (1 job per cell, 5 steps, messages up to
4 MB, so that the slope is fitted over messages of at least 1 MB), under a timeout: the numbers are not judged here, only that every cell is measured and
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
         "--max-bytes", str(4 * 2 ** 20), "--out", str(out)],
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
    assert [int(n.replace(",", "")) for n, _, _ in sizes] == [4 ** k for k in range(5, 12)]
    fits = re.findall(r"^Fit t = a \+ b n, (shared memory|loopback TCP): a = [\d.]+ us \(median "
                      r"of the messages up to 4 KB\), (b = [\d.]+ ps/byte \([\d.]+ GB/s|b not "
                      r"resolved \(the slope over the largest messages was -?[\d.]+ ps/byte)",
                      text, re.M)
    assert sorted(name for name, _ in fits) == ["loopback TCP", "shared memory"]
    # a link whose slope the run's noise swamped is named as such and not modelled
    modelled_links = {"10 GbE (assumed)"} | {name for name, b in fits if b.startswith("b = ")}

    # the model's rows: 2 models x (8, 64, 256) processes x the links, and samples/s is
    # p x the per-process batch (half the global batch) / the modelled step
    modelled = re.findall(r"^\| (mlp|lenet) \| (\d+) \| ([^|]+) \| ([\d.]+) \| (\d+)% \| "
                          r"([\d,]+) \|", text, re.M)
    assert len(modelled) == 2 * 3 * len(modelled_links)
    per_process = {"mlp": 64, "lenet": 32}
    for model, p, link, step_ms, share, rate in modelled:
        assert link.strip() in modelled_links
        assert 0 <= int(share) <= 100
        # the step is printed to 0.01 ms, samples/s to 1: the rate must lie in the interval
        # the printed step allows
        samples, step = int(p) * per_process[model], float(step_ms)
        low, high = samples / ((step + 0.005) / 1e3), samples / ((step - 0.005) / 1e3)
        assert low - 1 <= float(rate.replace(",", "")) <= high + 1


def test_a_slope_swamped_by_noise_is_named_and_not_modelled(tmp_path):
    """A fit whose slope over the largest messages is not positive (a short run on a loaded
    machine) has no time per byte: the model must leave that link out and say why, never print
    negative step times or shares."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_mpi", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"step_ms": 4.0, "samples_s": 32000.0, "allreduce_ms": 0.5, "agree_ms": 0.1,
           "range": (30000.0, 34000.0), "grad_bytes": 4 * 2 ** 20}
    rows = {(m, p): dict(row) for m in bench.MODELS for p in (1, 2)}
    points = {"shared memory": [(1024, 2e-6), (2 ** 20, 5e-4)],
              "loopback TCP": [(1024, 1e-5), (2 ** 20, 9e-4)]}
    fits = {"shared memory": (2e-6, 5e-10), "loopback TCP": (1e-5, -3e-11)}
    out = tmp_path / "RESULTS.md"
    bench.write(out, rows, points, fits, [0.5], 1, 5, 2)
    text = out.read_text()
    assert "Fit t = a + b n, shared memory: a = 2.0 us" in text and "(2.00 GB/s;" in text
    assert ("Fit t = a + b n, loopback TCP: a = 10.0 us (median of the messages up to 4 KB), "
            "b not resolved (the slope over the largest messages was -30.0 ps/byte") in text
    modelled = re.findall(r"^\| (mlp|lenet) \| (\d+) \| ([^|]+) \| (-?[\d.]+) \| (-?\d+)% \|",
                          text, re.M)
    assert {link.strip() for _, _, link, _, _ in modelled} == {"shared memory",
                                                               "10 GbE (assumed)"}
    assert len(modelled) == 2 * 3 * 2
    # shared memory, MLP at p = 8: compute 3.4 ms + 14 alpha + 2 * 7/8 * n * beta + 6 alpha
    comm = 14 * 1e-6 + 2 * 7 / 8 * 4 * 2 ** 20 * 5e-10 + 6 * 1e-6
    assert ("| mlp | 8 | shared memory | %.2f | %.0f%% |" % (1e3 * (3.4e-3 + comm),
                                                            100 * comm / (3.4e-3 + comm))) in text
