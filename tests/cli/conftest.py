"""Fixtures of the command-line tests: an in-process runner and a tiny trainable project.

Tests get them as fixtures (`cli`, `tiny`), never by importing this file.
"""
from __future__ import annotations

import textwrap
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from layerflow.cli.main import app

from yaml_positions import pos

TINY_NET = """\
name: tiny
layers:
  - {name: data, type: Data, top: [data, label], source: data/tiny.npz, batch_size: 6}
  - {name: ip1, type: InnerProduct, num_output: 8}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""

TINY_SOLVER = """\
net: net.yaml
type: SGD
base_lr: 0.1
momentum: 0.9
weight_decay: 0.001
lr_policy: fixed
max_iter: 6
display: 2
test_interval: 3
test_iter: 2
snapshot: 3
snapshot_prefix: out/tiny
random_seed: 7
"""


def tiny_data(labels=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    label = np.arange(12) % 3 if labels is None else np.asarray(labels)
    cls = np.clip(np.round(label), 0, 2).astype(int)  # bad labels get some class's data
    data = rng.normal(size=(12, 2)) + 2 * np.eye(3)[cls][:, :2]
    return {"data": data.astype(np.float32), "label": label.astype(np.float32)}


def make_project(root: Path, net: str = TINY_NET, solver: str = TINY_SOLVER,
                 labels=None) -> SimpleNamespace:
    """Write net.yaml, solver.yaml and data/tiny.npz under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    np.savez(root / "data" / "tiny.npz", **tiny_data(labels))
    (root / "net.yaml").write_text(textwrap.dedent(net))
    (root / "solver.yaml").write_text(textwrap.dedent(solver))
    return SimpleNamespace(root=root, net=root / "net.yaml", solver=root / "solver.yaml",
                           net_text=textwrap.dedent(net), solver_text=textwrap.dedent(solver))


def invoke(*args) -> Result:
    """Run `layerflow ARGS...` in-process; paths may be Path objects."""
    return CliRunner().invoke(app, [str(a) for a in args])


def describe(result) -> str:
    exc = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = "".join(traceback.format_exception(*result.exc_info))
    return (f"exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n"
            f"{result.stderr}\n{exc}")


def assert_user_error(result, *fragments: str) -> str:
    """Exit status 2, one `error: ...` message on stderr containing every fragment, no
    traceback anywhere. Returns the message."""
    assert result.exit_code == 2, describe(result)
    assert isinstance(result.exception, SystemExit), describe(result)
    assert "Traceback" not in result.output, describe(result)
    assert result.stderr.startswith("error: "), describe(result)
    message = result.stderr[len("error: "):].rstrip("\n")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


def assert_ok(result):
    assert result.exit_code == 0, describe(result)
    return result


@pytest.fixture
def cli():
    return SimpleNamespace(invoke=invoke, error=assert_user_error, ok=assert_ok, pos=pos,
                           describe=describe, make_project=make_project, tiny_data=tiny_data,
                           TINY_NET=TINY_NET, TINY_SOLVER=TINY_SOLVER)


@pytest.fixture
def tiny(tmp_path) -> SimpleNamespace:
    return make_project(tmp_path / "tiny")
