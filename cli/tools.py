"""The tool commands (`gradcheck`, `layers`, `summary`, `time`, `draw`, `plot`, `schema`), each
a thin call of an engine function in `layerflow.tools`. Registered on the app of cli/app.py
when `main()` imports this module. Engine modules are imported inside the commands so that
`layerflow --help` stays fast and never imports a plugin.
"""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .app import PluginOpt, app, emit_json, run


class Phase(str, Enum):
    train = "train"
    test = "test"


class Kind(str, Enum):
    layer = "layer"
    solver = "solver"
    lr_policy = "lr_policy"


class SchemaKind(str, Enum):
    net = "net"
    solver = "solver"


PhaseOpt = typer.Option(Phase.train, "--phase", help="Which phase's net to build.")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable result on stdout.")


@app.command()
def gradcheck(
    net: Path = typer.Argument(..., help="net.yaml"),
    layer: Optional[str] = typer.Option(None, "--layer", help="Check only this layer."),
    phase: Phase = PhaseOpt,
    step: float = typer.Option(1e-3, "--step", help="Central-difference step."),
    threshold: float = typer.Option(1e-6, "--threshold",
                                    help="Fail when |a - n| > threshold * max(|a|, |n|, 1)."),
    kink: float = typer.Option(0.0, "--kink", help="Where a layer may bend: failures only "
                                                   "at bottom elements this close are retried "
                                                   "with them skipped (unless the layer "
                                                   "declares its own kink)."),
    kink_range: Optional[float] = typer.Option(None, "--kink-range", min=0.0,
                                               help="How close (default 2 x step; 0: skip "
                                                    "nothing)."),
    max_checks: int = typer.Option(200, "--max-checks", min=0,
                                   help="Elements checked per bottom and param, drawn at "
                                        "random (0: all)."),
    seed: int = typer.Option(1701, "--seed", help="Seed of the inputs and upstream diffs."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Check each layer's gradients against finite differences (exit 1 on failure).

    The net is built in float64 and each layer is checked on the bottoms it gets in the net,
    with Caffe's rule |a - n| <= threshold * max(|a|, |n|, 1); elements at a layer's kink are
    skipped. Reports per layer, bottom and param the worst element with both values.
    """
    from layerflow.tools.gradcheck_net import check_net, format_check

    result = run(check_net, net, layer, phase=phase.value, step=step, threshold=threshold,
                 kink=kink, kink_range=kink_range, max_checks=max_checks, seed=seed,
                 plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_check(result))
    if not result["ok"]:
        raise typer.Exit(1)


@app.command()
def layers(
    type_name: Optional[str] = typer.Argument(None, metavar="[TYPE]",
                                              help="Show this type's keys."),
    kind: Optional[Kind] = typer.Option(None, "--kind",
                                        help="Which types: layer (the default listing), solver "
                                             "or lr_policy. With TYPE: where to look (default: "
                                             "layers, then solvers, then lr policies)."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """List the registered types, or one type's keys.

    Built-in and plugin types (entry points, --plugin) with where each comes from; for one
    TYPE, its keys with type, default and description, from its pydantic model.
    """
    from layerflow.tools import types

    if type_name is None:
        result = run(types.list_types, kind.value if kind else "layer", plugins=plugin)
        emit_json(result) if as_json else typer.echo(types.format_types(result))
    else:
        result = run(types.describe_type, type_name, kind.value if kind else None,
                     plugins=plugin)
        emit_json(result) if as_json else typer.echo(types.format_type(result))


@app.command()
def summary(
    net: Path = typer.Argument(..., help="net.yaml"),
    phase: Phase = PhaseOpt,
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Per layer: tops' shapes, param count, forward FLOPs, activation memory; totals."""
    from layerflow.tools.summary import format_summary, summarize

    result = run(summarize, net, phase.value, plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_summary(result))


@app.command("time")
def time_(
    net: Path = typer.Argument(..., help="net.yaml"),
    iterations: int = typer.Option(50, "--iterations", min=1, help="Timed iterations."),
    phase: Phase = PhaseOpt,
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Average forward and backward time per layer and in total (Caffe's time).

    One warm-up pass (Numba kernels compiled or loaded), then ITERATIONS timed passes.
    """
    from layerflow.tools.profile import format_time, time_net

    result = run(time_net, net, iterations, phase.value, plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_time(result))


@app.command()
def draw(
    net: Path = typer.Argument(..., help="net.yaml"),
    output: Path = typer.Option(..., "-o", "--output",
                                help=".dot/.gv (Graphviz), .mmd/.md (Mermaid), .svg/.png "
                                     "(needs Graphviz's dot)."),
    phase: Phase = PhaseOpt,
    rankdir: str = typer.Option("TB", "--rankdir", help="TB, BT, LR or RL."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Draw the net's graph (layers, blobs with their shapes)."""
    from layerflow.tools.draw import draw as engine_draw

    result = run(engine_draw, net, output, phase.value, rankdir.upper(), plugins=plugin)
    typer.echo(f"wrote {result['output']} ({result['format']}: {result['layers']} layers, "
               f"{result['blobs']} blobs)")


@app.command()
def plot(
    metrics: Path = typer.Argument(..., help="<snapshot_prefix>_metrics.jsonl"),
    output: Path = typer.Option(..., "-o", "--output", help="Image to write (.png, .svg, .pdf)."),
    title: Optional[str] = typer.Option(None, "--title", help="Title (default: file name)."),
):
    """Plot training loss, learning rate and test outputs over iterations.

    Reads the metrics log of `layerflow train`; needs matplotlib
    (pip install 'layerflow\\[plot]').
    """
    from layerflow.tools.plot import plot_metrics

    result = run(plot_metrics, metrics, output, title)
    typer.echo(f"wrote {result['output']} ("
               + ", ".join(f"{k}: {n} points" for k, n in result["series"].items()) + ")")


@app.command()
def schema(
    kind: SchemaKind = typer.Argument(SchemaKind.net, help="net or solver."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write to this file instead of stdout."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """JSON Schema of net.yaml or solver.yaml, for editors.

    The net schema has every registered layer type, plugins included. See
    docs/tools.md for hooking it into an editor.
    """
    from layerflow.tools.schema import schema as engine_schema

    result = run(engine_schema, kind.value, plugins=plugin)
    text = json.dumps(result, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            typer.echo(f"error: {output}: cannot write: {exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"wrote {output}", err=True)
