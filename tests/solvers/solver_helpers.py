"""Helpers shared by the solver and trainer tests: write a net and a solver YAML."""
from __future__ import annotations

import textwrap

import yaml


def write_solver(folder, net: str, **keys):
    """net.yaml (the given text) and solver.yaml (keys) in `folder`; returns solver.yaml."""
    (folder / "net.yaml").write_text(textwrap.dedent(net))
    spec = {"net": "net.yaml", "max_iter": 10, "random_seed": 1, **keys}
    path = folder / "solver.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
