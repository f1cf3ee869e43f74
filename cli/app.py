"""The Typer app and what every command shares: the user-error handling of `run`, `--json`
output and the `--plugin` option. Command modules (cli/main.py, cli/tools.py) import this one,
never each other.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Callable

import typer

from layerflow import __version__
from layerflow.distributed import launched_rank
from layerflow.errors import UserError

class Command(typer.core.TyperCommand):
    """Help as a well-kept CLI prints it: `Usage: layerflow train [OPTIONS] SOLVER`, the
    arguments by name with their description, options with a metavar saying what they take
    (`--weights FILE`) and none for flags, prose reflowed to the terminal once."""

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or param.name.upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter):
        args, opts = [], []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                args.append((param.metavar or param.name.upper(), param.help or ""))
            elif param.param_type_name == "option":
                record = param.get_help_record(ctx)
                if record is not None:
                    opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


# rich_markup_mode=None: plain help (click's layout), no boxes, no markup to escape
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Train YAML-defined nets of Numba-jitted layers, Caffe's workflow.")
state = {"debug": False}


def command(name: str | None = None, *, short_help: str):
    """Register a command on `app` with the plain help of `Command`; `short_help` is its line
    in `layerflow --help` (under 60 characters, so it is never cut)."""
    return app.command(name, cls=Command, short_help=short_help)


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
    if launched_rank() != 0:
        # a data-parallel run: rank 0 reports for all; the others say only what failed in
        # them alone (`run`), so every message is shown once
        state["silenced"] = True
        sys.stdout = sys.stderr = open(os.devnull, "w")


def run(fn: Callable, *args, **kwargs):
    """Call an engine function; a UserError becomes one message on stderr and exit status 2
    (a `quiet` one, said by another process of a data-parallel run, only the status)."""
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        if state["debug"]:
            traceback.print_exc()
        if not err.quiet:
            if state.get("silenced"):  # a process other than rank 0: only its own failure
                print(f"error: {err}", file=sys.__stderr__, flush=True)
            else:
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


PluginOpt = typer.Option(None, "--plugin", metavar="FILE|MODULE",
                         help="A .py file or module that registers layer, solver, lr policy "
                              "or data source types (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable result on stdout.")


def at_least(value, low, flag: str):
    """Option callback: `value` (None allowed) must be >= low (a usage error otherwise)."""
    if value is not None and value < low:
        raise typer.BadParameter(f"must be at least {low}, got {value}", param_hint=flag)
    return value
