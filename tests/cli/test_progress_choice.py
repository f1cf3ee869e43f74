"""The progress bar is drawn only on a terminal, and never under an MPI launcher: Open MPI gives
every process a pseudo-terminal for stdout even when mpirun's output goes to a file, so the
bar's escape codes would fill the log."""
from __future__ import annotations

import sys

import pytest

from cli.progress import PlainEvents, RichEvents, make_events


@pytest.mark.parametrize("env, tty, expected", [
    ({}, True, RichEvents),
    ({}, False, PlainEvents),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True, PlainEvents),
    ({"OMPI_COMM_WORLD_SIZE": "1"}, True, PlainEvents),  # mpirun -n 1
    ({"PMI_SIZE": "4"}, True, PlainEvents),  # MPICH's launcher
])
def test_bar_only_on_a_terminal_outside_mpi(monkeypatch, env, tty, expected):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    assert type(make_events()) is expected
