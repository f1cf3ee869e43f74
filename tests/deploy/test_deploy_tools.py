"""`layerflow summary --deploy` and `layerflow draw --deploy` show the derived deploy net."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from layerflow.cli.main import app

MLP = Path(__file__).resolve().parents[2] / "models" / "fashion_mnist_mlp" / "net.yaml"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_summary_deploy():
    r = invoke("summary", MLP, "--deploy", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["phase"] == "deploy"
    assert [(x["name"], x["type"]) for x in s["layers"]] == [
        ("data", "Input"), ("data_transform", "Transform"), ("ip1", "InnerProduct"),
        ("relu1", "ReLU"), ("ip2", "InnerProduct"), ("relu2", "ReLU"),
        ("ip3", "InnerProduct"), ("prob", "Softmax")]
    assert s["inputs"] == ["data"] and s["outputs"] == ["prob"]
    assert s["layers"][0]["tops"] == [{"name": "data", "shape": [1, 1, 28, 28]}]
    text = invoke("summary", MLP, "--deploy").stdout
    assert text.splitlines()[0] == "net fashion_mnist_mlp (deploy phase, float32)"


def test_draw_deploy(tmp_path):
    out = tmp_path / "d.dot"
    r = invoke("draw", MLP, "--deploy", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"wrote {out} (dot: 8 layers, 8 blobs)\n"
    dot = out.read_text()
    assert 'label="fashion_mnist_mlp (deploy)"' in dot
    assert "SoftmaxLoss" not in dot and "Accuracy" not in dot and "(Softmax)" in dot
