"""`layerflow plot METRICS.jsonl -o FILE.png`: loss, learning rate and test outputs over
iterations, from the JSON lines the trainer writes (`<snapshot_prefix>_metrics.jsonl`):

    {"event": "train", "iter": 100, "lr": 0.01, "loss": 0.52, "elapsed_s": 1.2}
    {"event": "test", "iter": 500, "outputs": {"accuracy": 0.97, "loss": 0.09}, ...}
(test outputs may also be top-level keys of the record). Other events are ignored.
A learning rate that never changes gets a legend line in the loss panel, not a panel of its
own; one that changes in steps (step, multistep) is drawn as steps.

A resumed run appends records for iterations already logged; the newest record of an event at
an iteration wins. Needs matplotlib (`pip install 'layerflow[plot]'`); drawn with the Agg
backend, so no display is needed. The format follows the extension (.png, .svg, .pdf).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UserError, file_error
from . import output_path

SKIP = {"event", "iter", "elapsed_s"}


def read_metrics(path: str | Path) -> dict:
    """{'train': {iter: record}, 'test': {iter: record}} from a metrics JSONL file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, exc, "a metrics file (.jsonl)") from None
    events: dict[str, dict[int, dict]] = {"train": {}, "test": {}}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{n}: not a JSON record ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("iter"), int):
            raise UserError(f"{path}:{n}: a metrics record needs an integer \"iter\"")
        if rec.get("event") == "test" and isinstance(rec.get("outputs"), dict):
            rec = {**{k: v for k, v in rec.items() if k != "outputs"}, **rec["outputs"]}
        if rec.get("event") in events:
            events[rec["event"]][rec["iter"]] = rec
    if not events["train"] and not events["test"]:
        raise UserError(f"{path}: no \"train\" or \"test\" records (is this a layerflow "
                        f"metrics file?)")
    return events


def _series(records: dict[int, dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for it in sorted(records):
        v = records[it].get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(it)
            ys.append(float(v))
    return xs, ys


def plot_metrics(metrics_path: str | Path, output: str | Path, title: str | None = None,
                 plugins: list[str] | None = None) -> dict:
    """Draw the metrics log into `output`; returns {output, series: {name: points}}.

    `plugins` are loaded like every command's (`--plugin`), though a plot needs none."""
    from ..plugins import load_plugins

    load_plugins(plugins)
    try:
        import matplotlib
    except ImportError:
        raise UserError("plot needs matplotlib, which is not installed: "
                        "pip install 'layerflow[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    events = read_metrics(metrics_path)
    output = Path(output)
    fmt = output.suffix.lower().lstrip(".")
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if fmt not in supported:
        raise UserError(f"{output}: unknown image format \"{output.suffix}\"; use .png, .svg "
                        f"or .pdf")
    output = output_path(output)
    train, test = events["train"], events["test"]
    test_keys = sorted({k for r in test.values() for k, v in r.items()
                        if k not in SKIP and isinstance(v, (int, float))})
    panels = [("loss", "train loss")] if train else []
    _, lrs = _series(train, "lr")
    lr_drawn = ("constant" if len(set(lrs)) == 1 else "steps" if stepwise(lrs) else "line"
                if lrs else None)
    if lr_drawn == "constant" and not panels:
        panels.append(("lr", "learning rate"))  # nothing else to fold it into
        lr_drawn = "line"
    elif lr_drawn in ("steps", "line"):
        panels.append(("lr", "learning rate"))
    if test_keys:
        panels.append(("test", "test outputs"))
    if not panels:
        raise UserError(f"{metrics_path}: nothing to plot (no loss, lr or test outputs)")
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True,
                             squeeze=False)
    plotted = {}
    for ax, (key, label) in zip(axes[:, 0], panels):
        if key == "test":
            for k in test_keys:
                xs, ys = _series(test, k)
                ax.plot(xs, ys, marker="o", markersize=3, label=k)
                plotted[f"test.{k}"] = len(xs)
            ax.legend(loc="best", fontsize=8)
        else:
            xs, ys = _series(train, key)
            if key == "lr" and lr_drawn == "steps":
                # the lr recorded at a display holds until the next record shows it changed
                ax.step(xs, ys, where="post", color="C2")
            else:
                ax.plot(xs, ys, color="C0" if key == "loss" else "C2",
                        label="train loss" if key == "loss" else None)
            plotted[key] = len(xs)
            if key == "loss" and ys and min(ys) > 0 and max(ys) / min(ys) > 100:
                ax.set_yscale("log")
            if key == "loss" and lr_drawn == "constant":  # one number needs no panel
                ax.plot([], [], " ", label=f"learning rate {lrs[0]:g} throughout")
                ax.legend(loc="best", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("iteration")
    fig.suptitle(title or Path(metrics_path).name)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return {"output": str(output), "series": plotted, "panels": [label for _, label in panels],
            "lr": {"drawn": lr_drawn, "value": lrs[0]} if lr_drawn == "constant" else
                  {"drawn": lr_drawn}}


def stepwise(values: list[float]) -> bool:
    """Whether a series looks piecewise constant (a step or multistep lr): most consecutive
    values equal. Smooth policies (inv, exp, poly) change at every record."""
    changes = sum(a != b for a, b in zip(values, values[1:]))
    return len(values) > 2 and 2 * changes < len(values) - 1
