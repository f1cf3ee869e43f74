"""Whole-net gradient check of the vision layers: one small float64 net mixing them all.

The objective is the net's total loss (each loss top times its loss_weight). d(total)/d(every
param element) and d(total)/d(every input element) from one `net.backward()` are compared with
central differences of `net.forward`, with Caffe's rule
|analytic - numeric| <= 1e-6 * max(|analytic|, |numeric|, 1): every element of the small
arrays, and MAX_CHECKS elements drawn at random (the same every run) of each larger one, so
that the test stays within a few seconds.

What the net exercises (x: 2 images of 4 channels, 7x7):
    Convolution  pad + stride + group 2 (square kernel); dilation 2 with a rectangular kernel
                 (kernel_h/kernel_w, pad_h/pad_w)
    Deconvolution (stride 2, pad, group 2) back to 7x7, summed with the dilated conv (Eltwise)
    TanH, Pooling MAX (CEIL rounding: 3x3 from 7x7) and AVE (pad 1, the divisor counting padding)
    LRN ACROSS_CHANNELS and WITHIN_CHANNEL, BatchNorm (batch statistics) + Scale (bias_term),
    PReLU, Bias, ELU, Crop, Concat, Slice, Split, Flatten, Reshape, Dropout (train phase: its
    mask fixed by restoring the layers' rng before every forward), InnerProduct, Softmax
    losses: SoftmaxLoss, MultinomialLogisticLoss (on a Softmax), HingeLoss L2, EuclideanLoss
            (both bottoms get gradients), SigmoidCrossEntropyLoss, each with its own loss_weight.
Inputs and params are drawn (over seeds) so that no value sits near a kink: PReLU's and ELU's
inputs away from 0, a clear winner in every MAX-pooling window, every hinge term away from 0.
"""
from __future__ import annotations

import numpy as np

import layerflow as lf

NET = """\
name: vision_layers
force_backward: true
dtype: float64
layers:
  - {name: input, type: Input, top: [x, label, target, t01],
     shape: [[2, 4, 7, 7], [2], [2, 3], [2, 7, 4, 4]]}
  - {name: conv_s, type: Convolution, bottom: x, top: cs, num_output: 6, kernel_size: 3,
     pad: 1, stride: 2, group: 2, bias_filler: {type: gaussian, std: 0.3}}
  - {name: conv_d, type: Convolution, bottom: x, top: cd, num_output: 4, kernel_h: 3,
     kernel_w: 2, pad_h: 2, pad_w: 1, dilation: 2, bias_filler: {type: gaussian, std: 0.3}}
  - {name: deconv, type: Deconvolution, bottom: cs, top: dc, num_output: 4, kernel_size: 3,
     stride: 2, pad: 1, group: 2, weight_filler: {type: gaussian, std: 0.4},
     bias_filler: {type: gaussian, std: 0.3}}
  - {name: sum, type: Eltwise, operation: SUM, bottom: [dc, cd], coeff: [1.0, 0.5], top: s}
  - {name: tanh, type: TanH, bottom: s, top: t}
  - {name: pool_max, type: Pooling, pool: MAX, kernel_size: 3, stride: 2, bottom: t, top: pm}
  - {name: pool_ave, type: Pooling, pool: AVE, kernel_size: 3, stride: 2, pad: 1, bottom: cd,
     top: pa}
  - {name: lrn_across, type: LRN, norm_region: ACROSS_CHANNELS, local_size: 3, alpha: 0.5,
     beta: 0.75, k: 2.0, bottom: dc, top: la}
  - {name: lrn_within, type: LRN, norm_region: WITHIN_CHANNEL, local_size: 3, alpha: 0.5,
     beta: 0.75, bottom: t, top: lw}
  - {name: bn, type: BatchNorm, bottom: la, top: bn}
  - {name: scale, type: Scale, bottom: bn, top: sc, bias_term: true,
     filler: {type: uniform, min: 0.5, max: 1.5}, bias_filler: {type: gaussian, std: 0.5}}
  - {name: prelu, type: PReLU, bottom: sc, top: pr}
  - {name: bias, type: Bias, bottom: pr, top: pb, filler: {type: gaussian, std: 0.5}}
  - {name: pool_pb, type: Pooling, pool: AVE, kernel_size: 3, stride: 2, pad: 1, bottom: pb,
     top: pp}
  - {name: elu, type: ELU, bottom: lw, top: el, alpha: 0.8}
  - {name: crop, type: Crop, bottom: [el, pa], top: ce, axis: 2, offset: [1, 2]}
  - {name: concat, type: Concat, bottom: [ce, pa, pp], top: cc}
  - {name: slice, type: Slice, bottom: cc, top: [s1, s2], slice_point: [5]}
  - {name: split, type: Split, bottom: s1, top: [sa, sb]}
  - {name: flatten, type: Flatten, bottom: sa, top: fa}
  - {name: drop, type: Dropout, bottom: fa, top: fd, dropout_ratio: 0.3}
  - {name: ip_a, type: InnerProduct, bottom: fd, top: scores, num_output: 5,
     bias_filler: {type: gaussian, std: 0.3}}
  - {name: reshape, type: Reshape, bottom: sb, top: rb, shape: [0, -1]}
  - {name: ip_b, type: InnerProduct, bottom: rb, top: z, num_output: 3}
  - {name: flatten_pm, type: Flatten, bottom: pm, top: fm}
  - {name: ip_c, type: InnerProduct, bottom: fm, top: scores_c, num_output: 5,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: softmax, type: Softmax, bottom: scores_c, top: prob}
  - {name: softmax_loss, type: SoftmaxLoss, bottom: [scores, label], loss_weight: 0.7}
  - {name: mlog_loss, type: MultinomialLogisticLoss, bottom: [prob, label], loss_weight: 1.2}
  - {name: hinge_loss, type: HingeLoss, bottom: [scores_c, label], norm: L2, loss_weight: 0.4}
  - {name: euclid_loss, type: EuclideanLoss, bottom: [z, target], loss_weight: 0.9}
  - {name: sigmoid_loss, type: SigmoidCrossEntropyLoss, bottom: [s2, t01], loss_weight: 1.1}
  - {name: accuracy, type: Accuracy, bottom: [scores, label]}
"""

LOSS_WEIGHTS = {"softmax_loss": 0.7, "mlog_loss": 1.2, "hinge_loss": 0.4, "euclid_loss": 0.9,
                "sigmoid_loss": 1.1}
STEP = 1e-5
THRESHOLD = 1e-6
MAX_CHECKS = 60
KINK_MARGIN = 1e-3  # ten times more than any value moves when one element moves by STEP


def max_pool_gap(x, k, s) -> float:
    """The smallest gap between the largest and the second largest in-image value over the
    MAX-pooling windows (kernel k, stride s, no pad, Caffe's CEIL rounding) of x (N, C, H, W)."""
    _, _, h, w = x.shape
    ph, pw = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    gap = np.inf
    for i in range(ph):
        for j in range(pw):
            win = x[:, :, i * s:min(i * s + k, h), j * s:min(j * s + k, w)]
            top2 = np.sort(win.reshape(x.shape[0], x.shape[1], -1), axis=2)[:, :, -2:]
            gap = min(gap, float((top2[:, :, 1] - top2[:, :, 0]).min()))
    return gap


def distance_to_kinks(net, label) -> float:
    b = {name: net.blobs[name].data for name in ("t", "sc", "lw", "scores_c")}
    delta = -np.ones_like(b["scores_c"])
    delta[np.arange(len(label)), label] = 1
    return min(max_pool_gap(b["t"], 3, 2),
               np.abs(b["sc"]).min(),                       # PReLU's input
               np.abs(b["lw"]).min(),                       # ELU's input
               np.abs(1 - delta * b["scores_c"]).min())     # HingeLoss terms


class FixedRandomness:
    """Restores every layer's rng before each forward, so Dropout draws the same mask in
    every pass of the finite differences."""

    def __init__(self, net):
        self.states = [(layer, layer.rng.bit_generator.state) for layer in net.layers]

    def restore(self):
        for layer, state in self.states:
            layer.rng.bit_generator.state = state


def build_away_from_kinks(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(NET)
    for seed in range(200):
        net = lf.Net.from_yaml(path, seed=seed)
        rng = np.random.default_rng(seed)
        label = rng.integers(0, 5, size=2)
        feed = {"x": rng.normal(size=(2, 4, 7, 7)), "label": label.astype(np.float64),
                "target": rng.normal(size=(2, 3)), "t01": rng.uniform(size=(2, 7, 4, 4))}
        randomness = FixedRandomness(net)
        net.forward(feed)
        if distance_to_kinks(net, label) > KINK_MARGIN:
            return net, feed, randomness
    raise AssertionError("no seed gave values away from every kink")


def test_every_param_and_input_gradient_of_the_total_loss(tmp_path):
    net, feed, randomness = build_away_from_kinks(tmp_path)
    assert net.phase == "train"
    randomness.restore()
    out = net.forward(feed)
    assert set(out) == set(LOSS_WEIGHTS) | {"accuracy"}
    total = sum(w * out[name] for name, w in LOSS_WEIGHTS.items())
    assert abs(net.loss - total) < 1e-12
    dropped = net.blobs["fd"].data == 0
    assert dropped.any() and not dropped.all()  # dropout is active, with a fixed mask
    assert (net.blobs["hinge_loss"].data > 0).all()  # some hinge term is active

    net.backward()
    analytic = {f"{layer}.{name}": p.grad.copy()
                for layer, ps in net.params.items() for name, p in ps.items() if p.learnable}
    for name in ("x", "target"):
        analytic[name] = net.blobs[name].diff.copy()
    assert net.blobs["label"].diff is None
    assert set(analytic) == {
        "conv_s.weight", "conv_s.bias", "conv_d.weight", "conv_d.bias", "deconv.weight",
        "deconv.bias", "scale.weight", "scale.bias", "prelu.weight", "bias.bias",
        "ip_a.weight", "ip_a.bias", "ip_b.weight", "ip_b.bias", "ip_c.weight", "ip_c.bias",
        "x", "target"}
    assert {n for n, p in net.params["bn"].items() if not p.learnable} == {
        "mean", "variance", "scale_factor"}

    def total_loss():
        randomness.restore()
        net.forward(feed)
        return net.loss

    pick = np.random.default_rng(0)
    checked = 0
    for key, grad in analytic.items():
        if key in feed:
            values = feed[key]  # fed again on every forward
        else:
            layer, name = key.split(".")
            values = net.params[layer][name].data
        assert grad.shape == values.shape, key
        flat = np.arange(values.size)
        if values.size > MAX_CHECKS:
            flat = pick.choice(values.size, MAX_CHECKS, replace=False)
        for idx in (np.unravel_index(k, values.shape) for k in flat):
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
        # every param and input gets gradient from somewhere (no branch silently cut off)
        assert np.abs(grad).max() > 1e-4, key
    assert checked == sum(min(v.size, MAX_CHECKS) for v in analytic.values())
