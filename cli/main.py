"""`layerflow` command line: thin wrappers over engine functions."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import JsonOpt, PluginOpt, command, emit_json, run
from .app import app  # noqa: F401  (scripts and tests import the app from here)
from .app import at_least as _at_least


@command(short_help="Train a net with the solver of a solver.yaml.")
def train(
    solver: Path = typer.Argument(..., metavar="SOLVER",
                                  help="The solver YAML, or a Caffe solver .prototxt (it names "
                                       "the net to train)."),
    resume: Optional[str] = typer.Option(
        None, "--resume", metavar="STATE|auto",
        help="Continue from a .solverstate, or 'auto': the snapshot written last under "
             "snapshot_prefix (none yet: start afresh; a damaged one is reported and the "
             "one before it used)."),
    start_over: bool = typer.Option(
        False, "--start-over",
        help="Start a new run even though snapshot_prefix holds an earlier run's files; "
             "they are moved into a dated folder beside them first."),
    weights: Optional[str] = typer.Option(
        None, "--weights", metavar="FILE[,FILE...]",
        help="Fine-tune: copy params from .safetensors or .caffemodel files, matched by layer "
             "name; in a comma-separated list, later files override earlier ones."),
    stage: Optional[List[str]] = typer.Option(
        None, "--stage", metavar="STAGE",
        help="A stage of the train net (repeatable or comma-separated; Caffe's -stage)."),
    level: Optional[int] = typer.Option(None, "--level", metavar="N",
                                        help="The level of the train net (Caffe's -level)."),
    sets: Optional[List[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Override a key before validation (repeatable). KEY is a solver key "
             "(base_lr=0.05), layers.NAME.KEY for a layer's key (layers.ip1.num_output=200; "
             "nested keys and list items by dots: layers.ip1.weight_filler.std=0.1, "
             "layers.ip1.param.0.lr_mult=2), layers.NAME@PHASE.KEY for the layer of one "
             "phase when train and test layers share a name (layers.data@test.batch_size=50),"
             " or net.KEY (net.dtype=float64). VALUE is YAML: 0.05, true, [1, 2]."),
    profile: bool = typer.Option(
        False, "--profile",
        help="Time each layer's forward and backward during training and report them at "
             "the end (and in --json)."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print a JSON summary on stdout (progress goes to "
                                      "stderr)."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Train the net of SOLVER, as Caffe's `caffe train` does.

    Snapshots, the metrics log (PREFIX_metrics.jsonl) and the configuration actually run
    (PREFIX_solver.yaml and PREFIX_net.yaml, after --set) go under the solver's
    snapshot_prefix.

    Ctrl-C writes a snapshot and stops (exit status 130); SIGHUP writes a snapshot and goes
    on. A run whose loss or params turn NaN or infinite stops with exit status 3 and keeps
    the last good snapshot. `--resume auto` can be rerun after any crash.
    """
    from layerflow.trainer import EXIT_INTERRUPTED
    from layerflow.trainer import train as engine_train
    from .progress import make_events

    events = make_events(quiet=as_json)
    summary = run(engine_train, solver, resume=resume, weights=weights, plugins=plugin,
                  events=events, overrides=list(sets or []), profile=profile,
                  start_over=start_over, level=level, stage=stage)
    if as_json:
        emit_json(summary)
    elif profile:
        from layerflow.tools.profile import format_profile

        typer.echo(format_profile(summary["profile"], "per-layer time during training"))
    if summary.get("interrupted"):  # the events said so, first
        raise typer.Exit(EXIT_INTERRUPTED)


@command(short_help="Evaluate a net's outputs with trained weights.")
def test(
    net: Path = typer.Argument(..., metavar="NET",
                               help="The net YAML or Caffe net .prototxt (its test phase)."),
    weights: str = typer.Option(..., "--weights", metavar="FILE[,FILE...]",
                                help="The weights to evaluate: .safetensors or .caffemodel "
                                     "files (a comma-separated list: later files override), "
                                     "or a .solverstate: the weights it was written with."),
    stage: Optional[List[str]] = typer.Option(
        None, "--stage", metavar="STAGE",
        help="A stage of the net (repeatable or comma-separated; Caffe's -stage)."),
    level: int = typer.Option(0, "--level", metavar="N",
                              help="The level of the net (Caffe's -level)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", metavar="N",
                                             callback=lambda v: _at_least(v, 1, "--iterations"),
                                             help="Average over N batches from the first "
                                                  "sample (default: exactly one pass over "
                                                  "the test data)."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Evaluate NET in its test phase with the given weights: the mean of each output
    (loss, accuracy...) over one pass over the test data, as Caffe's `caffe test`."""
    from layerflow.trainer import test as engine_test

    result = run(engine_test, net, weights, iterations=iterations, plugins=plugin,
                 level=level, stage=stage)
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(result)
    else:
        for name, value in result["outputs"].items():
            typer.echo(f"{name} = {value:.6g}")
        samples = f", {result['samples']} samples" if result["samples"] else ""
        n = result["iterations"]
        typer.echo(f"({n} batch{'' if n == 1 else 'es'}{samples}, {result['elapsed_s']} s)")
    for note in result.get("notes", []):
        typer.echo(note, err=True)
    if result.get("warning"):
        typer.echo(f"warning: {result['warning']}", err=True)
