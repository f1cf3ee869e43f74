"""Data-parallel training over MPI (`mpirun -n N layerflow train ...`), in real processes.

Every run is a subprocess under a timeout, so a hang fails the test instead of stalling CI.
Open MPI refuses to run as root unless told (CI runs as root), and 3 processes on this
2-core machine need oversubscription.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

MPIRUN = str(Path(sys.executable).with_name("mpirun")) if Path(
    sys.executable).with_name("mpirun").exists() else shutil.which("mpirun")
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "PYTHONUNBUFFERED": "1"}
LAYERFLOW = [sys.executable, "-m", "layerflow.cli"]
N_SAMPLES = 96


def mpirun(n: int, *args, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [MPIRUN, "-n", str(n), "--map-by", ":OVERSUBSCRIBE", *LAYERFLOW, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def single(*args, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERFLOW, *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def write_run(folder: Path, name: str, batch: int, test_batch: int, **solver) -> Path:
    """A float64 MLP on 96 samples (a shuffled train set, a 50-sample test set) and its
    solver; returns the solver's path."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "train.npz").exists():
        rng = np.random.default_rng(0)
        np.savez(folder / "train.npz", data=rng.normal(size=(N_SAMPLES, 6)),
                 label=rng.integers(0, 3, N_SAMPLES))
        np.savez(folder / "test.npz", data=rng.normal(size=(50, 6)),
                 label=rng.integers(0, 3, 50))
    (folder / f"net_{name}.yaml").write_text(textwrap.dedent(f"""\
        name: mlp
        dtype: float64
        layers:
          - {{name: data, type: Data, top: [data, label], source: train.npz,
             batch_size: {batch}, shuffle: true, include: {{phase: train}}}}
          - {{name: data, type: Data, top: [data, label], source: test.npz,
             batch_size: {test_batch}, include: {{phase: test}}}}
          - {{name: ip1, type: InnerProduct, num_output: 10,
             weight_filler: {{type: gaussian, std: 0.3}}}}
          - {{name: relu1, type: ReLU}}
          - {{name: ip2, type: InnerProduct, num_output: 3}}
          - {{name: loss, type: SoftmaxLoss, bottom: [ip2, label]}}
          - {{name: accuracy, type: Accuracy, bottom: [ip2, label], include: {{phase: test}}}}
        """))
    keys = {"net": f"net_{name}.yaml", "base_lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3,
            "max_iter": 30, "random_seed": 3, "test_interval": 10,
            "snapshot_prefix": f"out_{name}/s", **solver}
    path = folder / f"solver_{name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def weights(folder: Path, name: str, it: int) -> dict[str, np.ndarray]:
    return load_file(str(folder / f"out_{name}" / f"s_iter_{it}.safetensors"))


def logged_tests(folder: Path, name: str) -> list[dict]:
    lines = (folder / f"out_{name}" / "s_metrics.jsonl").read_text().splitlines()
    return [r["outputs"] for r in map(json.loads, lines) if r["event"] == "test"]


@pytest.mark.parametrize("procs, solver", [
    (2, {"type": "SGD", "clip_gradients": 0.5, "iter_size": 2}),
    (3, {"type": "Adam", "momentum": 0.9, "base_lr": 0.01, "lr_policy": "step", "gamma": 0.5,
         "stepsize": 10})], ids=["2-SGD-clip-iter_size", "3-Adam-oversubscribed"])
def test_n_processes_train_the_weights_of_one_with_n_times_the_batch(tmp_path, procs, solver):
    b = 8  # per process; the single process reads procs x 8
    one = write_run(tmp_path, "one", procs * b, 50, **solver)
    many = write_run(tmp_path, "many", b, 50 // procs + 1, **solver)
    r1 = single("train", one, "--json", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    rn = mpirun(procs, "train", many, "--json", cwd=tmp_path)
    assert rn.returncode == 0, rn.stderr
    summary = json.loads(rn.stdout)  # rank 0 alone prints it
    assert summary["iterations"] == 30
    a, b_ = weights(tmp_path, "one", 30), weights(tmp_path, "many", 30)
    assert a.keys() == b_.keys()
    for key in a:  # float64: the sums differ only in their order
        np.testing.assert_allclose(b_[key], a[key], rtol=0, atol=1e-12, err_msg=key)
    # the test phase: 50 samples split over the processes give one process's numbers
    t1, tn = logged_tests(tmp_path, "one"), logged_tests(tmp_path, "many")
    assert len(t1) == len(tn) == 4
    for x, y in zip(t1, tn):
        assert x["accuracy"] == pytest.approx(y["accuracy"], abs=1e-12)
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-10)
    assert summary["test"]["accuracy"] == pytest.approx(t1[-1]["accuracy"], abs=1e-12)


def test_a_resumed_run_is_bit_identical_to_an_unbroken_one(tmp_path):
    straight = write_run(tmp_path, "straight", 8, 10, snapshot=10)
    broken = write_run(tmp_path, "broken", 8, 10, snapshot=10)
    assert mpirun(2, "train", straight, cwd=tmp_path).returncode == 0
    first = mpirun(2, "train", broken, "--set", "max_iter=13", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = mpirun(2, "train", broken, "--resume", "auto", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    a, b = weights(tmp_path, "straight", 30), weights(tmp_path, "broken", 30)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_mistake_is_reported_once_and_ends_every_process(tmp_path):
    solver = write_run(tmp_path, "bad", 8, 10, base_lr=-1)
    t0 = time.monotonic()
    r = mpirun(2, "train", solver, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("base_lr: Input should be greater than 0") == 1, r.stderr
    assert time.monotonic() - t0 < 60


FAILS_ON_RANK_1 = '''
"""Passes its bottom through, but process 1 of a data-parallel run finds bad data at its 4th
forward (a test layer)."""
import os
from layerflow import Layer, UserError, register_layer


@register_layer
class FailOnRank1(Layer):
    def reshape(self, bottom_shapes):
        self.calls = getattr(self, "calls", 0)
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.calls += 1
        if self.calls == 4 and os.environ.get("OMPI_COMM_WORLD_RANK") == "1":
            raise UserError("bad sample in process 1")
        return [bottoms[0]]

    def backward(self, top_diffs):
        return [top_diffs[0]]
'''


def test_bad_data_in_one_process_stops_all_with_one_message(tmp_path):
    solver = write_run(tmp_path, "fail", 8, 10)
    (tmp_path / "fail_on_rank1.py").write_text(FAILS_ON_RANK_1)
    net = tmp_path / "net_fail.yaml"
    net.write_text(net.read_text().replace(
        "  - {name: ip1,", "  - {name: check, type: FailOnRank1, bottom: data, top: data}\n"
        "  - {name: ip1,").replace("name: mlp\n", "name: mlp\nplugins: [fail_on_rank1.py]\n"))
    r = mpirun(2, "train", solver, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("bad sample in process 1") == 1, r.stderr


def test_ctrl_c_writes_one_snapshot_and_stops_every_process(tmp_path):
    solver = write_run(tmp_path, "int", 8, 10, max_iter=10 ** 7, test_interval=0)
    proc = subprocess.Popen([MPIRUN, "-n", "2", *LAYERFLOW, "train", str(solver)],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out_int" / "s_net.yaml").exists():  # training has started
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C on mpirun's terminal does
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)  # the snapshot is written by a child that outlives the processes
    states = list((tmp_path / "out_int").glob("s_iter_*.solverstate"))
    assert len(states) == 1, states
    stopped_at = int(states[0].stem.rsplit("_", 1)[1])
    records = [json.loads(x) for x in (tmp_path / "out_int" / "s_metrics.jsonl")
               .read_text().splitlines()]
    assert {"event": "interrupted", "iter": stopped_at} in records
    assert not subprocess.run(["pgrep", "-f", str(solver)], capture_output=True).stdout
    # and the run goes on from there
    r = mpirun(2, "train", solver, "--resume", "auto", "--set",
               f"max_iter={stopped_at + 5}", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["iterations"] == stopped_at + 5


def test_a_killed_process_ends_the_others(tmp_path):
    solver = write_run(tmp_path, "kill", 8, 10, max_iter=10 ** 7, test_interval=0)
    proc = subprocess.Popen([MPIRUN, "-n", "2", *LAYERFLOW, "train", str(solver)],
                            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out_kill" / "s_net.yaml").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(1)
        found = subprocess.run(["pgrep", "-f", f"layerflow.cli train {solver}"],
                               capture_output=True, text=True).stdout.split()
        pids = [int(p) for p in found if int(p) != proc.pid]  # not mpirun itself
        assert len(pids) == 2, found
        t0 = time.monotonic()
        os.kill(pids[-1], signal.SIGKILL)
        proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and took < 60
    time.sleep(0.5)
    assert not subprocess.run(["pgrep", "-f", f"train {solver}"], capture_output=True).stdout


def test_a_launcher_without_mpi4py_is_a_clear_error(tmp_path):
    solver = write_run(tmp_path, "nompi", 8, 10)
    fake = tmp_path / "no_mpi4py"
    (fake / "mpi4py").mkdir(parents=True)
    (fake / "mpi4py" / "__init__.py").write_text("raise ImportError('mpi4py is not here')\n")
    env = {**ENV, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0",
           "PYTHONPATH": str(fake)}
    r = subprocess.run([*LAYERFLOW, "train", str(solver)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "pip install 'layerflow[mpi]'" in r.stderr and "Traceback" not in r.stderr


def test_one_process_never_imports_mpi4py(tmp_path):
    solver = write_run(tmp_path, "plain", 8, 10, max_iter=2)
    code = ("import sys, runpy; sys.argv = ['layerflow', 'train', %r];"
            "import layerflow.cli.__main__ as m\n"
            "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n" % str(solver))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
