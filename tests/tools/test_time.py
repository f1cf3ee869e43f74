"""`layerflow time` and the LayerTimer hook behind it and `train --profile`."""
from __future__ import annotations

import json

import numpy as np
import pytest

import layerflow as lf
from layerflow.profile import LayerTimer

NET = """\
name: timed
layers:
  - {name: x, type: Input, top: [x, label], shape: [[8, 5], [8]]}
  - {name: ip, type: InnerProduct, bottom: x, num_output: 3}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
"""


def test_time_reports_every_layer_per_iteration(tmp_path, cli):
    (tmp_path / "net.yaml").write_text(NET)
    r = cli("time", tmp_path / "net.yaml", "--iterations", "3", "--json")
    assert r.code == 0, r.err
    t = json.loads(r.out)
    assert t["iterations"] == 3 and [x["name"] for x in t["layers"]] == ["x", "ip", "loss"]
    rows = {x["name"]: x for x in t["layers"]}
    assert rows["ip"]["forward_calls"] == 3 and rows["ip"]["backward_calls"] == 3
    assert rows["x"]["backward_calls"] == 0  # an Input needs no backward
    for row in t["layers"]:
        assert row["forward_ms_per_iter"] == pytest.approx(1e3 * row["forward_s"] / 3,
                                                           abs=1e-3)
    assert t["average_forward_backward_ms"] >= t["average_forward_ms"] > 0
    text = cli("time", tmp_path / "net.yaml", "--iterations", "2").out
    assert "over 2 iterations (ms per iteration)" in text and "average backward pass" in text
    r = cli("time", tmp_path / "net.yaml", "--iterations", "0")
    assert r.code == 2


def test_timer_hook_attaches_and_detaches():
    net = lf.Net.from_string(NET)
    x = np.random.default_rng(0).standard_normal((8, 5))
    label = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    plain = net.forward({"x": x, "label": label})["loss"]
    prof = net.add_hook(LayerTimer(net))
    assert net.forward({"x": x, "label": label})["loss"] == plain  # timing changes nothing
    net.backward()
    report = prof.report(iterations=1)
    assert {r["name"]: r["forward_calls"] for r in report["layers"]} == \
        {"x": 1, "ip": 1, "loss": 1}
    assert {r["name"]: r["backward_calls"] for r in report["layers"]} == \
        {"x": 0, "ip": 1, "loss": 1}
    assert report["forward_s"] > 0 and report["backward_s"] > 0
    net.remove_hook(prof)
    # no layer method was replaced: the hook lives in the net, not on the layers
    assert "forward" not in vars(net.layers[1]) and "backward" not in vars(net.layers[1])
    net.forward({"x": x, "label": label})
    assert prof.forward_calls["ip"] == 1


def test_train_profile_reports_per_layer_time(tmp_path, cli):
    (tmp_path / "net.yaml").write_text("""\
name: prof
layers:
  - {name: data, type: Data, top: [data, label], source: spiral, points_per_class: 20,
     batch_size: 60}
  - {name: ip1, type: InnerProduct, num_output: 8}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
""")
    (tmp_path / "solver.yaml").write_text("net: net.yaml\nbase_lr: 0.1\nmax_iter: 7\n"
                                          "snapshot_after_train: false\n")
    r = cli("train", tmp_path / "solver.yaml", "--profile", "--json")
    assert r.code == 0, r.err
    p = json.loads(r.out)["profile"]
    rows = {x["name"]: x for x in p["layers"]}
    assert p["iterations"] == 7 and list(rows) == ["data", "ip1", "relu1", "ip2", "loss"]
    assert rows["ip1"]["forward_calls"] == 7 and rows["ip1"]["backward_calls"] == 7
    assert rows["data"]["backward_calls"] == 0
    assert p["forward_ms_per_iter"] == pytest.approx(
        sum(x["forward_ms_per_iter"] for x in p["layers"]), abs=1e-5)
    # the same prefix again: each run after the first starts over (the earlier run's files
    # are moved aside)
    text = cli("train", tmp_path / "solver.yaml", "--profile", "--start-over").out
    assert "per-layer time during training over 7 iterations (ms per iteration):" in text
    assert next(x for x in text.splitlines() if x.startswith("relu1 ")).split()[1] == "ReLU"
    assert "profile" not in json.loads(cli("train", tmp_path / "solver.yaml", "--json",
                                           "--start-over").out)
