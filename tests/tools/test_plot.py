"""`layerflow plot`: a PNG from the trainer's metrics JSONL; clear errors."""
from __future__ import annotations

import builtins
import json

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
RECORDS = [
    {"event": "test", "iter": 0, "outputs": {"loss": 2.3, "accuracy": 0.1}, "elapsed_s": 0.1},
    {"event": "train", "iter": 10, "lr": 0.1, "loss": 1.5, "elapsed_s": 0.5},
    {"event": "train", "iter": 20, "lr": 0.05, "loss": 1.1, "elapsed_s": 0.9},
    {"event": "snapshot", "iter": 20, "path": "x"},
    {"event": "resume", "iter": 10},
    {"event": "train", "iter": 20, "lr": 0.05, "loss": 1.0, "elapsed_s": 1.0},  # after resume
    {"event": "test", "iter": 20, "loss": 1.2, "accuracy": 0.6, "elapsed_s": 1.1},  # flat form
]


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "run_metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + "\n")
    return path


def test_png_written(metrics, tmp_path, cli):
    r = cli("plot", metrics, "-o", tmp_path / "m.png", "--title", "run")
    assert r.code == 0, r.err
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG
    # resumed iterations count once; test outputs from both record forms
    assert "loss: 2 points, lr: 2 points, test.accuracy: 2 points, test.loss: 2 points" in r.out


def test_series_values(metrics):
    from layerflow.tools.plot import _series, read_metrics

    events = read_metrics(metrics)
    assert _series(events["train"], "loss") == ([10, 20], [1.5, 1.0])
    assert _series(events["test"], "accuracy") == ([0, 20], [0.1, 0.6])


def test_other_formats_by_extension(metrics, tmp_path, cli):
    assert cli("plot", metrics, "-o", tmp_path / "m.svg").code == 0
    assert "<svg" in (tmp_path / "m.svg").read_text()
    r = cli("plot", metrics, "-o", tmp_path / "m.xyz")
    assert r.code == 2 and "unknown image format" in r.err


def test_bad_metrics_files(tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "train", "iter": 1, "loss": 1}\n{"event": oops}\n')
    r = cli("plot", bad, "-o", tmp_path / "m.png")
    assert r.code == 2 and f"{bad}:2: not a JSON record" in r.err and "Traceback" not in r.err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = cli("plot", empty, "-o", tmp_path / "m.png")
    assert r.code == 2 and "no \"train\" or \"test\" records" in r.err
    r = cli("plot", tmp_path / "none.jsonl", "-o", tmp_path / "m.png")
    assert r.code == 2 and "file not found" in r.err


def test_missing_matplotlib_is_a_clear_user_error(metrics, tmp_path, cli, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    r = cli("plot", metrics, "-o", tmp_path / "m.png")
    assert r.code == 2 and "Traceback" not in r.err
    assert "plot needs matplotlib, which is not installed: pip install 'layerflow[plot]'" \
        in r.err
