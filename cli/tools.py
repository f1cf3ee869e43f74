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

from .app import JsonOpt, PluginOpt, command, emit_json, run
from .app import at_least as _at_least


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


PhaseOpt = typer.Option(Phase.train, "--phase", metavar="train|test",
                        help="Which phase's net to build (default: train).",
                        show_default=False)
DeployOpt = typer.Option(False, "--deploy", help="The deploy net derived from it instead (what "
                                                 "predict and export use).")
NetArg = typer.Argument(..., metavar="NET", help="The net YAML.")


@command(short_help="Check every layer's gradients numerically.")
def gradcheck(
    net: Path = NetArg,
    layer: Optional[str] = typer.Option(None, "--layer", metavar="NAME",
                                        help="Check only this layer."),
    phase: Phase = PhaseOpt,
    step: float = typer.Option(1e-3, "--step", metavar="H",
                               help="The step of the central differences."),
    threshold: float = typer.Option(1e-6, "--threshold", metavar="T",
                                    help="Fail when |a - n| > T * max(|a|, |n|, 1) for an "
                                         "analytic a and a numeric n."),
    kink: float = typer.Option(0.0, "--kink", metavar="X",
                               help="Where a layer may bend: a layer that fails only at bottom "
                                    "elements near X is checked again with them skipped "
                                    "(unless it declares its own kink); one still failing, "
                                    "skipping the failing elements whose one-sided "
                                    "differences disagree (MAX-pooling ties)."),
    kink_range: Optional[float] = typer.Option(
        None, "--kink-range", metavar="R", callback=lambda v: _at_least(v, 0, "--kink-range"),
        help="How near to the kink (default: 2 x the step; 0: skip nothing)."),
    max_checks: int = typer.Option(200, "--max-checks", metavar="N",
                                   callback=lambda v: _at_least(v, 0, "--max-checks"),
                                   help="Elements checked per bottom and param, drawn at "
                                        "random (0: all)."),
    seed: int = typer.Option(1701, "--seed", metavar="N",
                             help="Seed of the inputs and the upstream diffs."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Check each layer's gradients against central differences, as Caffe's tests do.

    The net is built in float64 and each layer is checked on the bottoms it gets in the net,
    with Caffe's rule |a - n| <= T * max(|a|, |n|, 1); elements at a layer's kink are
    skipped. Prints the worst element of each bottom and param with both values. Exit status
    1 when a check fails.
    """
    from layerflow.tools.gradcheck_net import check_net, format_check

    result = run(check_net, net, layer, phase=phase.value, step=step, threshold=threshold,
                 kink=kink, kink_range=kink_range, max_checks=max_checks, seed=seed,
                 plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_check(result))
    if not result["ok"]:
        raise typer.Exit(1)


@command(short_help="List layer, solver and lr policy types, or a type's keys.")
def layers(
    type_name: Optional[str] = typer.Argument(None, metavar="TYPE",
                                              help="Show the keys of this type."),
    kind: Optional[Kind] = typer.Option(None, "--kind", metavar="layer|solver|lr_policy",
                                        help="Which types to list (default: layer). With "
                                             "TYPE: where to look (default: layers, then "
                                             "solvers, then lr policies)."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """List the registered types, or show one type's keys.

    Built-in types and those of plugins (installed packages, --plugin), with where each
    comes from. With TYPE: its keys with their type, default and description.
    """
    from layerflow.tools import types

    if type_name is None:
        result = run(types.list_types, kind.value if kind else "layer", plugins=plugin)
        emit_json(result) if as_json else typer.echo(types.format_types(result))
    else:
        result = run(types.describe_type, type_name, kind.value if kind else None,
                     plugins=plugin)
        emit_json(result) if as_json else typer.echo(types.format_type(result))


@command(short_help="Shapes, params, FLOPs and memory per layer.")
def summary(
    net: Path = NetArg,
    phase: Phase = PhaseOpt,
    deploy: bool = DeployOpt,
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Show each layer's top shapes, param count, forward FLOPs and activation memory, and
    the totals."""
    from layerflow.tools.summary import format_summary, summarize

    result = run(summarize, net, "deploy" if deploy else phase.value, plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_summary(result))


@command("time", short_help="Time forward and backward per layer.")
def time_(
    net: Path = NetArg,
    iterations: int = typer.Option(50, "--iterations", metavar="N",
                                   callback=lambda v: _at_least(v, 1, "--iterations"),
                                   help="Timed passes (after one untimed warm-up pass)."),
    phase: Phase = PhaseOpt,
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Time each layer's forward and backward, and whole passes, as Caffe's `caffe time`.

    One warm-up pass compiles the Numba kernels (or loads them from the cache), then N
    passes are timed; prints the mean milliseconds per layer and in total.
    """
    from layerflow.tools.profile import format_time, time_net

    result = run(time_net, net, iterations, phase.value, plugins=plugin)
    emit_json(result) if as_json else typer.echo(format_time(result))


@command(short_help="Draw a net's graph (Graphviz, Mermaid, SVG, PNG).")
def draw(
    net: Path = NetArg,
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="Where to write it; the extension gives the format: "
                                     ".dot or .gv (Graphviz), .mmd or .md (Mermaid), .svg or "
                                     ".png (rendered by Graphviz's dot)."),
    phase: Phase = PhaseOpt,
    deploy: bool = DeployOpt,
    rankdir: str = typer.Option("TB", "--rankdir", metavar="TB|BT|LR|RL",
                                help="The direction of the graph: top to bottom, bottom to "
                                     "top, left to right, right to left."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Draw the net's graph: layers as boxes, blobs as ellipses with their shapes."""
    from layerflow.tools.draw import draw as engine_draw

    result = run(engine_draw, net, output, "deploy" if deploy else phase.value, rankdir.upper(),
                 plugins=plugin)
    typer.echo(f"wrote {result['output']} ({result['format']}: {result['layers']} layers, "
               f"{result['blobs']} blobs)")


@command(short_help="Plot loss, learning rate and tests of a training run.")
def plot(
    metrics: Path = typer.Argument(..., metavar="METRICS",
                                   help="The metrics log of a run, PREFIX_metrics.jsonl."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="The image to write: .png, .svg or .pdf."),
    title: Optional[str] = typer.Option(None, "--title", metavar="TEXT",
                                        help="The title (default: the file's name)."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Plot the training loss, the learning rate and the test outputs over iterations, from
    the metrics log `layerflow train` writes. Needs matplotlib: pip install
    'layerflow[plot]'."""
    from layerflow.tools.plot import plot_metrics

    result = run(plot_metrics, metrics, output, title, plugins=plugin)
    parts = [f"{k}: {n} points" for k, n in result["series"].items()]
    if result["lr"]["drawn"] == "constant":
        parts.insert(1, f"lr: {result['lr']['value']:g} throughout")
    typer.echo(f"wrote {result['output']} ({', '.join(parts)})")


@command(short_help="Write the JSON Schema of net.yaml or solver.yaml.")
def schema(
    kind: SchemaKind = typer.Argument(SchemaKind.net, metavar="net|solver",
                                      help="Which file's schema (default: net)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="FILE",
                                          help="Write it to FILE (folders are created) "
                                               "instead of stdout."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Print the JSON Schema of net.yaml or solver.yaml, for editors: completion, hover
    descriptions and checks as you type.

    The net schema has every registered layer type, plugins included. docs/tools.md shows
    how to hook it into an editor.
    """
    from layerflow.tools.schema import schema as engine_schema

    result = run(engine_schema, kind.value, plugins=plugin)
    if "$comment" in result:  # installed plugins that failed to load
        typer.echo(f"warning: {result['$comment']}", err=True)
    text = json.dumps(result, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from layerflow.tools import output_path

        try:
            run(output_path, output).write_text(text, encoding="utf-8")
        except OSError as exc:
            typer.echo(f"error: {output}: cannot write: {exc.strerror or exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"wrote {output}", err=True)
