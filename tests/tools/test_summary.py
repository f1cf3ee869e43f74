"""`layerflow summary`: shapes, param counts, FLOPs and memory against hand-computed values."""
from __future__ import annotations

import json

HAND = """\
name: hand
layers:
  - {name: input, type: Input, top: [x, label], shape: [[4, 3, 5], [4]]}
  - {name: ip1, type: InnerProduct, bottom: x, num_output: 7}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: sig, type: Sigmoid, bottom: ip1, top: s}
  - {name: sum, type: Eltwise, bottom: [ip1, s]}
  - {name: ip2, type: InnerProduct, bottom: sum, num_output: 2, bias_term: false,
     param: {name: w}}
  - {name: ip3, type: InnerProduct, bottom: sum, num_output: 2, bias_term: false,
     param: {name: w}}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
"""

# By hand, float32 (4 bytes). N = 4 samples, K = 3 * 5 = 15 inputs, M = 7 outputs.
EXPECTED = {  # layer: (tops' shapes, params, FLOPs, activation bytes)
    "input": ({"x": [4, 3, 5], "label": [4]}, 0, 0, (60 + 4) * 4),
    "ip1": ({"ip1": [4, 7]}, 7 * 15 + 7, 2 * 4 * 15 * 7, 28 * 4),
    "relu1": ({"ip1": [4, 7]}, 0, 28, 28 * 4),               # one comparison per element
    "sig": ({"s": [4, 7]}, 0, 4 * 28, 28 * 4),               # neg, exp, add, divide
    "sum": ({"sum": [4, 7]}, 0, 2 * 28, 28 * 4),             # K bottoms x elements
    "ip2": ({"ip2": [4, 2]}, 2 * 7, 2 * 4 * 7 * 2, 8 * 4),   # no bias
    "ip3": ({"ip3": [4, 2]}, 0, 2 * 4 * 7 * 2, 8 * 4),       # shares ip2's weight
    "loss": ({"loss": []}, 0, 4 * 8, 4),                     # a 0-d top
}


def test_summary_matches_hand_computed_values(tmp_path, cli):
    (tmp_path / "net.yaml").write_text(HAND)
    r = cli("summary", tmp_path / "net.yaml", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert [x["name"] for x in s["layers"]] == list(EXPECTED)
    for row in s["layers"]:
        tops, params, flops, memory = EXPECTED[row["name"]]
        assert {t["name"]: t["shape"] for t in row["tops"]} == tops, row["name"]
        assert (row["params"], row["flops"], row["activation_bytes"]) == \
            (params, flops, memory), row["name"]
    assert s["layers"][6]["shared_params"] == ["weight"]
    assert s["total"] == {"params": 126, "flops": 840 + 28 + 112 + 56 + 112 + 112 + 32,
                          "activation_bytes": 256 + 4 * 112 + 32 + 32 + 4,
                          "param_bytes": 126 * 4}


def test_summary_text_table(tmp_path, cli):
    (tmp_path / "net.yaml").write_text(HAND)
    r = cli("summary", tmp_path / "net.yaml")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == "net hand (train phase, float32)"
    ip1 = next(x for x in lines if x.startswith("ip1 "))
    assert "ip1 (4, 7)" in ip1 and " 112 " in ip1 and "840" in ip1
    assert "params: 126 (504 B); forward FLOPs: 1,292; activations: 772 B" in r.out


def test_summary_of_the_spiral_model_by_hand(cli):
    from plugin_support import MODELS

    r = cli("summary", MODELS / "spiral" / "net.yaml", "--json", "--phase", "test")
    s = {x["name"]: x for x in json.loads(r.out)["layers"]}
    assert s["data"]["tops"] == [{"name": "data", "shape": [300, 2]},
                                 {"name": "label", "shape": [300]}]
    assert (s["ip1"]["params"], s["ip1"]["flops"]) == (2 * 100 + 100, 2 * 300 * 2 * 100)
    assert (s["ip2"]["params"], s["ip2"]["flops"]) == (100 * 3 + 3, 2 * 300 * 100 * 3)
    assert s["relu1"]["tops"] == [{"name": "ip1", "shape": [300, 100]}]
    assert "accuracy" in s  # the test phase has the Accuracy layer


def test_summary_errors_are_user_errors(tmp_path, cli):
    r = cli("summary", tmp_path / "missing.yaml")
    assert r.code == 2 and "file not found" in r.err and "Traceback" not in r.err
    (tmp_path / "net.yaml").write_text(HAND.replace("num_output: 7", "num_outputs: 7"))
    r = cli("summary", tmp_path / "net.yaml")
    assert r.code == 2 and "net.yaml:4:" in r.err and "num_outputs" in r.err


# models/fashion_mnist_lenet by hand, float32, train phase (batch 64): Caffe's LeNet.
# A convolution costs (2 C k k + 1) flops per output (multiply-adds and the bias), a pooling
# window one compare per cell, an inner product 2 N K M.
LENET = {  # layer: (tops' shapes, params, FLOPs, activation bytes)
    "data": ({"data": [64, 1, 28, 28], "label": [64]}, 0, 0, (64 * 784 + 64) * 4),
    "conv1": ({"conv1": [64, 20, 24, 24]}, 20 * 25 + 20, 64 * 20 * 24 * 24 * (2 * 25 + 1),
              64 * 20 * 24 * 24 * 4),
    "pool1": ({"pool1": [64, 20, 12, 12]}, 0, 64 * 20 * 12 * 12 * 4, 64 * 20 * 12 * 12 * 4),
    "conv2": ({"conv2": [64, 50, 8, 8]}, 50 * 20 * 25 + 50, 64 * 50 * 8 * 8 * (2 * 500 + 1),
              64 * 50 * 8 * 8 * 4),
    "pool2": ({"pool2": [64, 50, 4, 4]}, 0, 64 * 50 * 4 * 4 * 4, 64 * 50 * 4 * 4 * 4),
    "ip1": ({"ip1": [64, 500]}, 800 * 500 + 500, 2 * 64 * 800 * 500, 64 * 500 * 4),
    "relu1": ({"ip1": [64, 500]}, 0, 64 * 500, 64 * 500 * 4),
    "ip2": ({"ip2": [64, 10]}, 500 * 10 + 10, 2 * 64 * 500 * 10, 64 * 10 * 4),
    "loss": ({"loss": []}, 0, 4 * 64 * 10, 4),
}


def test_summary_of_the_lenet_model_matches_hand_computed_values(cli):
    from pathlib import Path

    net = Path(__file__).resolve().parents[2] / "models" / "fashion_mnist_lenet" / "net.yaml"
    r = cli("summary", net, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert [x["name"] for x in s["layers"]] == list(LENET)
    for row in s["layers"]:
        tops, params, flops, memory = LENET[row["name"]]
        assert {t["name"]: t["shape"] for t in row["tops"]} == tops, row["name"]
        assert (row["params"], row["flops"], row["activation_bytes"]) == \
            (params, flops, memory), row["name"]
    assert s["total"]["params"] == 431080  # Caffe's LeNet
    assert s["total"]["flops"] == sum(v[2] for v in LENET.values())
    r = cli("summary", net, "--phase", "test", "--json")
    rows = {x["name"]: x for x in json.loads(r.out)["layers"]}
    assert rows["conv2"]["tops"][0]["shape"] == [100, 50, 8, 8]  # the test batch of 100
    assert rows["conv2"]["flops"] == 100 * 50 * 8 * 8 * 1001 and "accuracy" in rows


def test_summary_of_the_cnn_model_counts_batch_norm_by_phase(cli):
    """BatchNorm computes batch statistics in training (6 flops per element) and applies its
    stored ones in the test phase (2); Dropout is free at test time; Scale with a bias costs 2."""
    from pathlib import Path

    net = Path(__file__).resolve().parents[2] / "models" / "fashion_mnist_cnn" / "net.yaml"
    rows = {}
    for phase, batch in (("train", 128), ("test", 100)):
        r = cli("summary", net, "--phase", phase, "--json")
        assert r.code == 0, r.err
        rows[phase] = {x["name"]: x for x in json.loads(r.out)["layers"]}
        count = batch * 64 * 14 * 14
        assert rows[phase]["conv3"]["flops"] == count * 2 * 64 * 9  # no bias term
        assert rows[phase]["conv3"]["params"] == 64 * 64 * 9
        assert rows[phase]["bn3"]["flops"] == (6 if phase == "train" else 2) * count
        assert rows[phase]["bn3"]["params"] == 64 + 64 + 1  # Caffe's three blobs
        assert rows[phase]["scale3"]["flops"] == 2 * count
        assert rows[phase]["scale3"]["activation_bytes"] == 4 * count
    assert rows["train"]["drop"]["flops"] == 128 * 256 and rows["test"]["drop"]["flops"] == 0
