"""Fixtures for solver tests."""
from __future__ import annotations

import pytest

from layerflow.solver import Solver
from solver_helpers import write_solver


@pytest.fixture
def make_solver(tmp_path):
    """make(net_yaml_text, **solver_keys) -> Solver built from files in tmp_path."""
    def make(net: str, **keys) -> Solver:
        return Solver.from_yaml(write_solver(tmp_path, net, **keys))
    return make
