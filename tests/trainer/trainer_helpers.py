"""Helpers for the trainer tests: a small spiral net, solver files, running a Trainer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import yaml

from layerflow.snapshot import list_snapshots, load_weights
from layerflow.solver import Solver
from layerflow.trainer import Events, Trainer

NET = """
name: spiral_small
layers:
  - {name: data, type: Data, top: [data, label], source: spiral, points_per_class: 50,
     batch_size: 32, shuffle: true, include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: spiral, points_per_class: 50,
     batch_size: 50, shuffle: true, include: {phase: test}}
  - {name: ip1, type: InnerProduct, bottom: data, num_output: HIDDEN}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""

HYPER = {"SGD": dict(base_lr=0.1, momentum=0.9),
         "Nesterov": dict(base_lr=0.1, momentum=0.9),
         "AdaGrad": dict(base_lr=0.05, momentum=0.0),
         "RMSProp": dict(base_lr=0.01, momentum=0.0, rms_decay=0.95),
         "AdaDelta": dict(base_lr=1.0, momentum=0.95, delta=1e-6),
         "Adam": dict(base_lr=0.01, momentum=0.9, momentum2=0.999)}


def write(folder: Path, hidden: int = 16, net: str | None = None, **keys) -> Path:
    """net.yaml and solver.yaml in `folder` (snapshots under folder/snap/s); returns the
    solver path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.yaml").write_text(textwrap.dedent(net or NET).replace("HIDDEN",
                                                                         str(hidden)))
    spec = {"net": "net.yaml", "type": "SGD", "base_lr": 0.1, "momentum": 0.9,
            "max_iter": 20, "random_seed": 1, "snapshot_prefix": "snap/s", **keys}
    path = folder / "solver.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class Recorder(Events):
    """Keeps every event, and the loss of every iteration."""

    def __init__(self):
        self.records, self.losses, self.warnings, self.snapshots = [], [], [], []

    def start(self, solver, start_iter):
        self.solver = solver

    def iteration(self, it):
        self.losses.append(self.solver.last_loss)

    def display(self, record):
        self.records.append(record)

    def test(self, record):
        self.records.append(record)

    def snapshot(self, state, weights):
        self.snapshots.append(state)

    def warning(self, message):
        self.warnings.append(message)


def run(solver_path: Path, resume=None, overrides=None) -> tuple[Trainer, dict]:
    from layerflow.overrides import Overrides

    solver = Solver.from_yaml(solver_path, overrides=Overrides(overrides or []))
    trainer = Trainer(solver, Recorder())
    if resume is not None:
        trainer.resume(resume)
    return trainer, trainer.run()


def weights_of(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in trainer.solver.net.state_dict().items()}


def newest(prefix: Path) -> tuple[int, Path]:
    found = list_snapshots(prefix)
    return found[0] if found else (0, None)


def newest_weights(prefix: Path) -> dict[str, np.ndarray]:
    _, state = newest(prefix)
    return load_weights(state.with_suffix(".safetensors"))


def metrics(prefix: Path) -> list[dict]:
    path = Path(f"{prefix}_metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args, **kw) -> subprocess.Popen:
    """`layerflow ARGS` in a subprocess (the same interpreter), output captured."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "layerflow.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kw)
