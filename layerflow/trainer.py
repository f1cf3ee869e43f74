"""The training loop around a Solver: tests, display, snapshots, metrics, resume.

Caffe's loop order: test if due -> one iteration -> display if due -> snapshot if due.
Everything the loop reports also goes, one JSON record per event, to
`<snapshot_prefix>_metrics.jsonl`, so nobody has to parse logs.
"""
from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import snapshot as snap
from .errors import UserError
from .net import Net
from .solver import Solver


def evaluate(net: Net, iterations: int) -> dict[str, float]:
    """Mean of each output blob (summed over its elements) over `iterations` forward passes."""
    totals: dict[str, float] = {name: 0.0 for name in net.outputs}
    for _ in range(iterations):
        net.run_forward()
        for name in net.outputs:
            totals[name] += float(net.blobs[name].data.sum())
    return {name: total / iterations for name, total in totals.items()}


def default_test_iterations(net: Net) -> int:
    """One pass over the smallest data source of the net, or Caffe's 50 when unknown."""
    passes = [math.ceil(layer.num_samples / layer.p.batch_size) for layer in net.layers
              if getattr(layer, "num_samples", None) and hasattr(layer.p, "batch_size")]
    return min(passes) if passes else 50


class Events:
    """What the loop reports; the CLI subclasses it to print (plainly or with a progress bar)."""

    def start(self, solver: Solver, start_iter: int) -> None: ...
    def display(self, record: dict) -> None: ...
    def test(self, record: dict) -> None: ...
    def snapshot(self, path: Path) -> None: ...
    def iteration(self, it: int) -> None: ...
    def done(self, summary: dict) -> None: ...


@dataclass
class Trainer:
    solver: Solver
    events: Events = field(default_factory=Events)

    def __post_init__(self):
        self.prefix: Path = self.solver.cfg.snapshot_prefix
        self.metrics_path = Path(f"{self.prefix}_metrics.jsonl")
        self.losses: deque = deque(maxlen=self.solver.spec.average_loss)
        self.started = time.perf_counter()
        self.last_test: dict[str, float] = {}
        self.last_snapshot: Path | None = None

    # -- starting points ----------------------------------------------------------------
    def resume(self, where: str | Path) -> Path | None:
        """Restore from a solverstate path, or 'auto' = the newest complete snapshot."""
        if str(where) == "auto":
            for _, path in snap.list_snapshots(self.prefix):
                try:
                    self._restore(path)
                    return path
                except UserError:
                    continue  # an incomplete newest snapshot (crash mid-write): try older
            return None
        self._restore(Path(where))
        return Path(where)

    def _restore(self, path: Path) -> None:
        state, meta, weights = snap.load_snapshot(path)
        mine = json.loads(self.solver.fingerprint())
        theirs = json.loads(meta.get("fingerprint", "{}"))
        if theirs.get("params") != mine["params"]:
            theirs_params = {name: shape for name, shape in theirs.get("params", [])}
            for name, shape in mine["params"]:
                if theirs_params.get(name) != shape:
                    found = theirs_params.get(name)
                    raise UserError(
                        f"{path}: written by a different net: param {name} is "
                        f"{tuple(found) if found else 'missing'} in the snapshot but "
                        f"{tuple(shape)} in this net")
            raise UserError(f"{path}: written by a different net (its params differ)")
        if theirs.get("solver") != mine["solver"]:
            raise UserError(f"{path}: written by solver type {theirs.get('solver')}, this "
                            f"solver is {mine['solver']}; resume with the same type")
        self.solver.net.copy_from(weights, str(path), strict=True)
        self.solver.load_state(state, str(path))

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        solver, spec = self.solver, self.solver.spec
        self.events.start(solver, solver.iter)
        if spec.snapshot_prefix is not None or spec.snapshot or spec.snapshot_after_train:
            self.prefix.parent.mkdir(parents=True, exist_ok=True)
        if solver.test_nets and spec.test_interval and spec.test_initialization \
                and solver.iter == 0:
            self.test()
        while solver.iter < spec.max_iter:
            loss = solver.iteration()
            if not math.isfinite(loss):
                self._diverged(loss)
            self.losses.append(loss)
            it = solver.iter
            self.events.iteration(it)
            if spec.display and it % spec.display == 0:
                self._display(it)
            if solver.test_nets and spec.test_interval and it % spec.test_interval == 0:
                self.test()
            if spec.snapshot and it % spec.snapshot == 0:
                self.snapshot()
        if spec.snapshot_after_train and (self.last_snapshot is None
                                          or not str(self.last_snapshot).endswith(
                                              f"_iter_{solver.iter}.solverstate")):
            self.snapshot()
        if solver.test_nets and spec.test_interval and solver.iter % spec.test_interval:
            self.test()
        summary = {"iterations": solver.iter, "loss": self.smoothed_loss(),
                   "test": self.last_test, "elapsed_s": round(self.elapsed(), 3),
                   "snapshot": str(self.last_snapshot) if self.last_snapshot else None,
                   "metrics": str(self.metrics_path)}
        self.events.done(summary)
        return summary

    def smoothed_loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses else float("nan")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _display(self, it: int) -> None:
        record = {"event": "train", "iter": it, "lr": self.solver.learning_rate(it - 1),
                  "loss": self.smoothed_loss(), "elapsed_s": round(self.elapsed(), 3)}
        self._log(record)
        self.events.display(record)

    def test(self) -> dict[str, float]:
        solver = self.solver
        results: dict[str, float] = {}
        for net in solver.test_nets:
            iters = solver.spec.test_iter or default_test_iterations(net)
            results.update(evaluate(net, iters))
        self.last_test = results
        record = {"event": "test", "iter": solver.iter, **results,
                  "elapsed_s": round(self.elapsed(), 3)}
        self._log(record)
        self.events.test(record)
        return results

    def snapshot(self) -> Path:
        solver = self.solver
        meta = {"fingerprint": solver.fingerprint(), "iter": str(solver.iter)}
        path = snap.save_snapshot(self.prefix, solver.iter, solver.net.state_dict(),
                                  solver.state(), meta)
        self.last_snapshot = path
        self.events.snapshot(path)
        return path

    def _diverged(self, loss: float) -> None:
        raise UserError(f"training diverged at iteration {self.solver.iter}: loss is {loss}; "
                        f"try a lower base_lr or set clip_gradients")

    def _log(self, record: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def train(solver_path: str | Path, *, resume: str | None = None, weights: str | None = None,
          overrides=None, plugins: list[str] | None = None,
          events: Events | None = None) -> dict:
    """Engine entry point of `layerflow train`: build, maybe resume or load weights, run."""
    if resume and weights:
        raise UserError("give --resume or --weights, not both (resume restores the weights)")
    solver = Solver.from_yaml(solver_path, plugins=plugins, overrides=overrides)
    trainer = Trainer(solver, events or Events())
    if resume:
        trainer.resume(resume)
    elif weights:
        copied = solver.net.copy_from(snap.load_weights(Path(weights)), str(weights))
        if not copied:
            raise UserError(f"{weights}: no param in the file matches a layer of the net "
                            f"(params are matched by layer name)")
    return trainer.run()


def test(net_path: str | Path, weights: str | Path, *, iterations: int | None = None,
         plugins: list[str] | None = None, phase: str = "test") -> dict:
    """Engine entry point of `layerflow test`: mean outputs of the net with these weights."""
    net = Net.from_yaml(net_path, phase, plugins=plugins)
    copied = net.copy_from(snap.load_weights(Path(weights)), str(weights))
    missing = [f"{l}.{p}" for l, ps in net.params.items() for p in ps
               if f"{l}.{p}" not in copied]
    if missing:
        raise UserError(f"{weights}: has no values for {', '.join(missing)}; were these weights "
                        f"trained for {net_path}?")
    iters = iterations or default_test_iterations(net)
    t0 = time.perf_counter()
    results = evaluate(net, iters)
    return {"iterations": iters, "outputs": results,
            "elapsed_s": round(time.perf_counter() - t0, 3)}
