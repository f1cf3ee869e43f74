"""Snapshots: interval, snapshot_after_train, snapshot_keep, --resume auto, and damaged or
foreign snapshots rejected with a message naming the file (exit status 2 from the CLI)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from layerflow import UserError
from layerflow import snapshot as snap
from layerflow.cli.main import app
from layerflow.snapshot import list_snapshots, snapshot_paths
from trainer_helpers import metrics, newest, run, weights_of, write


def iters(prefix):
    return sorted(i for i, _ in list_snapshots(prefix))


def test_interval_after_train_and_keep(tmp_path):
    prefix = tmp_path / "snap" / "s"
    run(write(tmp_path, max_iter=10, snapshot=3))
    assert iters(prefix) == [3, 6, 9, 10]
    for i in [3, 6, 9, 10]:
        assert snapshot_paths(prefix, i)[0].exists()
    other = tmp_path / "o"
    run(write(other, max_iter=10, snapshot=3, snapshot_after_train=False))
    assert iters(other / "snap" / "s") == [3, 6, 9]
    kept = tmp_path / "k"
    run(write(kept, max_iter=10, snapshot=2, snapshot_keep=2))
    assert iters(kept / "snap" / "s") == [8, 10]
    assert sorted(p.name for p in (kept / "snap").glob("*.safetensors")) == [
        "s_iter_10.safetensors", "s_iter_8.safetensors"]


def test_resume_auto_starts_fresh_then_continues(tmp_path):
    path = write(tmp_path, max_iter=6, snapshot=3)
    trainer, _ = run(path, resume="auto")
    assert trainer.resumed_from is None and trainer.solver.iter == 6
    trainer, summary = run(path, resume="auto", overrides=["max_iter=9"])
    assert trainer.resumed_from.name == "s_iter_6.solverstate"
    assert summary["iterations"] == 9


def test_crash_between_weights_and_state_leaves_the_previous_snapshot(tmp_path, monkeypatch):
    """A kill in the middle of a snapshot write: the weights are written, the state is not,
    a temporary file is left behind. auto resumes from the previous complete snapshot, and
    the result is the same as a run that never crashed."""
    path = write(tmp_path, max_iter=8, snapshot=4)
    straight, _ = run(write(tmp_path / "straight", max_iter=8, snapshot=4))
    real_write = snap.atomic_write

    def dying_write(target, data):
        if str(target).endswith("_iter_8.solverstate"):
            half = target.parent / f".{target.name}.abc123.tmp"
            half.write_bytes(data[: len(data) // 2])
            raise SystemExit("killed")  # stands for kill -9 here
        real_write(target, data)

    monkeypatch.setattr(snap, "atomic_write", dying_write)
    with pytest.raises(SystemExit):
        run(path)
    monkeypatch.setattr(snap, "atomic_write", real_write)
    prefix = tmp_path / "snap" / "s"
    assert iters(prefix) == [4]
    assert snapshot_paths(prefix, 8)[0].exists()           # orphan weights of iteration 8
    assert list((tmp_path / "snap").glob(".*.tmp"))
    trainer, _ = run(path, resume="auto")
    assert trainer.resumed_from.name == "s_iter_4.solverstate"
    assert not list((tmp_path / "snap").glob(".*.tmp"))    # cleaned up
    a, b = weights_of(straight), weights_of(trainer)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _damage(kind: str, prefix, it: int):
    wpath, spath = snapshot_paths(prefix, it)
    if kind == "truncated state":
        spath.write_bytes(spath.read_bytes()[:-40])
        return spath
    if kind == "truncated weights":
        wpath.write_bytes(wpath.read_bytes()[: len(wpath.read_bytes()) // 2])
        return wpath
    if kind == "flipped byte in weights":
        data = bytearray(wpath.read_bytes())
        data[-5] ^= 0x40
        wpath.write_bytes(bytes(data))
        return wpath
    if kind == "flipped byte in state":
        data = bytearray(spath.read_bytes())
        data[-3] ^= 0x01
        spath.write_bytes(bytes(data))
        return spath
    if kind == "garbage state":
        spath.write_bytes(b"\x00garbage" * 3)
        return spath
    if kind == "missing weights":
        wpath.unlink()
        return wpath
    raise AssertionError(kind)


DAMAGE = ["truncated state", "truncated weights", "flipped byte in weights",
          "flipped byte in state", "garbage state", "missing weights"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_snapshot_is_a_user_error_naming_the_file(tmp_path, kind):
    path = write(tmp_path, max_iter=6, snapshot=3)
    run(path)
    prefix = tmp_path / "snap" / "s"
    bad = _damage(kind, prefix, 6)
    with pytest.raises(UserError) as err:
        run(path, resume=snapshot_paths(prefix, 6)[1])
    assert str(bad) in str(err.value)
    # auto: the damage cannot come from a crash, so it is reported, and the older one used
    trainer, _ = run(path, resume="auto")
    assert trainer.resumed_from.name == "s_iter_3.solverstate"
    assert len(trainer.events.warnings) == 1 and str(bad) in trainer.events.warnings[0]
    assert any(r["event"] == "warning" for r in metrics(prefix))


def test_auto_with_every_snapshot_damaged_is_an_error_not_a_fresh_start(tmp_path):
    path = write(tmp_path, max_iter=3, snapshot=3)
    run(path)
    prefix = tmp_path / "snap" / "s"
    bad = _damage("flipped byte in weights", prefix, 3)
    with pytest.raises(UserError, match="no usable snapshot") as err:
        run(path, resume="auto")
    assert str(bad) in str(err.value)


def test_snapshot_of_another_net_names_the_file_and_the_layer(tmp_path):
    run(write(tmp_path / "a", max_iter=3))
    state = snapshot_paths(tmp_path / "a" / "snap" / "s", 3)[1]
    with pytest.raises(UserError) as err:
        run(write(tmp_path / "b", hidden=17, max_iter=6), resume=state)
    msg = str(err.value)
    assert str(state) in msg and "different net" in msg and "ip1" in msg
    assert "(16, 2)" in msg and "(17, 2)" in msg
    with pytest.raises(UserError, match="solver type SGD.*Adam") as err:
        run(write(tmp_path / "c", max_iter=6, type="Adam"), resume=state)
    assert str(state) in str(err.value)


def test_cli_exits_2_on_a_corrupted_snapshot(tmp_path):
    path = write(tmp_path, max_iter=3)
    run(path)
    prefix = tmp_path / "snap" / "s"
    bad = _damage("flipped byte in state", prefix, 3)
    result = CliRunner().invoke(app, ["train", str(path), "--resume", str(bad)])
    assert result.exit_code == 2, result.output
    assert str(bad) in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", str(path), "--resume",
                                      str(snapshot_paths(prefix, 3)[0])])
    assert result.exit_code == 2 and "weights file" in result.output


def test_nonfinite_params_are_never_snapshotted(tmp_path):
    from layerflow.errors import DivergenceError
    from layerflow.solver import Solver
    from layerflow.trainer import Trainer

    trainer = Trainer(Solver.from_yaml(write(tmp_path, max_iter=3)))
    trainer.solver.net.params["ip2"]["weight"].data[0, 0] = np.inf
    with pytest.raises(DivergenceError, match="ip2.weight"):
        trainer.snapshot()
    assert newest(tmp_path / "snap" / "s") == (0, None)
