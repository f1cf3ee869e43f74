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


def write(tmp_path, lrs, name="m.jsonl"):
    path = tmp_path / name
    records = [{"event": "train", "iter": 10 * (i + 1), "lr": lr, "loss": 1.0 / (i + 1),
                "elapsed_s": 0.1 * i} for i, lr in enumerate(lrs)]
    records.append({"event": "test", "iter": 10 * len(lrs), "outputs": {"accuracy": 0.5}})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_constant_lr_is_a_legend_line_not_a_panel(tmp_path, cli):
    from layerflow.tools.plot import plot_metrics

    path = write(tmp_path, [0.01] * 6)
    result = plot_metrics(path, tmp_path / "m.svg")
    assert result["panels"] == ["train loss", "test outputs"]
    assert result["lr"] == {"drawn": "constant", "value": 0.01}
    svg = (tmp_path / "m.svg").read_text()
    assert "learning rate 0.01 throughout" in svg and "train loss" in svg
    r = cli("plot", path, "-o", tmp_path / "m.png")
    assert r.code == 0 and "loss: 6 points, lr: 0.01 throughout, test.accuracy: 1 points" in r.out


def test_a_step_lr_is_drawn_as_steps_and_a_smooth_one_as_a_line(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from layerflow.tools.plot import plot_metrics, stepwise

    calls = []
    real_step = Axes.step
    monkeypatch.setattr(Axes, "step", lambda self, x, y, *a, **k: calls.append(
        (list(x), list(y), k.get("where"))) or real_step(self, x, y, *a, **k))
    steps = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001]
    result = plot_metrics(write(tmp_path, steps), tmp_path / "m.png")
    assert result["panels"] == ["train loss", "learning rate", "test outputs"]
    assert result["lr"] == {"drawn": "steps"}
    assert calls == [([10, 20, 30, 40, 50, 60, 70], steps, "post")]
    smooth = [0.1 * (1 + 0.1 * i) ** -0.75 for i in range(7)]  # inv: changes every record
    calls.clear()
    assert plot_metrics(write(tmp_path, smooth, "s.jsonl"), tmp_path / "s.png")["lr"] == {
        "drawn": "line"}
    assert calls == []
    assert stepwise([1, 1, 1, 2, 2]) and not stepwise([1, 2, 3, 4]) and not stepwise([1, 2])
