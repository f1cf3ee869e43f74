"""The loop: metrics records, average_loss smoothing, tests by name, test_initialization,
the resolved configuration, overrides, and the divergence guard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from layerflow import UserError
from layerflow.cli.main import app
from layerflow.config import load_yaml
from layerflow.overrides import Overrides
from layerflow.snapshot import list_snapshots, load_weights
from trainer_helpers import metrics, run, write

TEST_FULL = """
name: spiral_small
layers:
  - {name: data, type: Data, top: [data, label], source: spiral, points_per_class: 50,
     batch_size: 32, shuffle: true, include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: spiral, points_per_class: 50,
     batch_size: 150, include: {phase: test}}
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 16}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""


def test_metrics_records(tmp_path):
    path = write(tmp_path, net=TEST_FULL, max_iter=8, display=2, average_loss=3,
                 test_interval=4, test_iter=2, lr_policy="step", gamma=0.5, stepsize=3)
    trainer, summary = run(path)
    losses = trainer.events.losses
    records = metrics(tmp_path / "snap" / "s")
    train = [r for r in records if r["event"] == "train"]
    test = [r for r in records if r["event"] == "test"]
    assert [r["iter"] for r in train] == [2, 4, 6, 8]
    assert [r["iter"] for r in test] == [0, 4, 8]          # test_initialization, interval
    for r in train:
        it = r["iter"]
        assert r["loss"] == pytest.approx(np.mean(losses[max(0, it - 3):it]), rel=1e-12)
        assert r["lr"] == pytest.approx(0.1 * 0.5 ** (it // 3))  # in force at iteration it
        assert set(r["outputs"]) == {"loss"} and r["outputs"]["loss"] == pytest.approx(
            losses[it - 1], rel=1e-6)
    assert all(set(r["outputs"]) == {"loss", "accuracy"} for r in test)
    elapsed = [r["elapsed_s"] for r in records if r["event"] in ("train", "test")]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    # the test net sees the whole test set in every batch: the mean of 2 batches is one
    # forward of the final weights
    net = trainer.solver.test_nets[0]
    net.run_forward()
    assert test[-1]["outputs"]["accuracy"] == pytest.approx(float(net.blobs["accuracy"].data))
    assert test[-1]["outputs"]["loss"] == pytest.approx(float(net.blobs["loss"].data))
    assert summary["test"] == test[-1]["outputs"]

    path = write(tmp_path / "b", net=TEST_FULL, max_iter=8, test_interval=4,
                 test_initialization=False)
    run(path)
    assert [r["iter"] for r in metrics(tmp_path / "b" / "snap" / "s")
            if r["event"] == "test"] == [4, 8]


def test_overrides_reach_solver_and_net_and_are_saved(tmp_path):
    path = write(tmp_path, max_iter=4, random_seed=-1, test_interval=2, test_iter=1)
    trainer, _ = run(path, overrides=["base_lr=1e-3", "layers.ip1.num_output=7",
                                      "layers.data.batch_size=10", "stepvalue=[1, 2]",
                                      "layers.ip2.weight_filler.std=0.5",
                                      "layers.ip2.weight_filler.type=gaussian"])
    solver = trainer.solver
    assert solver.spec.base_lr == 1e-3 and solver.spec.stepvalue == [1, 2]
    assert solver.net.params["ip1"]["weight"].shape == (7, 2)
    assert solver.net.layer_by_name["data"].p.batch_size == 10
    assert solver.test_nets[0].layer_by_name["data"].p.batch_size == 10  # every "data"
    saved = yaml.safe_load((tmp_path / "snap" / "s_solver.yaml").read_text())
    assert saved["base_lr"] == 1e-3 and saved["random_seed"] == solver.seed >= 0
    assert saved["net"] == "s_net.yaml"
    net = yaml.safe_load((tmp_path / "snap" / "s_net.yaml").read_text())
    ip1 = [l for l in net["layers"] if l["name"] == "ip1"][0]
    assert ip1["num_output"] == 7
    ip2 = [l for l in net["layers"] if l["name"] == "ip2"][0]
    assert ip2["weight_filler"] == {"std": 0.5, "type": "gaussian"}


def test_set_targets_one_phase_and_says_when_a_name_matches_several_layers(tmp_path):
    from layerflow.trainer import train
    from trainer_helpers import Recorder

    trainer, _ = run(write(tmp_path / "a", max_iter=1), overrides=[
        "layers.data@test.batch_size=10", "layers.data@train.batch_size=9"])
    assert trainer.solver.net.blobs["data"].shape == (9, 2)
    net = yaml.safe_load((tmp_path / "a" / "snap" / "s_net.yaml").read_text())
    assert [l["batch_size"] for l in net["layers"] if l["name"] == "data"] == [9, 10]

    events = Recorder()
    summary = train(write(tmp_path / "b", max_iter=1, test_interval=1),
                    overrides=["layers.data.batch_size=10"], events=events)
    assert summary["iterations"] == 1
    assert events.warnings == [
        "--set layers.data.batch_size=10: 2 layers are named data; it sets each: layers[0] "
        "(train phase) and layers[1] (test phase); to set one, name its phase: --set "
        "layers.data@train.batch_size=... or layers.data@test.batch_size=..."]
    assert events.solver.net.blobs["data"].shape == (10, 2)
    assert events.solver.test_nets[0].blobs["data"].shape == (10, 2)
    events = Recorder()
    train(write(tmp_path / "c", max_iter=1), overrides=["layers.ip1.num_output=4"],
          events=events)
    assert events.warnings == []  # one layer of that name: nothing to say


@pytest.mark.parametrize("arg,expected", [
    ("layers.data@val.batch_size=1", r"--set layers.data@val.batch_size=1: after data@ comes a "
                                     r"phase, train or test, then the key"),
    ("layers.accuracy@train.top_k=2", r'--set layers.accuracy@train.top_k=2: the net .* has no '
                                      r'layer "accuracy" in the train phase'),
])
def test_bad_phase_in_set(tmp_path, arg, expected):
    with pytest.raises(UserError, match=expected):
        run(write(tmp_path), overrides=[arg])


@pytest.mark.parametrize("arg,expected", [
    ("bse_lr=1", r'--set bse_lr=1: bse_lr: unknown solver key \(did you mean "base_lr"\?\)'),
    ("base_lr=-1", r"--set base_lr=-1: base_lr: .*greater than 0"),
    ("base_lr=[", r"--set base_lr=\[: the value is not valid YAML"),
    ("base_lr", r"--set base_lr: expected KEY=VALUE"),
    ("layers.ip9.num_output=3", r'--set layers.ip9.num_output=3: .*no layer "ip9"'),
    ("layers.ip1.num_outpt=3", r"--set layers.ip1.num_outpt=3: layers\[2\] \(ip1\): "
                               r"num_outpt: unknown key"),
    ("layers.ip1.num_output=zero", r"--set layers.ip1.num_output=zero: .*num_output"),
    ("layers.ip1=3", r"--set layers.ip1=3: give a key of layer ip1"),
    ("base.lr=3", r"--set base.lr=3: solver keys have no dots"),
    ("lr_policy=poly", r"lr_policy poly needs `power`"),
])
def test_bad_override_names_the_argument(tmp_path, arg, expected):
    with pytest.raises(UserError, match=expected):
        run(write(tmp_path), overrides=[arg])


def test_override_values_are_yaml():
    o = Overrides(["a=1e-3", "b=true", "c=[1, 2]", "d=text", "e=null", "f={x: 1}", "g=1"])
    assert [x.value for x in o.items] == [1e-3, True, [1, 2], "text", None, {"x": 1}, 1]


def test_cli_set_and_help(tmp_path):
    path = write(tmp_path, max_iter=2)
    result = CliRunner().invoke(app, ["train", str(path), "--json", "--set", "max_iter=3",
                                      "--set", "layers.ip1.num_output=5"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["iterations"] == 3
    weights = load_weights(list_snapshots(tmp_path / "snap" / "s")[0][1].with_suffix(
        ".safetensors"))
    assert weights["ip1.weight"].shape == (5, 2)
    help_text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    assert "--set KEY=VALUE" in help_text and "layers.NAME.KEY" in help_text
    bad = CliRunner().invoke(app, ["train", str(path), "--set", "bse_lr=1"])
    assert bad.exit_code == 2 and "--set bse_lr=1" in bad.output


def test_divergence_stops_names_layer_and_keeps_last_good_snapshot(tmp_path):
    path = write(tmp_path, max_iter=200, snapshot=2, base_lr=1000.0, weight_decay=0.1,
                 display=1)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 3, result.output
    msg = result.output
    assert "diverged at iteration" in msg and "base_lr" in msg and "clip_gradients" in msg
    assert "first layer whose output is not finite is ip" in msg or "param ip" in msg
    prefix = tmp_path / "snap" / "s"
    found = list_snapshots(prefix)
    assert found, "the snapshots before the divergence are kept"
    assert f"last good snapshot is {found[0][1]}" in msg
    for _, state in found:
        for key, value in load_weights(state.with_suffix(".safetensors")).items():
            assert np.isfinite(value).all(), f"{state}: {key} is not finite"
    assert metrics(prefix)[-1]["event"] == "diverged"
    diverged_at = int(msg.split("diverged at iteration ")[1].split(":")[0])
    assert found[0][0] <= diverged_at < 200


def test_divergence_names_the_first_nonfinite_layer(tmp_path):
    """A loss that turns NaN names the layer where the NaN first shows, not the loss."""
    from layerflow.errors import DivergenceError
    from layerflow.solver import Solver

    solver = Solver.from_yaml(write(tmp_path))
    solver.net.params["ip2"]["bias"].data[1] = np.nan
    with pytest.raises(DivergenceError) as err:
        solver.iteration()
    msg = str(err.value)
    # the loss comes out NaN, or the loss kernel trips over the NaN (ZeroDivisionError)
    assert msg.startswith("training diverged at iteration 0: ")
    assert 'is ip2 (top "ip2")' in msg and "ip2.bias" in msg
