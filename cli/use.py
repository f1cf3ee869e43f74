"""Using a trained model: `predict` (top-k classes of new inputs) and `export` (ONNX), each a
thin call of an engine function (`layerflow.predict`, `layerflow.onnx`). Registered on the app
of cli/app.py when the package is imported.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .app import JsonOpt, PluginOpt, command, emit_json, run
from .app import at_least as _at_least


class _Bar:
    """A progress bar on stderr for long runs on a terminal (rich, as `train` uses)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 2000:
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)
            self.progress = Progress(TextColumn("[bold]predict"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)
            self.task = self.progress.add_task("predict", total=total)
            self.progress.start()
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


WeightsOpt = typer.Option(..., "--weights", metavar="FILE[,FILE...]",
                          help="The trained weights: a .safetensors or .caffemodel file, or a "
                               "comma-separated list applied in order.")


@command(short_help="Top-k classes of new inputs.")
def predict(
    net: Path = typer.Argument(..., metavar="NET",
                               help="The net YAML (its deploy net is derived)."),
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...",
                                        help="Images (PNG, JPEG...), folders of them, .npy or "
                                             ".npz arrays, CSV files of features."),
    weights: str = WeightsOpt,
    top_k: int = typer.Option(5, "--top-k", metavar="K",
                              callback=lambda v: _at_least(v, 1, "--top-k"),
                              help="Classes shown per input."),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE",
                                          help="Class names, one per line."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N",
                                   callback=lambda v: _at_least(v, 1, "--batch-size"),
                                   help="Samples per forward."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout: one per input, "
                                                      "then a summary."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="FILE",
                                          help="Write the results to this CSV file."),
    plugin: Optional[List[str]] = PluginOpt,
):
    """Top-k classes of each input with the trained model (exit 2 if an input failed).

    Inputs reach the net raw: the deploy net does the data layer's transform (scale, mean).
    With labels beside the inputs (a CSV label column, a label array in an .npz), the
    accuracy is reported too. An input that cannot be used is reported on stderr, naming the
    file; the others are still predicted and written.
    """
    from layerflow import predict as engine

    if as_json and output is not None:
        typer.echo("error: give --json or -o, not both", err=True)
        raise typer.Exit(2)
    bar = _Bar(sys.stderr.isatty() and not as_json)
    try:
        result = run(engine.predict, net, weights, list(inputs), top_k=top_k, labels=labels,
                     batch_size=batch_size, plugins=plugin, progress=bar)
    finally:
        bar.close()
    if as_json:
        for line in engine.json_lines(result):
            typer.echo(line)
    elif output is not None:
        run(engine.write_csv, result, output)
        typer.echo(f"wrote {output} ({result['samples']} rows)")
        typer.echo(engine.format_summary(result))
    elif result["samples"] or not result["failed"]:
        if result["samples"]:
            typer.echo(engine.format_table(result))
        typer.echo(engine.format_summary(result))
    for failure in result["failed"]:
        typer.echo(f"error: {failure['error']}", err=True)
    if result["failed"]:
        others = ("the results of the others were written" if result["samples"] else
                  "nothing was predicted")
        typer.echo(f"{len(result['failed'])} input(s) failed; {others}", err=True)
        raise typer.Exit(2)


@command(short_help="Export the deploy net to ONNX.")
def export(
    net: Path = typer.Argument(..., metavar="NET",
                               help="The net YAML (its deploy net is derived)."),
    weights: str = WeightsOpt,
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="The ONNX file to write."),
    opset: int = typer.Option(17, "--opset", metavar="N", help="ONNX opset (17 or newer)."),
    as_json: bool = JsonOpt,
    plugin: Optional[List[str]] = PluginOpt,
):
    """Export the deploy net with WEIGHTS to ONNX (needs pip install 'layerflow[onnx]').

    The model takes raw inputs with a free batch size: the data layer's transform (scale,
    mean) is its first nodes; SoftmaxLoss became Softmax. A layer type without an ONNX mapping
    is an error naming the layer (a plugin registers one with @layerflow.register_onnx).
    """
    from layerflow.onnx import export as engine_export

    result = run(engine_export, net, weights, output, opset=opset, plugins=plugin)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"wrote {result['output']} (opset {result['opset']}, {result['nodes']} nodes, "
                   f"{result['bytes']:,} bytes): inputs {_shapes(result['inputs'])}; outputs "
                   f"{_shapes(result['outputs'])}")


def _shapes(values: dict) -> str:
    return ", ".join(f"{name} {tuple(dims)}" for name, dims in values.items())
