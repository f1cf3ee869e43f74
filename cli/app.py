"""The Typer app and what every command shares: the user-error handling of `run`, `--json`
output and the `--plugin` option. Command modules (cli/main.py, cli/tools.py) import this one,
never each other.
"""
from __future__ import annotations

import json
import traceback
from typing import Callable

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
