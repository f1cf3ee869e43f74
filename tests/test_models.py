"""Every example in models/ loads and trains a few iterations through `layerflow train`.

Models are found by globbing models/*/solver.yaml, so a new model is tested without editing this
file. A model is skipped (with the reason) only when its data is not on this machine. A plugin
package (a folder with a pyproject.toml) that is not installed is imported from its source folder
with --plugin, through the modules its entry points name.
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


def plugin_modules(model: Path) -> list[str]:
    """The modules a plugin package's layerflow entry points name, when it is not installed."""
    pyproject = model / "pyproject.toml"
    if not pyproject.is_file():
        return []
    text = pyproject.read_text()
    found = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M)  # no tomllib on Python 3.10
    assert found, f"{pyproject} has no project name"
    try:
        importlib.metadata.distribution(found.group(1))
        return []  # installed: its entry points load it
    except importlib.metadata.PackageNotFoundError:
        pass
    modules = re.findall(r'^\s*\w+\s*=\s*"([\w.]+):\w+"', text, re.M)
    assert modules, f"{pyproject} declares no entry point"
    return sorted(set(modules))


def test_models_are_found():
    assert MODELS / "spiral" / "solver.yaml" in SOLVERS


@pytest.mark.parametrize("solver", SOLVERS, ids=[p.parent.name for p in SOLVERS])
def test_model_trains_a_few_iterations(solver, tmp_path, monkeypatch):
    model = solver.parent
    spec = yaml.safe_load(solver.read_text())
    reason = missing_data(model / spec["net"])
    if reason:
        pytest.skip(reason)
    copy = tmp_path / model.name
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("snapshots", "__pycache__"))
    plugins = plugin_modules(model)
    if plugins:
        monkeypatch.syspath_prepend(str(copy))
    args = ["train", str(copy / solver.name), "--json", "--set", "max_iter=3",
            "--set", "display=1", "--set", "snapshot=0"]
    for plugin in plugins:
        args += ["--plugin", plugin]
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
    net = lf.Net.from_yaml(copy / spec["net"], plugins=plugins)
    assert weights.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert weights[key].shape == value.shape, key
