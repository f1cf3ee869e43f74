"""Every built-in layer type with an ONNX mapping, exported in a small net and run by ONNX
Runtime: its outputs equal layerflow's forward within 1e-5 (float32) at two batch sizes.

Each case is a net: an Input of the blobs it lists (shapes without the batch), then the layers.
A type that gains a mapping must gain a case here (test_every_mapped_type_has_a_case).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

import layerflow as lf  # noqa: E402
from layerflow.onnx import to_onnx  # noqa: E402
from layerflow.registry import LAYERS, ONNX  # noqa: E402

from onnx_parity import max_diff, randomize_params  # noqa: E402


def normal(rng, shape):
    return rng.normal(0, 1, shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def wide(rng, shape):
    """Includes large |x| (BNLL's exp must not overflow)."""
    x = rng.normal(0, 1, shape)
    x.reshape(-1)[::7] *= 40
    return x


# type -> [(case id, {input: (shape, generator)}, layers YAML)]
CASES = {
    "ReLU": [("plain", {"x": ((3, 4), normal)}, "{name: r, type: ReLU, bottom: x}"),
             ("leaky", {"x": ((3, 4), normal)},
              "{name: r, type: ReLU, bottom: x, negative_slope: 0.1}")],
    "Sigmoid": [("", {"x": ((3, 4), wide)}, "{name: s, type: Sigmoid, bottom: x}")],
    "TanH": [("", {"x": ((3, 4), normal)}, "{name: t, type: TanH, bottom: x}")],
    "AbsVal": [("", {"x": ((3, 4), normal)}, "{name: a, type: AbsVal, bottom: x}")],
    "BNLL": [("", {"x": ((3, 5), wide)}, "{name: b, type: BNLL, bottom: x}")],
    "ELU": [("", {"x": ((3, 4), normal)}, "{name: e, type: ELU, bottom: x, alpha: 0.7}")],
    "PReLU": [("per-channel", {"x": ((3, 4, 2), normal)}, "{name: p, type: PReLU, bottom: x}"),
              ("shared", {"x": ((3, 4, 2), normal)},
               "{name: p, type: PReLU, bottom: x, channel_shared: true}")],
    "Threshold": [("", {"x": ((4, 5), normal)},
                   "{name: t, type: Threshold, bottom: x, threshold: 0.2}")],
    "Power": [("", {"x": ((3, 4), positive)},
               "{name: p, type: Power, bottom: x, power: 2.5, scale: 0.5, shift: 1.0}"),
              ("square", {"x": ((3, 4), normal)}, "{name: p, type: Power, bottom: x, power: 2}"),
              ("constant", {"x": ((3, 4), normal)},
               "{name: p, type: Power, bottom: x, power: 1.5, scale: 0, shift: 2.0}")],
    "Exp": [("e", {"x": ((3, 4), normal)}, "{name: e, type: Exp, bottom: x}"),
            ("base2", {"x": ((3, 4), normal)},
             "{name: e, type: Exp, bottom: x, base: 2.0, scale: 0.5, shift: 0.3}")],
    "Log": [("e", {"x": ((3, 4), positive)}, "{name: l, type: Log, bottom: x}"),
            ("base10", {"x": ((3, 4), positive)},
             "{name: l, type: Log, bottom: x, base: 10, scale: 2.0, shift: 0.5}")],
    "Dropout": [("inverted", {"x": ((3, 4), normal)},
                 "{name: d, type: Dropout, bottom: x, dropout_ratio: 0.3}"),
                ("scale_train false", {"x": ((3, 4), normal)},
                 "{name: d, type: Dropout, bottom: x, dropout_ratio: 0.3, scale_train: false}")],
    "Transform": [("channels", {"x": ((3, 4, 2), positive)},
                   "{name: t, type: Transform, bottom: x, scale: 0.5, mean_value: [1, 2, 3]}"),
                  ("scale", {"x": ((3, 4), positive)},
                   "{name: t, type: Transform, bottom: x, scale: 0.25}"),
                  ("one mean", {"x": ((3, 4), positive)},
                   "{name: t, type: Transform, bottom: x, mean_value: 1.5}"),
                  ("centre crop", {"x": ((3, 7, 6), positive)},
                   "{name: t, type: Transform, bottom: x, crop_size: 4, scale: 0.5, "
                   "mean_value: [1, 2, 3]}")],
    "Eltwise": [("sum", {"x": ((3, 4), normal), "y": ((3, 4), normal)},
                 "{name: e, type: Eltwise, bottom: [x, y], coeff: [1.0, -0.5]}"),
                ("prod", {"x": ((3, 4), normal), "y": ((3, 4), normal), "z": ((3, 4), normal)},
                 "{name: e, type: Eltwise, bottom: [x, y, z], operation: PROD}"),
                ("max", {"x": ((3, 4), normal), "y": ((3, 4), normal), "z": ((3, 4), normal)},
                 "{name: e, type: Eltwise, bottom: [x, y, z], operation: MAX}")],
    "Concat": [("axis 1", {"x": ((3, 4), normal), "y": ((2, 4), normal)},
                "{name: c, type: Concat, bottom: [x, y]}"),
               ("axis -1", {"x": ((3, 4), normal), "y": ((3, 2), normal)},
                "{name: c, type: Concat, bottom: [x, y], axis: -1}")],
    "Slice": [("points", {"x": ((5, 2), normal)},
               "{name: s, type: Slice, bottom: x, top: [a, b, c], slice_point: [1, 3]}"),
              ("equal", {"x": ((2, 6), normal)},
               "{name: s, type: Slice, bottom: x, top: [a, b], axis: 2}")],
    "Split": [("", {"x": ((3, 4), normal)}, "{name: s, type: Split, bottom: x, top: [a, b]}")],
    "Flatten": [("", {"x": ((3, 4, 2), normal)}, "{name: f, type: Flatten, bottom: x}"),
                ("middle", {"x": ((3, 4, 2), normal)},
                 "{name: f, type: Flatten, bottom: x, axis: 1, end_axis: 2}")],
    "Reshape": [("flat", {"x": ((3, 4, 2), normal)},
                 "{name: r, type: Reshape, bottom: x, shape: [0, -1]}"),
                ("inner axes", {"x": ((3, 4, 2), normal)},
                 "{name: r, type: Reshape, bottom: x, axis: 1, num_axes: 2, shape: [2, 6]}")],
    "Crop": [("", {"x": ((3, 6, 6), normal), "y": ((3, 4, 4), normal)},
              "{name: c, type: Crop, bottom: [x, y], offset: [1, 2]}")],
    "InnerProduct": [("2-D", {"x": ((6,), normal)},
                      "{name: ip, type: InnerProduct, bottom: x, num_output: 4}"),
                     ("flattened", {"x": ((3, 2, 2), normal)},
                      "{name: ip, type: InnerProduct, bottom: x, num_output: 4}"),
                     ("axis 2", {"x": ((3, 4), normal)},
                      "{name: ip, type: InnerProduct, bottom: x, num_output: 5, axis: 2}"),
                     ("no bias", {"x": ((6,), normal)},
                      "{name: ip, type: InnerProduct, bottom: x, num_output: 4, "
                      "bias_term: false}")],
    "Scale": [("channel and bias", {"x": ((3, 4), normal)},
               "{name: s, type: Scale, bottom: x, bias_term: true}"),
              ("two axes", {"x": ((3, 4, 2), normal)},
               "{name: s, type: Scale, bottom: x, num_axes: 2}"),
              ("scalar", {"x": ((3, 4), normal)}, "{name: s, type: Scale, bottom: x, num_axes: 0}"),
              ("second bottom", {"x": ((3, 4), normal), "y": ((3,), normal)},
               "{name: s, type: Scale, bottom: [x, y], axis: 0}")],
    "Bias": [("channel", {"x": ((3, 4), normal)}, "{name: b, type: Bias, bottom: x}"),
             ("second bottom", {"x": ((3, 4), normal), "y": ((3,), normal)},
              "{name: b, type: Bias, bottom: [x, y], axis: 0}")],
    "BatchNorm": [("stored statistics", {"x": ((3, 4, 2), normal)},
                   "{name: bn, type: BatchNorm, bottom: x}"),
                  ("then Scale", {"x": ((3, 4), normal)},
                   "{name: bn, type: BatchNorm, bottom: x}\n"
                   "- {name: s, type: Scale, bottom: bn, bias_term: true}"),
                  ("batch statistics", {"x": ((3, 4, 5), normal)},
                   "{name: bn, type: BatchNorm, bottom: x, use_global_stats: false}")],
    "Convolution": [("3x3 padded", {"x": ((3, 6, 5), normal)},
                     "{name: c, type: Convolution, bottom: x, num_output: 4, kernel_size: 3, "
                     "pad: 1}"),
                    ("strided dilated grouped", {"x": ((4, 9, 8), normal)},
                     "{name: c, type: Convolution, bottom: x, num_output: 6, kernel_h: 3, "
                     "kernel_w: 2, stride_h: 2, stride_w: 1, pad_h: 1, pad_w: 0, dilation: 2, "
                     "group: 2}"),
                    ("1x1 no bias", {"x": ((3, 4, 4), normal)},
                     "{name: c, type: Convolution, bottom: x, num_output: 5, kernel_size: 1, "
                     "bias_term: false}"),
                    ("1-D", {"x": ((2, 9), normal)},
                     "{name: c, type: Convolution, bottom: x, num_output: 3, kernel_size: 3, "
                     "stride: 2}"),
                    ("3-D", {"x": ((2, 4, 5, 5), normal)},
                     "{name: c, type: Convolution, bottom: x, num_output: 3, kernel_size: 2, "
                     "pad: [0, 1, 1]}"),
                    ("two bottoms", {"x": ((2, 5, 5), normal), "y": ((2, 5, 5), normal)},
                     "{name: c, type: Convolution, bottom: [x, y], top: [a, b], num_output: 3, "
                     "kernel_size: 3}")],
    "Deconvolution": [("upsampling", {"x": ((4, 3, 3), normal)},
                       "{name: d, type: Deconvolution, bottom: x, num_output: 4, kernel_size: 4, "
                       "stride: 2, pad: 1, group: 2}"),
                      ("dilated", {"x": ((2, 4, 3), normal)},
                       "{name: d, type: Deconvolution, bottom: x, num_output: 3, kernel_h: 3, "
                       "kernel_w: 2, dilation: 2, bias_term: false}")],
    "Pooling": [("max", {"x": ((2, 7, 7), normal)},
                 "{name: p, type: Pooling, bottom: x, kernel_size: 3, stride: 2}"),
                ("max ceil overhang", {"x": ((2, 6, 6), normal)},
                 "{name: p, type: Pooling, bottom: x, kernel_size: 3, stride: 2}"),
                ("max padded", {"x": ((2, 6, 6), normal)},
                 "{name: p, type: Pooling, bottom: x, kernel_size: 3, stride: 2, pad: 1}"),
                ("max rectangular", {"x": ((2, 7, 6), normal)},
                 "{name: p, type: Pooling, bottom: x, kernel_h: 3, kernel_w: 2, stride_h: 2, "
                 "stride_w: 1, pad_h: 1, pad_w: 0}"),
                ("ave padded overhang", {"x": ((2, 6, 6), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, kernel_size: 3, stride: 2, "
                 "pad: 1}"),
                ("ave unpadded overhang", {"x": ((2, 5, 5), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, kernel_size: 2, stride: 2}"),
                ("ave last window dropped", {"x": ((2, 4, 4), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, kernel_size: 2, stride: 2, "
                 "pad: 1}"),
                ("ave stride 1", {"x": ((2, 5, 5), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, kernel_size: 3, pad: 1}"),
                ("ave floor", {"x": ((2, 6, 6), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, kernel_size: 3, stride: 2, "
                 "pad: 1, round_mode: FLOOR}"),
                ("global ave", {"x": ((3, 4, 5), normal)},
                 "{name: p, type: Pooling, bottom: x, pool: AVE, global_pooling: true}"),
                ("global max", {"x": ((3, 4, 5), normal)},
                 "{name: p, type: Pooling, bottom: x, global_pooling: true}"),
                ("stochastic", {"x": ((2, 6, 6), positive)},
                 "{name: p, type: Pooling, bottom: x, pool: STOCHASTIC, kernel_size: 3, "
                 "stride: 2}")],
    "LRN": [("across", {"x": ((7, 3, 4), normal)},
             "{name: n, type: LRN, bottom: x, local_size: 5, alpha: 0.5, beta: 0.75, k: 2.0}"),
            ("within", {"x": ((2, 5, 6), normal)},
             "{name: n, type: LRN, bottom: x, local_size: 3, alpha: 0.5, beta: 0.6, "
             "norm_region: WITHIN_CHANNEL}")],
    "Softmax": [("axis 1", {"x": ((5,), wide)}, "{name: s, type: Softmax, bottom: x}"),
                ("last axis", {"x": ((3, 4), normal)},
                 "{name: s, type: Softmax, bottom: x, axis: -1}")],
}


def case_net(inputs: dict, layers: str, build_batch: int = 2):
    names = list(inputs)
    shapes = [[build_batch, *shape] for shape, _ in inputs.values()]
    text = (f"name: case\nlayers:\n  - {{name: input, type: Input, top: {names}, "
            f"shape: {shapes}}}\n" + textwrap.indent("- " + layers, "  ") + "\n")
    return lf.Net.from_string(text, phase="test", file="case.yaml")


def feeds(inputs: dict, seed: int):
    def make(n):
        rng = np.random.default_rng([seed, n])
        return {name: gen(rng, (n, *shape)).astype(np.float32)
                for name, (shape, gen) in inputs.items()}
    return make


ALL = [(t, cid, inputs, layers) for t, cases in CASES.items()
       for cid, inputs, layers in cases]


def builtin_mapped_types() -> set[str]:
    return {name for name in ONNX.names() if ONNX.origin_of(name).startswith("built-in")
            and LAYERS.lookup(name) is not None}


def test_every_mapped_type_has_a_case():
    """Cases of types still to land (on other branches) wait for their layer."""
    assert builtin_mapped_types() == {t for t in CASES if LAYERS.lookup(t) is not None}


def test_types_without_mapping_only_train_or_evaluate():
    """What has no mapping never reaches a deploy net: losses, data layers, Accuracy."""
    unmapped = [name for name, cls in LAYERS.items()
                if ONNX.lookup(name) is None and LAYERS.origin_of(name).startswith("built-in")]
    for name in unmapped:
        cls = LAYERS.get(name)
        assert cls.is_loss or cls.num_bottoms == 0 or not cls.has_backward, name


@pytest.mark.parametrize("type_name, case, inputs, layers", ALL,
                         ids=[f"{t}-{c}" if c else t for t, c, _, _ in ALL])
def test_onnx_runtime_matches_layerflow(type_name, case, inputs, layers):
    if LAYERS.lookup(type_name) is None:
        pytest.skip(f"no layer type {type_name} yet")
    net = case_net(inputs, layers)
    assert type_name in {layer.type for layer in net.layers}
    randomize_params(net, seed=1)
    model = to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    max_diff(net, model, feeds(inputs, seed=2), batches=(1, 5))


def test_batch_norm_and_scale_are_one_batch_normalization():
    inputs = {"x": ((3, 4), normal)}
    net = case_net(inputs, "{name: bn, type: BatchNorm, bottom: x}\n"
                           "- {name: s, type: Scale, bottom: bn, top: bn, bias_term: true}")
    randomize_params(net, seed=1)
    model = to_onnx(net)
    assert [n.op_type for n in model.graph.node] == ["BatchNormalization"]
    gamma = [i for i in model.graph.initializer if i.name == model.graph.node[0].input[1]][0]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(gamma),
                                  net.params["s"]["weight"].data)
    max_diff(net, model, feeds(inputs, seed=2))
    # a BatchNorm whose top is also read elsewhere keeps its own node
    net = case_net(inputs, "{name: bn, type: BatchNorm, bottom: x}\n"
                           "- {name: s, type: Scale, bottom: bn, bias_term: true}\n"
                           "- {name: e, type: Eltwise, bottom: [bn, s]}")
    randomize_params(net, seed=1)
    model = to_onnx(net)
    assert [n.op_type for n in model.graph.node] == ["BatchNormalization", "Mul", "Add", "Sum"]
    max_diff(net, model, feeds(inputs, seed=2))

