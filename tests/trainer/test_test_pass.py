"""A test is exactly one pass over the test data, from its first sample: every test event
during training and every default `layerflow test`, with a smaller last batch when the batch
size does not divide the data; an explicit test_iter keeps Caffe's meaning (that many batches)
and is reported once when it does not read the test data exactly once."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import layerflow as lf
from layerflow import UserError
from layerflow.cli.main import app
from layerflow.trainer import coverage_warning, evaluate, evaluate_pass
from trainer_helpers import metrics, run

N = 67  # test samples; batch 10: six full batches and one of 7

NET = """
name: linear
layers:
  - {name: data, type: Data, top: [data, label], source: train.npz, batch_size: 8,
     shuffle: true, include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: test.npz, batch_size: 10,
     SHUFFLE include: {phase: test}}
  - {name: ip, type: InnerProduct, bottom: data, num_output: 3,
     weight_filler: {type: gaussian, std: 1.0}, bias_filler: {type: gaussian, std: 1.0}}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip, label], include: {phase: test}}
"""


def project(tmp_path, shuffle=False, **solver):
    rng = np.random.default_rng(3)
    for name, n in (("train", 40), ("test", N)):
        label = rng.integers(0, 3, n)
        data = rng.normal(size=(n, 4)) + label[:, None]
        np.savez(tmp_path / f"{name}.npz", data=data.astype(np.float32), label=label)
    (tmp_path / "net.yaml").write_text(textwrap.dedent(NET).replace(
        "SHUFFLE ", "shuffle: true, " if shuffle else ""))
    keys = {"net": "net.yaml", "base_lr": 0.1, "max_iter": 4, "test_interval": 2,
            "snapshot_prefix": "snap/s", "random_seed": 1, **solver}
    (tmp_path / "solver.yaml").write_text("\n".join(f"{k}: {v}" for k, v in keys.items()))
    return tmp_path / "solver.yaml"


def reference(net, folder) -> dict[str, float]:
    """Loss and accuracy over the 67 test samples, each once, computed here in float64.

    (The net's per-batch accuracy is a float32, so means agree to ~1e-7; one sample more
    or less would move the accuracy by 1/67.)"""
    d = np.load(folder / "test.npz")
    x, y = d["data"].astype(np.float64), d["label"]
    w = net.params["ip"]["weight"].data.astype(np.float64)
    b = net.params["ip"]["bias"].data.astype(np.float64)
    scores = x @ w.T + b
    shifted = scores - scores.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert len(y) == N
    return {"loss": float(-logp[np.arange(N), y].mean()),
            "accuracy": float((scores.argmax(axis=1) == y).mean())}


@pytest.mark.parametrize("shuffle", [False, True])
def test_default_test_is_one_exact_pass_with_a_partial_last_batch(tmp_path, shuffle):
    solver = lf.Solver.from_yaml(project(tmp_path, shuffle=shuffle))
    net = solver.test_nets[0]
    assert net.epoch() == (N, 10)
    want = reference(net, tmp_path)
    result = evaluate_pass(net)
    assert result["batches"] == 7 and result["samples"] == N
    assert result["outputs"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    assert result["outputs"]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    # the net is back at its declared batch, and a second pass gives the same numbers
    assert net.blobs["data"].shape == (10, 4) and net.blobs["ip"].shape == (10, 3)
    again = evaluate(net)
    assert again == result["outputs"]
    # a pass that starts mid-data (the cursor moved by a forward) still starts at sample 0
    net.run_forward()
    assert evaluate(net) == result["outputs"]


def test_test_events_with_frozen_weights_agree_and_match_the_reference(tmp_path):
    trainer, _ = run(project(tmp_path, max_iter=6, test_interval=2, base_lr=1e-30))
    tests = [r for r in metrics(tmp_path / "snap" / "s") if r["event"] == "test"]
    assert [r["iter"] for r in tests] == [0, 2, 4, 6]
    want = reference(trainer.solver.test_nets[0], tmp_path)
    for r in tests:  # base_lr 1e-30: the weights do not move, so every test is the same
        assert r["outputs"] == tests[0]["outputs"]
        assert r["outputs"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
        assert r["outputs"]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert not trainer.events.warnings


def test_explicit_test_iter_keeps_caffe_meaning_and_warns_once(tmp_path):
    trainer, _ = run(project(tmp_path, max_iter=4, test_interval=2, test_iter=7,
                             base_lr=1e-30))
    expected = ("test_iter 7 x batch_size 10 = 70 samples per test, but the test data of net "
                "linear has 67: 3 are counted twice; leave test_iter out for exactly one pass "
                "over the test data")
    assert trainer.events.warnings == [expected]  # three tests, one warning
    records = metrics(tmp_path / "snap" / "s")
    assert [r["message"] for r in records if r["event"] == "warning"] == [expected]
    # 7 batches of 10 from the first sample: samples 0..66, then 0, 1, 2 again
    net = trainer.solver.test_nets[0]
    d = np.load(tmp_path / "test.npz")
    index = np.r_[np.arange(N), 0, 1, 2]
    w, b = (net.params["ip"][k].data.astype(np.float64) for k in ("weight", "bias"))
    scores = d["data"].astype(np.float64)[index] @ w.T + b
    acc = (scores.argmax(axis=1) == d["label"][index]).mean()
    tests = [r for r in records if r["event"] == "test"]
    assert len(tests) == 3
    for r in tests:
        assert r["outputs"]["accuracy"] == pytest.approx(acc, abs=1e-6)


@pytest.mark.parametrize("iterations,effect", [
    (6, "7 of them are never tested"), (7, "3 are counted twice"),
    (20, "every one is counted more than once"), (None, None)])
def test_coverage_warning(tmp_path, iterations, effect):
    net = lf.Solver.from_yaml(project(tmp_path)).test_nets[0]
    message = coverage_warning(net, iterations)
    assert (message is None) == (effect is None)
    if effect:
        assert effect in message and f"test_iter {iterations} x batch_size 10" in message
    exact = lf.Net.from_string(NET.replace("batch_size: 10", "batch_size: 67").replace(
        "SHUFFLE ", ""), "test", file=str(tmp_path / "net.yaml"))
    assert coverage_warning(exact, 1) is None


def test_layerflow_test_is_one_pass_and_warns_for_inexact_iterations(tmp_path):
    trainer, summary = run(project(tmp_path))
    weights = tmp_path / "snap" / "s_iter_4.safetensors"
    want = reference(trainer.solver.test_nets[0], tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["test", str(tmp_path / "net.yaml"), "--weights", str(weights),
                            "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["iterations"] == 7 and report["samples"] == N and "warning" not in report
    assert report["outputs"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    assert report["outputs"]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    r = runner.invoke(app, ["test", str(tmp_path / "net.yaml"), "--weights", str(weights)])
    assert r.exit_code == 0 and "(7 batches, 67 samples, " in r.stdout and not r.stderr
    r = runner.invoke(app, ["test", str(tmp_path / "net.yaml"), "--weights", str(weights),
                            "--iterations", "6"])
    assert r.exit_code == 0 and "(6 batches, " in r.stdout
    assert r.stderr.startswith("warning: --iterations 6 x batch_size 10 = 60 samples per "
                               "test") and "7 of them are never tested" in r.stderr


def test_data_layers_of_different_sizes_have_no_single_pass(tmp_path):
    project(tmp_path)
    np.savez(tmp_path / "more.npz", extra=np.zeros((N + 1, 2), np.float32))
    net = lf.Net.from_string(NET.replace("SHUFFLE ", "") + """
  - {name: extra, type: Data, top: [extra], source: more.npz, batch_size: 10,
     include: {phase: test}}
""", "test", file=str(tmp_path / "net.yaml"))
    with pytest.raises(UserError, match=r"data layers data \(67 samples\) and extra \(68 "
                                        r"samples\) differ in size"):
        evaluate(net)
    assert evaluate(net, 2)  # a given number of batches is still defined


def test_data_layers_of_different_batch_sizes_are_an_error(tmp_path):
    project(tmp_path)
    np.savez(tmp_path / "same.npz", extra=np.zeros((N, 2), np.float32))
    net = lf.Net.from_string(NET.replace("SHUFFLE ", "") + """
  - {name: extra, type: Data, top: [extra], source: same.npz, batch_size: 5,
     include: {phase: test}}
""", "test", file=str(tmp_path / "net.yaml"))
    message = r"data layers data \(batch_size 10\) and extra \(batch_size 5\) must read " \
              r"batches of one size"
    for ask in (net.epoch, net.batch_size):
        with pytest.raises(UserError, match=message):
            ask()


def test_a_rejected_batch_size_leaves_the_net_as_it_was(tmp_path):
    project(tmp_path)
    net = lf.Net.from_string("""
name: fixed
layers:
  - {name: data, type: Data, top: [data, label], source: test.npz, batch_size: 10}
  - {name: other, type: Input, shape: [10, 3]}
  - {name: ip, type: InnerProduct, bottom: data, num_output: 3}
  - {name: sum, type: Eltwise, bottom: [ip, other]}
  - {name: loss, type: SoftmaxLoss, bottom: [sum, label]}
""", "test", file=str(tmp_path / "net.yaml"))
    before = {k: b.shape for k, b in net.blobs.items()}
    with pytest.raises(UserError, match=r"layers\[3\] \(sum\)"):
        net.set_batch_size(7)  # the Eltwise needs the batch of the fixed Input
    assert {k: b.shape for k, b in net.blobs.items()} == before
    assert net.layer_by_name["data"].global_batch == 10
    net.run_forward()
    assert net.blobs["data"].data.shape == (10, 4)
