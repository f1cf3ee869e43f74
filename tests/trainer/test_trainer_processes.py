"""Real processes: SIGHUP (snapshot, go on), SIGINT (snapshot, stop, exit 130), and kill -9 at
random moments followed by `--resume auto`, ending bit-identical to an uninterrupted run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from layerflow.snapshot import list_snapshots
from trainer_helpers import metrics, newest, newest_weights, run, weights_of, write

TRAIN = [sys.executable, "-m", "layerflow.cli", "train"]


def wait_for(condition, timeout=60.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_sighup_snapshots_and_goes_on_then_sigint_snapshots_and_stops(tmp_path):
    keys = dict(max_iter=10 ** 7, display=200, random_seed=3)
    path = write(tmp_path / "run", **keys)
    prefix = tmp_path / "run" / "snap" / "s"
    proc = subprocess.Popen(TRAIN + [str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        metrics_file = prefix.parent / "s_metrics.jsonl"
        wait_for(lambda: metrics_file.exists() and '"train"' in metrics_file.read_text(),
                 proc=proc)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: list_snapshots(prefix), proc=proc)
        n_hup = newest(prefix)[0]
        time.sleep(0.3)
        assert proc.poll() is None, "SIGHUP must not stop training"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at iteration" in err and "Traceback" not in err
    n_int = newest(prefix)[0]
    assert 0 < n_hup < n_int < keys["max_iter"]
    assert [i for i, _ in list_snapshots(prefix)] == [n_int, n_hup]
    assert metrics(prefix)[-1] == {"event": "interrupted", "iter": n_int}

    # the interrupted run resumes exactly
    more = n_int + 15
    resumed, _ = run(path, resume="auto", overrides=[f"max_iter={more}"])
    assert resumed.resumed_from.name == f"s_iter_{n_int}.solverstate"
    straight, _ = run(write(tmp_path / "ref", **{**keys, "max_iter": more}))
    a, b = weights_of(straight), weights_of(resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_kill_9_at_random_moments_then_resume_auto(tmp_path):
    """Snapshots every 3 iterations keep the process inside a snapshot write most of the
    time, so most kills land in the middle of one. Kills come after a random amount of
    progress (at most 60 iterations each), so the run is still under way whatever the speed
    of the machine."""
    keys = dict(hidden=32, max_iter=600, snapshot=3, snapshot_keep=4, display=50,
                random_seed=5, type="Adam", base_lr=0.01, momentum=0.9)
    straight, _ = run(write(tmp_path / "ref", **{**keys, "snapshot": 0}))
    path = write(tmp_path / "run", **keys)
    prefix = tmp_path / "run" / "snap" / "s"
    rng = random.Random(20240611)
    killed_mid_run = 0
    for attempt in range(4):
        before = newest(prefix)[0]
        proc = subprocess.Popen(TRAIN + [str(path), "--resume", "auto"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if attempt == 0:
                time.sleep(rng.uniform(0.05, 0.5))          # during start-up
            else:  # after a random amount of progress, at a random moment after a snapshot
                target = before + 3 * rng.randint(1, 20)
                wait_for(lambda: newest(prefix)[0] >= target, proc=proc)
                time.sleep(rng.uniform(0.0, 0.03))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.returncode == -signal.SIGKILL and 0 < newest(prefix)[0] < keys["max_iter"]:
            killed_mid_run += 1
    assert killed_mid_run >= 2, "the kills should interrupt training under way"
    final = subprocess.run(TRAIN + [str(path), "--resume", "auto"], capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert newest(prefix)[0] == keys["max_iter"]
    assert sum(r["event"] == "resume" for r in metrics(prefix)) >= 2
    a, b = weights_of(straight), newest_weights(prefix)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
