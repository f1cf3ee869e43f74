"""One run per snapshot_prefix: a new run never interleaves with an earlier run's files (it is
refused, or --start-over moves them into a dated folder), `--resume auto` continues the run
that wrote the newest snapshot, and a resume at or past max_iter has nothing to do."""
from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from layerflow import UserError
from layerflow import snapshot as snap
from layerflow.cli.main import app
from layerflow.snapshot import list_snapshots, snapshot_paths
from trainer_helpers import metrics, run, write


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_new_run_over_an_earlier_one_is_refused_and_changes_nothing(tmp_path):
    path = write(tmp_path, max_iter=4, snapshot=2, display=1)
    run(path)
    before = contents(tmp_path / "snap")
    assert set(before) == {"s_iter_2.safetensors", "s_iter_2.solverstate",
                           "s_iter_4.safetensors", "s_iter_4.solverstate", "s_metrics.jsonl",
                           "s_solver.yaml", "s_net.yaml"}
    with pytest.raises(UserError) as err:
        run(path)
    line = path.read_text().splitlines().index("snapshot_prefix: snap/s") + 1
    pos = f"{line}:1"
    assert str(err.value) == (
        f"{path}:{pos}: snapshot_prefix {tmp_path / 'snap' / 's'} already holds the files of "
        f"an earlier run (s_iter_2.safetensors, s_iter_2.solverstate, s_iter_4.safetensors "
        f"and 4 more); continue that run with --resume auto, or start a new one with "
        f"--start-over (which moves the earlier files into a dated folder beside them)")
    assert contents(tmp_path / "snap") == before
    # --weights starts a new run too
    result = CliRunner().invoke(app, ["train", str(path), "--weights",
                                      str(snapshot_paths(tmp_path / "snap" / "s", 4)[0])])
    assert result.exit_code == 2 and "--start-over" in result.stderr
    assert contents(tmp_path / "snap") == before


def test_start_over_moves_the_earlier_run_into_a_dated_folder(tmp_path):
    path = write(tmp_path, max_iter=4, snapshot=2, display=1)
    run(path)
    before = contents(tmp_path / "snap")
    result = CliRunner().invoke(app, ["train", str(path), "--start-over",
                                      "--set", "max_iter=3"])
    assert result.exit_code == 0, result.output
    moved = [p for p in (tmp_path / "snap").iterdir() if p.is_dir()]
    assert len(moved) == 1 and moved[0].name.startswith("s-run-")
    assert contents(moved[0]) == before  # every file of the earlier run, unchanged
    assert f"moved the files of the earlier run under {tmp_path / 'snap' / 's'} to " \
           f"{moved[0]}" in result.stdout
    # the new run's files only: its metrics start afresh, its snapshots are its own
    records = metrics(tmp_path / "snap" / "s")
    assert [r["iter"] for r in records if r["event"] == "train"] == [1, 2, 3]
    assert [i for i, _ in list_snapshots(tmp_path / "snap" / "s")] == [3, 2]
    # a third run moves the second aside into a folder of its own
    assert CliRunner().invoke(app, ["train", str(path), "--start-over"]).exit_code == 0
    assert len([p for p in (tmp_path / "snap").iterdir() if p.is_dir()]) == 2
    both = CliRunner().invoke(app, ["train", str(path), "--start-over", "--resume", "auto"])
    assert both.exit_code == 2 and "--resume or --start-over, not both" in both.stderr


def test_resume_auto_takes_the_run_that_wrote_last_not_the_highest_iteration(tmp_path):
    """Two runs' snapshots in one prefix (files of an older layerflow, or copied there): the
    older run reached iteration 8, the newer one 3; auto continues the newer one."""
    path = write(tmp_path, max_iter=8, snapshot=4)
    run(path)
    old = tmp_path / "old"
    os.replace(tmp_path / "snap", old)
    run(write(tmp_path, max_iter=3, snapshot=3))
    for f in old.glob("s_iter_*"):
        os.replace(f, tmp_path / "snap" / f.name)
        os.utime(tmp_path / "snap" / f.name)  # newer mtimes: the metadata's time decides
    assert [i for i, _ in snap.by_write_time(tmp_path / "snap" / "s")] == [3, 8, 4]
    trainer, summary = run(write(tmp_path, max_iter=6, snapshot=4), resume="auto")
    assert trainer.resumed_from.name == "s_iter_3.solverstate"
    assert summary["iterations"] == 6


def test_a_resume_at_or_past_max_iter_has_nothing_to_do(tmp_path):
    path = write(tmp_path, max_iter=4, snapshot=2)
    run(path)
    before = contents(tmp_path / "snap")
    trainer, summary = run(path, resume="auto")
    assert summary["iterations"] == 4 and summary["nothing_to_do"] == (
        "nothing to do: s_iter_4.solverstate is at iteration 4 and max_iter is 4; to train "
        "further, raise max_iter (e.g. --set max_iter=8)")
    assert contents(tmp_path / "snap") == before  # nothing written, nothing logged
    result = CliRunner().invoke(app, ["train", str(path), "--resume", "auto", "--json",
                                      "--set", "max_iter=3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nothing_to_do"].startswith(
        "nothing to do: s_iter_4.solverstate is at iteration 4 and max_iter is 3")
    result = CliRunner().invoke(app, ["train", str(path), "--resume", "auto"])
    assert result.exit_code == 0 and result.stdout.startswith("nothing to do: ")
    assert "done:" not in result.stdout
    assert contents(tmp_path / "snap") == before


def test_resume_auto_without_a_snapshot_moves_the_leftovers_aside(tmp_path):
    """A run killed before its first snapshot leaves only its metrics and configuration;
    --resume auto starts afresh, with those files moved aside, not appended to."""
    path = write(tmp_path, max_iter=2, display=1)
    prefix = tmp_path / "snap" / "s"
    prefix.parent.mkdir(parents=True)
    stale = '{"event": "train", "iter": 1, "lr": 0.1, "loss": 9.0}\n'
    (prefix.parent / "s_metrics.jsonl").write_text(stale)
    trainer, _ = run(path, resume="auto")
    assert trainer.resumed_from is None
    assert len(trainer.events.warnings) == 1
    assert trainer.events.warnings[0].startswith("--resume auto: no snapshot to resume; moved "
                                                 "the files of the earlier run")
    assert [r["loss"] for r in metrics(prefix) if r["event"] == "train"] != [9.0]
    assert (trainer.moved_to / "s_metrics.jsonl").read_text() == stale
