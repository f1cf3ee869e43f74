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
    except OSError as err:  # a folder that cannot be created, a full disk, no permission...
        if state["debug"]:
            traceback.print_exc()
        where = f"{err.filename}: " if err.filename else ""
        typer.echo(f"error: {where}{err.strerror or err}", err=True)
        raise typer.Exit(2)
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
                                              "for the newest snapshot under snapshot_prefix "
                                              "(none yet: start fresh; a damaged one is "
                                              "reported and the next older one used)."),
    weights: Optional[Path] = typer.Option(None, "--weights",
                                           help="Initialise params from a .safetensors "
                                                "file (matched by layer name)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    plugin: Optional[List[str]] = PluginOpt,
    sets: Optional[List[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Override a key before validation (repeatable). KEY is a solver key "
             "(--set base_lr=0.05), layers.<layer name>.<key> for a layer's key "
             "(--set layers.ip1.num_output=200; nested: layers.ip1.weight_filler.std=0.1, "
             "list items by index: layers.ip1.param.0.lr_mult=2) or net.<key> for a net key "
             "(--set net.dtype=float64). VALUE is read as YAML (numbers, true, [1, 2]...)."),
    profile: bool = typer.Option(False, "--profile",
                                 help="Time each layer's forward and backward during "
                                      "training; report them at the end (and in --json)."),
):
    """Train the net of SOLVER (Caffe's `caffe train`).

    Snapshots, the metrics log (<prefix>_metrics.jsonl) and the configuration actually run
    (<prefix>_solver.yaml and <prefix>_net.yaml, after --set) go under snapshot_prefix.
    Ctrl-C (SIGINT) writes a snapshot and stops with exit status 130; SIGHUP writes a
    snapshot and goes on. A diverged run (NaN or infinite loss or param) stops with exit
    status 3, keeping the last good snapshot. --resume auto reruns safely after any crash.
    """
    from layerflow.trainer import EXIT_INTERRUPTED
    from layerflow.trainer import train as engine_train
    from .progress import make_events

    events = make_events(quiet=as_json)
    summary = run(engine_train, solver, resume=resume, weights=weights, plugins=plugin,
                  events=events, overrides=list(sets or []), profile=profile)
    if as_json:
        emit_json(summary)
    elif profile:
        from .tools import print_profile

        print_profile(summary["profile"])
    if summary.get("interrupted"):
        typer.echo(f"interrupted at iteration {summary['iterations']}; snapshot "
                   f"{summary['snapshot']} (continue with --resume auto)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)


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


from . import tools  # noqa: E402,F401  (registers the tool commands on `app`)


if __name__ == "__main__":
    main()
