"""Whole-net gradient check: one small float64 net mixing every built-in layer.

The objective is the net's total loss (each loss top times its loss_weight); d(total)/d(every
param element) and d(total)/d(every input element) from one `net.backward()` are compared with
central differences of `net.forward`, with Caffe's rule
|analytic - numeric| <= 1e-6 * max(|analytic|, |numeric|, 1).
Inputs and params are drawn so that no value sits near a kink (ReLU at 0, Eltwise MAX ties,
hinge terms at 0), so the finite differences never cross one.
"""
from __future__ import annotations

import numpy as np

import layerflow as lf

NET = """\
name: every_layer
force_backward: true
dtype: float64
layers:
  - {name: input, type: Input, top: [x, label], shape: [[4, 3], [4]]}
  - {name: ip1, type: InnerProduct, num_output: 5, bottom: x, top: h,
     bias_filler: {type: uniform, min: -0.5, max: 0.5}}
  - {name: relu, type: ReLU, bottom: h, top: r, negative_slope: 0.1}
  - {name: sig, type: Sigmoid, bottom: h, top: s}
  - {name: sum, type: Eltwise, operation: SUM, bottom: [r, s], coeff: [1.5, -0.5]}
  - {name: prod, type: Eltwise, operation: PROD, bottom: [r, s, h]}
  - {name: max, type: Eltwise, operation: MAX, bottom: [sum, prod]}
  - {name: ip2, type: InnerProduct, num_output: 3, bottom: max, top: scores,
     bias_filler: {type: gaussian, std: 0.5}}
  - {name: ip3, type: InnerProduct, num_output: 3, bottom: prod, top: scores2,
     weight_filler: {type: gaussian, std: 1.0}}
  - {name: softmax_loss, type: SoftmaxLoss, bottom: [scores, label], loss_weight: 0.6}
  - {name: hinge_l1, type: SVMLoss, bottom: [scores2, label], loss_weight: 1.3}
  - {name: hinge_l2, type: SVMLoss, bottom: [scores, label], norm: L2, margin: 0.5,
     loss_weight: 0.8}
  - {name: accuracy, type: Accuracy, bottom: [scores, label]}
"""

STEP = 1e-5
THRESHOLD = 1e-6
KINK_MARGIN = 0.02  # far more than any value moves when one element moves by STEP


def hinge_terms(scores, label, margin):
    n = len(label)
    t = scores - scores[np.arange(n), label][:, None] + margin
    t[np.arange(n), label] = np.inf  # the label's own term is no hinge
    return t


def distance_to_kinks(net, label) -> float:
    b = {name: net.blobs[name].data for name in ("h", "sum", "prod", "scores", "scores2")}
    return min(np.abs(b["h"]).min(),
               np.abs(b["sum"] - b["prod"]).min(),
               np.abs(hinge_terms(b["scores2"], label, 1.0)).min(),
               np.abs(hinge_terms(b["scores"], label, 0.5)).min())


def build_away_from_kinks(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(NET)
    for seed in range(200):
        net = lf.Net.from_yaml(path, seed=seed)
        rng = np.random.default_rng(seed)
        feed = {"x": rng.normal(size=(4, 3)), "label": rng.integers(0, 3, size=4)}
        net.forward(feed)
        if distance_to_kinks(net, feed["label"]) > KINK_MARGIN:
            return net, feed
    raise AssertionError("no seed gave values away from every kink")


def test_every_param_and_input_gradient_of_the_total_loss(tmp_path):
    net, feed = build_away_from_kinks(tmp_path)
    label = feed["label"]
    out = net.forward(feed)
    assert set(out) == {"softmax_loss", "hinge_l1", "hinge_l2", "accuracy"}
    total = 0.6 * out["softmax_loss"] + 1.3 * out["hinge_l1"] + 0.8 * out["hinge_l2"]
    assert abs(net.loss - total) < 1e-12
    scores = net.blobs["scores"].data
    assert out["accuracy"] == np.mean(scores.argmax(1) == label)  # an output, not a loss
    assert out["hinge_l1"] > 0 and out["hinge_l2"] > 0  # the hinges are active somewhere

    net.backward()
    analytic = {f"{layer}.{name}": p.grad.copy()
                for layer, ps in net.params.items() for name, p in ps.items()}
    analytic["x"] = net.blobs["x"].diff.copy()
    assert net.blobs["label"].diff is None
    assert set(analytic) == {"ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias",
                             "ip3.weight", "ip3.bias", "x"}

    def total_loss():
        net.forward(feed)
        return net.loss

    checked = 0
    for key, grad in analytic.items():
        if key == "x":
            values = feed["x"]  # fed again on every forward
        else:
            layer, name = key.split(".")
            values = net.params[layer][name].data
        for idx in np.ndindex(values.shape):
            saved = values[idx]
            values[idx] = saved + STEP
            plus = total_loss()
            values[idx] = saved - STEP
            minus = total_loss()
            values[idx] = saved
            numeric = (plus - minus) / (2 * STEP)
            a = grad[idx]
            error = abs(a - numeric) / max(abs(a), abs(numeric), 1.0)
            assert error <= THRESHOLD, (key, idx, a, numeric, error)
            checked += 1
    assert checked == 20 + 18 + 18 + 12
    # every param gets gradient from somewhere (no branch was silently cut off)
    for key, grad in analytic.items():
        assert np.abs(grad).max() > 1e-3, key
