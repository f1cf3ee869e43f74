"""Every example in models/ loads and trains a few iterations through `layerflow train`.

Models are found by globbing models/*/solver.yaml, so a new model is tested without editing this
file. A model is skipped (with the reason) only when its data is not on this machine, or when it
is a plugin package (it has a pyproject.toml) that is not installed.
"""
from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file
from typer.testing import CliRunner

import layerflow as lf
from layerflow.cli.main import app

MODELS = Path(__file__).resolve().parents[1] / "models"
SOLVERS = sorted(MODELS.glob("*/solver.yaml"))


def missing_data(net_path: Path) -> str | None:
    """Why the net's data is not available here, or None."""
    from layerflow import data as datasets

    net = yaml.safe_load(net_path.read_text())
    for layer in net.get("layers", []):
        if layer.get("type") != "Data":
            continue
        source = str(layer.get("source", ""))
        if source == "spiral":
            continue
        if source == "fashion-mnist":
            split = layer.get("split") or "train"
            prefix = "train" if split == "train" else "t10k"
            dirs = datasets.fashion_mnist_dirs()
            if not any((d / f"{prefix}-images-idx3-ubyte").is_file()
                       or (d / f"{prefix}-images-idx3-ubyte.gz").is_file() for d in dirs):
                return (f"Fashion-MNIST ({split}) is not in {' nor '.join(map(str, dirs))} "
                        f"(apt-get install dataset-fashion-mnist, or set LAYERFLOW_DATA)")
            continue
        path = Path(source).expanduser()
        path = path if path.is_absolute() else net_path.parent / path
        if not path.exists():
            return f"data file {path} of layer {layer.get('name')} is not on this machine"
    return None


def plugin_not_installed(model: Path) -> str | None:
    """A model folder with a pyproject.toml is a plugin package: it must be installed."""
    pyproject = model / "pyproject.toml"
    if not pyproject.is_file():
        return None
    found = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)  # no tomllib: 3.10
    assert found, f"{pyproject} has no project name"
    name = found.group(1)
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return f"plugin {name} is not installed (pip install -e {model})"
    return None


def test_models_are_found():
    assert MODELS / "spiral" / "solver.yaml" in SOLVERS


@pytest.mark.parametrize("solver", SOLVERS, ids=[p.parent.name for p in SOLVERS])
def test_model_trains_a_few_iterations(solver, tmp_path):
    model = solver.parent
    spec = yaml.safe_load(solver.read_text())
    reason = plugin_not_installed(model) or missing_data(model / spec["net"])
    if reason:
        pytest.skip(reason)
    copy = tmp_path / model.name
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("snapshots", "__pycache__"))
    args = ["train", str(copy / solver.name), "--json", "--set", "max_iter=3",
            "--set", "display=1", "--set", "snapshot=0"]
    if spec.get("test_interval"):
        args += ["--set", "test_iter=1", "--set", "test_interval=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
    summary = json.loads(result.stdout)
    assert summary["iterations"] == 3
    assert np.isfinite(summary["loss"])
    if spec.get("test_interval"):
        assert summary["test"] and all(np.isfinite(v) for v in summary["test"].values())
    weights = load_file(str(Path(summary["snapshot"]).with_suffix(".safetensors")))
    net = lf.Net.from_yaml(copy / spec["net"])
    assert weights.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert weights[key].shape == value.shape, key
