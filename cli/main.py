"""`layerflow` command line: thin wrappers over engine functions."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import PluginOpt, app, emit_json, run

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
             "list items by index: layers.ip1.param.0.lr_mult=2; one phase's layer of a "
             "shared name: layers.data@test.batch_size=50) or net.<key> for a net key "
             "(--set net.dtype=float64). VALUE is read as YAML (numbers, true, [1, 2]...)."),
    start_over: bool = typer.Option(False, "--start-over",
                                    help="Start a new run even though snapshot_prefix holds "
                                         "an earlier run's files: they are moved into a "
                                         "dated folder beside them first."),
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
                  events=events, overrides=list(sets or []), profile=profile,
                  start_over=start_over)
    if as_json:
        emit_json(summary)
    elif profile:
        from layerflow.tools.profile import format_profile

        typer.echo(format_profile(summary["profile"], "per-layer time during training"))
    if summary.get("interrupted"):  # the events said so, first
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def test(
    net: Path = typer.Argument(..., help="net.yaml"),
    weights: Path = typer.Option(..., "--weights", help="Weights (.safetensors) to evaluate "
                                                        "(a .solverstate: the weights it was "
                                                        "written with)."),
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
        samples = f", {result['samples']} samples" if result["samples"] else ""
        typer.echo(f"({result['iterations']} batches{samples}, {result['elapsed_s']} s)")
    for note in result.get("notes", []):
        typer.echo(note, err=True)
    if result.get("warning"):
        typer.echo(f"warning: {result['warning']}", err=True)
