"""`layerflow` command line: thin wrappers over engine functions."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Callable, List, Optional

import typer

from layerflow import __version__
from layerflow.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="layerflow: train YAML-defined nets of Numba-jitted layers.")
state = {"debug": False}


def _version(value: bool):
    if value:
        typer.echo(f"layerflow {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors."),
):
    state["debug"] = debug


def run(fn: Callable, *args, **kwargs):
    """Call an engine function; a UserError becomes one message on stderr and exit status 2."""
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        if state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130)


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=float))


PluginOpt = typer.Option(None, "--plugin", help="Module or .py file registering layer/solver "
                                                "types (repeatable).")


@app.command()
def train(
    solver: Path = typer.Argument(..., help="solver.yaml"),
    resume: Optional[str] = typer.Option(None, "--resume",
                                         help="A .solverstate to continue from, or 'auto' "
                                              "for the newest snapshot (none: start fresh)."),
    weights: Optional[Path] = typer.Option(None, "--weights",
                                           help="Initialise params from a .safetensors "
                                                "file (matched by layer name)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Train the net of SOLVER (Caffe's `caffe train`)."""
    from layerflow.trainer import train as engine_train
    from .progress import make_events

    events = make_events(quiet=as_json)
    summary = run(engine_train, solver, resume=resume, weights=weights, plugins=plugin,
                  events=events)
    if as_json:
        emit_json(summary)


@app.command()
def test(
    net: Path = typer.Argument(..., help="net.yaml"),
    weights: Path = typer.Option(..., "--weights", help="Weights (.safetensors) to evaluate."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1,
                                             help="Batches to average (default: one pass "
                                                  "over the test data)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result on stdout."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Evaluate NET (test phase) with WEIGHTS: mean of each output over the batches."""
    from layerflow.trainer import test as engine_test

    result = run(engine_test, net, weights, iterations=iterations, plugins=plugin)
    if as_json:
        emit_json(result)
    else:
        for name, value in result["outputs"].items():
            typer.echo(f"{name} = {value:.6g}")
        typer.echo(f"({result['iterations']} batches, {result['elapsed_s']} s)")


def main():
    app()


if __name__ == "__main__":
    main()
