"""Solver .prototxt -> solver YAML plus its net(s); Caffe's path rules (working directory first,
the solver's folder second); legacy solver_type; training a .prototxt directly; every tool
accepting a .prototxt; --stage/--level."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from layerflow.config import load_yaml
from layerflow.errors import UserError

NET = """
name: "TinyNet"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        data_param { source: "data/train_lmdb" batch_size: 8 backend: LMDB }
        transform_param { scale: 0.00390625 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        data_param { source: "data/test_lmdb" batch_size: 8 backend: LMDB }
        transform_param { scale: 0.00390625 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        inner_product_param { num_output: 8 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SOLVER = """
net: "{net}"
test_iter: 2
test_interval: 20
base_lr: 0.1
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 10
max_iter: 40
snapshot: 40
snapshot_prefix: "snapshots/tiny"
solver_mode: CPU
random_seed: 3
"""


def images(n, seed):
    """Two classes of 1 x 2 x 2 uint8 images: bright top row or bright bottom row."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.integers(0, 60, size=(n, 1, 2, 2))
    x[labels == 0, :, 0, :] += 180
    x[labels == 1, :, 1, :] += 180
    return x.astype(np.uint8), labels


@pytest.fixture
def project(tmp_path, write, lmdb_db):
    """A Caffe project as a user has it: run from `root`, paths relative to it."""
    root = tmp_path / "proj"
    lmdb_db(root / "data" / "train_lmdb", *images(64, 0))
    lmdb_db(root / "data" / "test_lmdb", *images(16, 1))
    write(root, "models/tiny/net.prototxt", NET)
    write(root, "models/tiny/solver.prototxt", SOLVER.format(net="models/tiny/net.prototxt"))
    return root


def test_convert_solver_writes_net_beside_it_with_paths_relative(cli, project, tmp_path):
    out = tmp_path / "converted"
    res = cli.ok(cli.invoke("convert", "models/tiny/solver.prototxt", "-o", out / "solver.yaml",
                            cwd=project))
    assert "solver_mode: ignored" in res.stderr
    solver = yaml.safe_load((out / "solver.yaml").read_text())
    assert solver["net"] == "net.yaml"
    assert solver["snapshot_prefix"] == "../proj/snapshots/tiny"
    assert (solver["type"], solver["lr_policy"], solver["max_iter"], solver["test_iter"]) == \
        ("SGD", "inv", 40, 2)
    assert solver["base_lr"] == 0.1 and solver["gamma"] == 0.0001
    net = yaml.safe_load((out / "net.yaml").read_text())
    assert net["layers"][0]["source"] == "../proj/data/train_lmdb"
    # the converted files work from anywhere
    res = cli.ok(cli.invoke("train", out / "solver.yaml", "--json", cwd=tmp_path))
    summary = json.loads(res.stdout)
    assert summary["iterations"] == 40 and summary["test"]["accuracy"] >= 0.9, summary


def test_net_found_in_the_solvers_folder_second(cli, project, tmp_path, write):
    write(project, "models/tiny/solver2.prototxt", SOLVER.format(net="net.prototxt"))
    out = tmp_path / "c2"
    cli.ok(cli.invoke("convert", "models/tiny/solver2.prototxt", "-o", out / "s.yaml",
                      cwd=project))
    assert yaml.safe_load((out / "s.yaml").read_text())["net"] == "net.yaml"


def test_missing_net_names_the_paths_tried(cli, project, write):
    write(project, "models/tiny/bad.prototxt", SOLVER.format(net="nowhere/net.prototxt"))
    err = cli.error(cli.invoke("convert", "models/tiny/bad.prototxt", "-o", "x.yaml",
                               cwd=project))
    assert "models/tiny/bad.prototxt:1:1: net: net file not found: tried " \
           f"{project / 'nowhere/net.prototxt'} and {project / 'models/tiny/nowhere/net.prototxt'}" \
           in err, err


def test_train_a_solver_prototxt_directly(cli, project):
    res = cli.ok(cli.invoke("train", "models/tiny/solver.prototxt", "--json", cwd=project))
    summary = json.loads(res.stdout)
    assert summary["test"]["accuracy"] >= 0.9, summary
    snap = project / "snapshots" / "tiny_iter_40.safetensors"
    assert snap.is_file()
    # and test the net prototxt with those weights, from the same working directory
    res = cli.ok(cli.invoke("test", "models/tiny/net.prototxt", "--weights", snap,
                            "--iterations", "2", "--json", cwd=project))
    assert json.loads(res.stdout)["outputs"]["accuracy"] >= 0.9


def test_errors_of_a_direct_run_point_at_the_prototxt(cli, project, write):
    write(project, "models/tiny/net.prototxt",
          NET.replace("num_output: 2 weight_filler", "num_output: 0 weight_filler"))
    err = cli.error(cli.invoke("train", "models/tiny/solver.prototxt", cwd=project))
    assert "models/tiny/net.prototxt:13:31: layers[4] (ip2): num_output" in err, err


def test_inline_net_param_and_legacy_solver_type(cli, project, tmp_path, write):
    net_text = (project / "models/tiny/net.prototxt").read_text()
    write(project, "inline.prototxt", "net_param {\n" + net_text + "\n}\n" + SOLVER.replace(
        'net: "{net}"', "solver_type: NESTEROV"))
    out = tmp_path / "c3"
    cli.ok(cli.invoke("convert", "inline.prototxt", "-o", out / "inline.yaml", cwd=project))
    solver = yaml.safe_load((out / "inline.yaml").read_text())
    assert solver["type"] == "Nesterov" and solver["net"] == "inline_net.yaml"
    assert [l["name"] for l in yaml.safe_load((out / "inline_net.yaml").read_text())["layers"]][:2] \
        == ["data", "data"]
    res = cli.ok(cli.invoke("train", "inline.prototxt", "--json", cwd=project))
    assert json.loads(res.stdout)["iterations"] == 40


def test_solver_type_and_type_together_is_an_error(project, write):
    path = write(project, "both.prototxt", SOLVER.format(net="models/tiny/net.prototxt")
                 + 'type: "Adam"\nsolver_type: ADAM\n')
    with pytest.raises(UserError, match=r"both.prototxt:\d+:1: give `type` or the legacy "
                                        r"`solver_type`, not both"):
        load_yaml(path)


def test_train_net_and_test_net_merge_by_phase(cli, project, tmp_path, write):
    train = NET.replace("include { phase: TEST }", "include { phase: TEST } include { phase: TRAIN stage: 'never' }")
    write(project, "train.prototxt", train)
    test = NET.replace('top: "ip2"\n', 'top: "ip2"\n').replace("num_output: 8", "num_output: 8")
    write(project, "test.prototxt", test)
    write(project, "split.prototxt", SOLVER.replace('net: "{net}"',
                                                    'train_net: "train.prototxt"\n'
                                                    'test_net: "test.prototxt"'))
    out = tmp_path / "c4"
    cli.ok(cli.invoke("convert", "split.prototxt", "-o", out / "split.yaml", cwd=project))
    net = yaml.safe_load((out / "split_net.yaml").read_text())
    by_phase = [(l["name"], l.get("include"), l.get("exclude")) for l in net["layers"]]
    assert by_phase[0] == ("data", [{"phase": "train"}], None)  # train_net's TRAIN data
    assert ("accuracy", [{"phase": "train", "stage": ["never"]}], None) in by_phase
    assert by_phase[-1] == ("loss", [{"phase": "test"}], None)
    res = cli.ok(cli.invoke("train", "split.prototxt", "--json", cwd=project))
    assert json.loads(res.stdout)["test"]["accuracy"] >= 0.9


def test_snapshot_prefix_default_is_the_solver_path(cli, project, tmp_path, write):
    write(project, "models/tiny/noprefix.prototxt",
          SOLVER.format(net="models/tiny/net.prototxt").replace('snapshot_prefix: "snapshots/tiny"\n', ""))
    out = tmp_path / "c5"
    cli.ok(cli.invoke("convert", "models/tiny/noprefix.prototxt", "-o", out / "s.yaml",
                      cwd=project))
    assert yaml.safe_load((out / "s.yaml").read_text())["snapshot_prefix"] == \
        "../proj/models/tiny/noprefix"


def test_stage_and_level_on_train_and_test(cli, project, write):
    net = NET.replace('layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }',
                      'layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" '
                      'include { stage: "relu" min_level: 1 } }')
    write(project, "models/tiny/net.prototxt", net)
    res = cli.ok(cli.invoke("train", "models/tiny/solver.prototxt", "--stage", "relu",
                            "--level", "1", "--json", cwd=project))
    saved = yaml.safe_load((project / "snapshots" / "tiny_net.yaml").read_text())
    assert any(l["name"] == "relu1" for l in saved["layers"])
    snap = project / "snapshots" / "tiny_iter_40.safetensors"
    from layerflow.builder import build_net

    import os

    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert "relu1" in build_net("models/tiny/net.prototxt", "train", stage=["relu"],
                                    level=1).layer_by_name
        assert "relu1" not in build_net("models/tiny/net.prototxt", "train", stage=["relu"],
                                        level=0).layer_by_name
    finally:
        os.chdir(cwd)
    res = cli.ok(cli.invoke("test", "models/tiny/net.prototxt", "--weights", snap, "--stage",
                            "relu", "--level", "1", "--iterations", "2", "--json", cwd=project))
    assert json.loads(res.stdout)["outputs"]["accuracy"] >= 0.9


def test_train_and_test_state_carried_over(cli, project, tmp_path, write):
    write(project, "st.prototxt", SOLVER.format(net="models/tiny/net.prototxt")
          + 'train_state { level: 2 stage: "a" }\ntest_state { stage: "b" }\n')
    out = tmp_path / "c6"
    cli.ok(cli.invoke("convert", "st.prototxt", "-o", out / "st.yaml", cwd=project))
    solver = yaml.safe_load((out / "st.yaml").read_text())
    assert solver["train_state"] == {"level": 2, "stage": ["a"]}
    assert solver["test_state"] == {"stage": ["b"]}


@pytest.mark.parametrize("tool", [
    ["summary", "--json"], ["time", "--iterations", "2", "--json"],
    ["gradcheck", "--max-checks", "5", "--json"], ["draw", "-o", "net.dot"]])
def test_tools_accept_a_net_prototxt(cli, project, tool):
    res = cli.ok(cli.invoke(tool[0], "models/tiny/net.prototxt", *tool[1:], cwd=project))
    if tool[0] == "draw":
        assert "ip2" in (project / "net.dot").read_text()
    elif tool[0] == "summary":
        assert [l["name"] for l in json.loads(res.stdout)["layers"]][-1] == "loss"


def test_solver_yaml_exports_to_a_solver_prototxt(cli, project, tmp_path):
    out = tmp_path / "c7"
    cli.ok(cli.invoke("convert", "models/tiny/solver.prototxt", "-o", out / "solver.yaml",
                      cwd=project))
    cli.ok(cli.invoke("convert", out / "solver.yaml", "-o", out / "back" / "solver.prototxt"))
    text = (out / "back" / "solver.prototxt").read_text()
    assert 'net: "../net.yaml"' in text and 'lr_policy: "inv"' in text
    assert "solver_mode: CPU" in text


def test_train_from_caffemodel_weights_list(cli, project):
    """Fine-tuning: a caffemodel (with a layer the net lacks) then a safetensors override."""
    cli.ok(cli.invoke("train", "models/tiny/solver.prototxt", "--json", cwd=project))
    snap = project / "snapshots" / "tiny_iter_40.safetensors"
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(snap))
    weights["old_head.weight"] = np.ones((2, 2), np.float32)
    save_file(weights, str(project / "w.safetensors"))
    from layerflow.caffe.weights import array_to_blob
    from layerflow.caffe.proto import messages

    net = messages().NetParameter()
    for lname in ("ip1", "ip2", "old_head"):
        lp = net.layer.add()
        lp.name, lp.type = lname, "InnerProduct"
        for pname in ("weight", "bias"):
            if f"{lname}.{pname}" in weights:
                array_to_blob(weights[f"{lname}.{pname}"], lp.blobs.add())
    (project / "pre.caffemodel").write_bytes(net.SerializeToString())
    save_file({"ip2.bias": np.array([0.0, 0.0], np.float32)}, str(project / "head.safetensors"))
    res = cli.ok(cli.invoke("train", "models/tiny/solver.prototxt", "--weights",
                            "pre.caffemodel,head.safetensors", "--set", "max_iter=1",
                            "--set", "test_interval=1", "--json", "--start-over", cwd=project))
    assert "pre.caffemodel: ignoring source layer old_head" in res.stderr
    assert json.loads(res.stdout)["test"]["accuracy"] >= 0.9  # the pretrained weights
