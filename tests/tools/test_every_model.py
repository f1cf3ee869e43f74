"""Every tool on every model in models/ (globbed, so a new model is covered when it lands).

Models whose layers come from the example plugin (models/plugin_example) see it installed with
pip, as a user would have it. Outputs are checked for consistency with the built net; exact
hand-computed values are in test_summary.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

import layerflow as lf

from plugin_support import model_nets, model_solvers, use_site, validate

NETS = model_nets()
SOLVERS = model_solvers()
PNG = b"\x89PNG\r\n\x1a\n"


def ids(paths):
    return [f"{p.parent.name}/{p.name}" for p in paths]


@pytest.fixture(autouse=True)
def example_plugin_installed(swish_site):
    use_site(swish_site)


def test_models_are_found():
    assert {p.parent.name for p in NETS} >= {"spiral", "plugin_example"}
    assert {p.parent for p in SOLVERS} == {p.parent for p in NETS}


@pytest.mark.parametrize("net", NETS, ids=ids(NETS))
def test_summary(net, cli):
    r = cli("summary", net, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    built = lf.Net.from_yaml(net, "train")
    assert [x["name"] for x in s["layers"]] == [layer.name for layer in built.layers]
    built.run_forward()
    for row, (layer, _, tops) in zip(s["layers"], built.wiring()):
        assert row["tops"] == [{"name": t.name, "shape": list(np.shape(t.data))} for t in tops]
        assert row["params"] <= sum(int(p.data.size) for p in layer.params.values())
    assert s["total"]["params"] == sum(p.data.size for p in built.learnable_params())
    assert s["total"]["flops"] == sum(x["flops"] for x in s["layers"]) > 0
    assert s["total"]["activation_bytes"] > 0
    assert cli("summary", net, "--phase", "test").code == 0


@pytest.mark.parametrize("net", NETS, ids=ids(NETS))
def test_gradcheck(net, cli):
    r = cli("gradcheck", net, "--max-checks", "15", "--json")
    assert r.code == 0, r.out
    result = json.loads(r.out)
    assert result["ok"] and all(x["ok"] for x in result["layers"])
    entries = [e for x in result["layers"] for e in x["entries"]]
    assert entries and all(e["error"] <= 1e-6 for e in entries)
    assert sum(e["checked"] for e in entries) >= 15 * len(entries) // 2


@pytest.mark.parametrize("net", NETS, ids=ids(NETS))
def test_time(net, cli):
    r = cli("time", net, "--iterations", "2", "--json")
    assert r.code == 0, r.err
    t = json.loads(r.out)
    built = lf.Net.from_yaml(net, "train")
    assert [x["name"] for x in t["layers"]] == [layer.name for layer in built.layers]
    assert all(x["forward_calls"] == 2 for x in t["layers"])
    assert any(x["backward_calls"] == 2 for x in t["layers"])
    assert t["average_forward_backward_ms"] > 0
    assert sum(x["forward_s"] for x in t["layers"]) <= t["total_s"] + 1e-6
    assert "average forward pass" in cli("time", net, "--iterations", "1").out


@pytest.mark.parametrize("net", NETS, ids=ids(NETS))
def test_draw(net, cli, tmp_path):
    built = lf.Net.from_yaml(net, "train")
    r = cli("draw", net, "-o", tmp_path / "g.dot")
    assert r.code == 0, r.err
    dot = (tmp_path / "g.dot").read_text()
    for layer in built.layers:
        assert f'label="{layer.name}\\n({layer.type})' in dot
    check_dot_structure(dot, len(built.layers))
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert proc.returncode == 0 and "<svg" in proc.stdout, proc.stderr
        assert cli("draw", net, "-o", tmp_path / "g.png").code == 0
        assert (tmp_path / "g.png").read_bytes().startswith(PNG)
    r = cli("draw", net, "-o", tmp_path / "g.mmd")
    mermaid = (tmp_path / "g.mmd").read_text()
    assert mermaid.startswith("flowchart TB\n")
    assert mermaid.count('"]\n') >= len(built.layers) and "-->" in mermaid


def check_dot_structure(dot: str, n_layers: int) -> None:
    """Balanced braces and quotes, one statement per line, edges between declared nodes."""
    lines = dot.strip().splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith("{") and lines[-1] == "}"
    declared, edges = set(), []
    for line in lines[1:-1]:
        line = line.strip()
        assert line.endswith(";"), line
        assert (line.count('"') - line.count('\\"')) % 2 == 0, line
        if " -> " in line:
            a, b = line[:-1].split(" -> ")
            edges.append((a, b))
        elif not line.startswith(("graph ", "node ", "edge ")):
            declared.add(line.split(" ", 1)[0])
    assert sum(1 for d in declared if d.startswith("l")) == n_layers
    assert edges and all(a in declared and b in declared for a, b in edges)


@pytest.mark.parametrize("net", NETS, ids=ids(NETS))
def test_layers_describes_every_type_used(net, cli):
    types = {x["type"] for x in yaml.safe_load(net.read_text())["layers"]}
    listed = cli("layers", "--json")
    names = {t["type"] for t in json.loads(listed.out)["types"]}
    assert types <= names
    for t in types:
        r = cli("layers", t, "--json")
        assert r.code == 0, r.err
        d = json.loads(r.out)
        assert d["type"] == t and d["origin"] and isinstance(d["params"], list)


@pytest.mark.parametrize("path", NETS + SOLVERS, ids=ids(NETS + SOLVERS))
def test_schema_validates_the_model_file(path, cli):
    data = yaml.safe_load(path.read_text())
    kind = "net" if "layers" in data else "solver"
    r = cli("schema", kind)
    assert r.code == 0, r.err
    assert validate(data, json.loads(r.out)) == [], path


@pytest.mark.parametrize("solver", SOLVERS, ids=ids(SOLVERS))
def test_train_briefly_then_plot(solver, cli, tmp_path):
    r = cli("train", solver, "--json", "--profile", "--set", "max_iter=6", "--set", "display=2",
            "--set", "test_interval=3", "--set", "test_iter=1", "--set", "snapshot=0",
            "--set", f"snapshot_prefix={tmp_path}/run")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["iterations"] == 6
    profile = summary["profile"]
    net = lf.Solver.from_yaml(solver).net
    assert profile["iterations"] == 6
    assert [x["name"] for x in profile["layers"]] == [layer.name for layer in net.layers]
    assert all(x["forward_calls"] == 6 for x in profile["layers"])
    metrics = tmp_path / "run_metrics.jsonl"
    r = cli("plot", metrics, "-o", tmp_path / "m.png")
    assert r.code == 0, r.err
    assert (tmp_path / "m.png").read_bytes().startswith(PNG)
    lrs = {json.loads(line)["lr"] for line in metrics.read_text().splitlines()
           if '"train"' in line}
    lr = f"lr: {lrs.pop():g} throughout" if len(lrs) == 1 else "lr: 3 points"
    assert "loss: 3 points" in r.out and lr in r.out
