"""`layerflow convert`: Caffe's files to layerflow's and back (layerflow.caffe.convert).
Registered on the app of cli/app.py when cli/__init__.py imports this module."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import JsonOpt, command, emit_json, run


@command(short_help="Convert Caffe's nets, solvers, weights and mean files, and back.")
def convert(
    src: Path = typer.Argument(..., metavar="SRC",
                               help="The file to convert (.prototxt, .yaml, .caffemodel, "
                                    ".safetensors, .binaryproto, .npy)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="The file to write; its suffix says the format."),
    net: Optional[Path] = typer.Option(None, "--net", metavar="NET",
                                       help="The net (.yaml or .prototxt) the weights belong "
                                            "to (for .safetensors -> .caffemodel)."),
    as_json: bool = JsonOpt,
):
    """Convert between Caffe's files and layerflow's (needs pip install 'layerflow[caffe]').

    net.prototxt -> net.yaml; solver.prototxt -> solver.yaml plus its net beside it;
    net.yaml -> net.prototxt; X.caffemodel -> X.safetensors; X.safetensors --net NET ->
    X.caffemodel; mean.binaryproto <-> mean.npy. Legacy (V0, V1) nets are upgraded as Caffe
    does; relative paths are resolved as Caffe does (from the working directory, then the
    file's folder) and written relative to the output.
    """
    from layerflow.caffe.convert import convert as engine_convert

    result = run(engine_convert, src, output, net=net)
    if as_json:
        emit_json(result)
        return
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("wrote " + ", ".join(result["written"]))
