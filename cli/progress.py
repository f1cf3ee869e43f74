"""How training progress is shown: a Rich progress bar on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys

import typer

from layerflow.trainer import Events


def number(v) -> str:
    """A metric as people read it: 6 significant digits, scientific notation for the huge
    and the tiny (a diverging loss is 3.2e+36, not 36 digits)."""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _pairs(values: dict) -> str:
    """'loss = 0.53, accuracy = 0.9'."""
    return ", ".join(f"{k} = {number(v)}" for k, v in values.items())


class PlainEvents(Events):
    """One line per event, on stderr when stdout is reserved for --json."""

    def __init__(self, err: bool = False):
        self.err = err

    def echo(self, text: str) -> None:
        typer.echo(text, err=self.err)

    def start(self, solver, start_iter):
        where = f" from iteration {start_iter}" if start_iter else ""
        self.echo(f"training {solver.net.name} with {solver.spec.type} for "
                  f"{solver.spec.max_iter} iterations{where} (seed {solver.seed})")

    def display(self, record):
        """'iter 200: loss = 0.4247 (mean of the last 100 iterations), lr = 0.01; outputs of
        iteration 200: loss = 0.4169; 3.1 s elapsed': which loss is which, said."""
        it, window = record["iter"], record.get("smoothed_over", 1)
        smoothed = f" (mean of the last {window} iterations)" if window > 1 else ""
        outputs = _pairs(record.get("outputs", {}))
        self.echo(f"iter {it}: loss = {number(record['loss'])}{smoothed}, "
                  f"lr = {number(record['lr'])}"
                  + (f"; outputs of iteration {it}: {outputs}" if outputs else "")
                  + f"; {record['elapsed_s']:.1f} s elapsed")

    def test(self, record):
        self.echo(f"iter {record['iter']} test: {_pairs(record['outputs'])}")

    def snapshot(self, state, weights):
        self.echo(f"snapshot: weights {weights}, solver state {state}")

    def warning(self, message):
        typer.echo(f"warning: {message}", err=True)

    def info(self, message):
        self.echo(message)

    def done(self, summary):
        if summary.get("nothing_to_do"):
            self.echo(summary["nothing_to_do"])
            return
        test = _pairs(summary["test"])
        if summary["interrupted"]:  # what happened first, on stderr with the other notices
            typer.echo(f"interrupted at iteration {summary['iterations']} of "
                       f"{summary['max_iter']} after {summary['elapsed_s']:.1f} s; snapshot "
                       f"{summary['snapshot']} (continue with --resume auto)", err=True)
            if test:
                self.echo(f"last test, at iteration {summary['test_iter']}: {test}")
            return
        self.echo(f"done: {summary['iterations']} iterations in {summary['elapsed_s']:.1f} s"
                  + (f"; test at iteration {summary['test_iter']}: {test}" if test else ""))


class RichEvents(PlainEvents):
    """PlainEvents plus a live progress bar (only on a terminal):
    `train ━━━━━━━━━━━━ 120/2000 elapsed 0:00:03 left 0:00:45 loss 0.4247`.
    `console`: where to draw it (default: the terminal)."""

    def __init__(self, console=None):
        super().__init__()
        self.console = console

    def start(self, solver, start_iter):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        super().start(solver, start_iter)
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("elapsed"), TimeElapsedColumn(),
                                 TextColumn("left"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[loss]}"), transient=True,
                                 console=self.console)
        self.task = self.progress.add_task("train", total=solver.spec.max_iter,
                                           completed=start_iter, loss="")
        self.progress.start()
        self._every = max(1, solver.spec.max_iter // 200)

    def echo(self, text):
        if hasattr(self, "progress"):
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            super().echo(text)

    def iteration(self, it):
        if it % self._every == 0:
            self.progress.update(self.task, completed=it)

    def display(self, record):
        self.progress.update(self.task, loss=f"loss {number(record['loss'])}")
        super().display(record)

    def done(self, summary):
        if hasattr(self, "progress"):  # not started when there was nothing to do
            self.progress.stop()
            del self.progress
        super().done(summary)


def make_events(quiet: bool = False) -> Events:
    """The progress bar only on a terminal. Under an MPI launcher stdout is a pseudo-terminal
    that Open MPI opens for each process even when mpirun's output goes to a file: plain
    lines there, or the log fills with the bar's escape codes and lines cut at 80 columns."""
    from layerflow.distributed import launched

    if quiet:
        return PlainEvents(err=True)
    if sys.stdout.isatty() and not launched():
        return RichEvents()
    return PlainEvents()
