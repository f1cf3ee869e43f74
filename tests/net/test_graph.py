"""The Net: wiring by blob names, phases, graph errors, shapes, forward/backward, the Python API.

Every expected value is computed here with plain numpy from the net's own params, never by
running the net a second way.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import layerflow as lf
from layerflow.config import load_yaml_text, parse_net
from layerflow.errors import UserError


def build(text: str, phase: str = "train", **kw) -> "lf.Net":
    return lf.Net.from_string(textwrap.dedent(text), phase, **kw)


def build_error(text: str, phase: str = "train") -> str:
    with pytest.raises(UserError) as info:
        build(text, phase)
    return str(info.value)


def where(text: str, needle: str) -> str:
    """'<string>:L:C' of the flow-style layer on the line containing `needle` (its `{`)."""
    for i, line in enumerate(textwrap.dedent(text).splitlines()):
        if needle in line:
            return f"<string>:{i + 1}:{line.index('{') + 1}"
    raise AssertionError(f"{needle!r} not in the YAML")


def leaky(z, slope):
    return np.where(z > 0, z, slope * z)


MLP = """
    name: mlp
    layers:
      - {name: data, type: Input, shape: [[4, 3], [4]], top: [data, label]}
      - {name: ip1, type: InnerProduct, num_output: 5}
      - {name: relu1, type: ReLU}
      - {name: ip2, type: InnerProduct, num_output: 3}
      - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
    """


# ---- wiring -------------------------------------------------------------------------------

def test_stack_rule_takes_previous_first_top_and_names_tops_after_layers():
    net = build(MLP)
    wiring = {l.name: (l.bottom_names, l.top_names) for l in net.layers}
    assert wiring == {
        "data": ([], ["data", "label"]),
        "ip1": (["data"], ["ip1"]),          # the first top of `data`, not `label`
        "relu1": (["ip1"], ["relu1"]),
        "ip2": (["relu1"], ["ip2"]),
        "loss": (["ip2", "label"], ["loss"]),
    }
    assert net.inputs == ["data", "label"]
    assert net.outputs == ["loss"]


def test_stack_rule_follows_the_layers_of_the_phase():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip_train, type: InnerProduct, num_output: 5, include: {phase: train}}
          - {name: ip_test, type: InnerProduct, num_output: 6, include: {phase: test}}
          - {name: relu, type: ReLU}
        """
    assert build(text, "train").layer_by_name["relu"].bottom_names == ["ip_train"]
    assert build(text, "test").layer_by_name["relu"].bottom_names == ["ip_test"]
    assert build(text, "test").blobs["relu"].shape == (2, 6)


def test_first_layer_without_bottom_is_an_error():
    text = """
        layers:
          - {name: relu, type: ReLU}
        """
    msg = build_error(text)
    assert where(text, "relu") in msg and "(relu)" in msg and "no bottom given" in msg


# ---- phases -------------------------------------------------------------------------------

PHASES = """
    layers:
      - {name: data, type: Input, shape: [[4, 3], [4]], top: [data, label]}
      - {name: ip, type: InnerProduct, num_output: 3}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label], exclude: {phase: TEST}}
      - {name: acc, type: Accuracy, bottom: [ip, label], include: {phase: test}}
      - {name: both, type: ReLU, bottom: ip, include: [{phase: train}, {phase: test}]}
    """


def test_include_and_exclude_select_layers_per_phase():
    train, test = build(PHASES, "train"), build(PHASES, "test")
    assert [l.name for l in train.layers] == ["data", "ip", "loss", "both"]
    assert [l.name for l in test.layers] == ["data", "ip", "acc", "both"]
    assert set(train.outputs) == {"loss", "both"}
    assert set(test.outputs) == {"acc", "both"}


def test_a_phase_without_layers_and_an_unknown_phase_are_errors():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3], include: {phase: train}}
        """
    assert "no layers in phase test" in build_error(text, "test")
    msg = build_error("""
        layers:
          - {name: data, type: Input, shape: [2, 3], include: {phase: val}}
        """)
    assert "layers[0] (data): include[0].phase" in msg and "'val'" in msg
    with pytest.raises(UserError, match="phase must be train or test"):
        build(MLP, "validation")


def test_include_and_exclude_together_is_an_error():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3], include: {phase: train},
             exclude: {phase: test}}
        """
    msg = build_error(text)
    assert "(data)" in msg and "include or exclude, not both" in msg
    assert msg.startswith("<string>:4:6:")  # the `exclude` key


# ---- graph errors -------------------------------------------------------------------------

@pytest.mark.parametrize("layer, expected", [
    ("{name: loss, type: SoftmaxLoss, bottom: ip}", "takes 2 bottom(s), got 1"),
    ("{name: sum, type: Eltwise, bottom: [ip]}", "takes at least 2 bottom(s), got 1"),
    ("{name: relu, type: ReLU, bottom: ip, top: [a, b]}", "gives 1 top(s), got 2: ['a', 'b']"),
    ("{name: in2, type: Input, shape: [2, 3], bottom: ip}", "takes 0 bottom(s), got 1"),
])
def test_arity_errors_name_the_layer(layer, expected):
    text = f"""
        layers:
          - {{name: data, type: Input, shape: [2, 3]}}
          - {{name: ip, type: InnerProduct, num_output: 3}}
          - {layer}
        """
    msg = build_error(text)
    name = layer.split(",")[0].split(": ")[1]
    assert msg.startswith(f"<string>:5:5: layers[2] ({name}): ")
    assert expected in msg


def test_unknown_bottom_suggests_the_closest_blob():
    text = """
        layers:
          - {name: data, type: Input, shape: [[2, 3], [2]], top: [data, label]}
          - {name: ip, type: InnerProduct, num_output: 3}
          - {name: loss, type: SoftmaxLoss, bottom: [ip, lable]}
        """
    msg = build_error(text)
    assert msg.startswith(where(text, "name: loss") + ": layers[2] (loss): ")
    assert 'unknown bottom blob "lable" (did you mean "label"?)' in msg
    assert "data, ip, label" in msg


def test_a_blob_of_the_other_phase_is_unknown():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip, type: InnerProduct, num_output: 3, include: {phase: train}}
          - {name: relu, type: ReLU, bottom: ip, include: {phase: test}}
        """
    build(text, "train")
    assert 'unknown bottom blob "ip"' in build_error(text, "test")


def test_layer_reading_its_own_top_with_no_producer_is_an_unknown_bottom():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: relu, type: ReLU, bottom: x, top: x}
        """
    msg = build_error(text)
    assert msg.startswith("<string>:4:5: layers[1] (relu): unknown bottom blob \"x\"")
    assert "did you mean" not in msg


def test_top_produced_twice_names_both_layers():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip1, type: InnerProduct, num_output: 3, top: h}
          - {name: ip2, type: InnerProduct, num_output: 3, bottom: data, top: h}
        """
    msg = build_error(text)
    assert msg.startswith(where(text, "name: ip2") + ": layers[2] (ip2): ")
    assert 'top blob "h" is already produced by layer ip1 (' + where(text, "name: ip1") in msg


def test_same_top_twice_in_one_layer():
    text = """
        layers:
          - {name: data, type: Input, shape: [[2, 3], [2, 3]], top: [a, a]}
        """
    assert "the same top is listed twice: ['a', 'a']" in build_error(text)


def test_duplicate_layer_names_are_an_error_within_a_phase_only():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip, type: InnerProduct, num_output: 3}
          - {name: ip, type: InnerProduct, num_output: 4}
        """
    msg = build_error(text)
    assert msg.startswith("<string>:5:5: layers[2]: duplicate layer name \"ip\"")
    assert "first at <string>:4:5" in msg
    # Caffe's habit: one data layer per phase, both called `data`
    ok = """
        layers:
          - {name: data, type: Input, shape: [2, 3], include: {phase: train}}
          - {name: data, type: Input, shape: [5, 3], include: {phase: test}}
          - {name: ip, type: InnerProduct, num_output: 3}
        """
    assert build(ok, "train").blobs["ip"].shape == (2, 3)
    assert build(ok, "test").blobs["ip"].shape == (5, 3)


def test_cycle_is_an_error_naming_its_layers():
    text = """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: a, type: Eltwise, bottom: [data, b], top: a}
          - {name: b, type: ReLU, bottom: a, top: b}
        """
    msg = build_error(text)
    assert "cycle" in msg
    assert f"a ({where(text, 'name: a')})" in msg and f"b ({where(text, 'name: b')})" in msg
    assert "data (" not in msg


def test_layers_listed_out_of_order_are_sorted_topologically():
    shuffled = """
        layers:
          - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
          - {name: ip2, type: InnerProduct, num_output: 3, bottom: relu1}
          - {name: relu1, type: ReLU, bottom: ip1}
          - {name: ip1, type: InnerProduct, num_output: 5, bottom: data}
          - {name: data, type: Input, shape: [[4, 3], [4]], top: [data, label]}
        """
    net = build(shuffled, dtype="float64")
    assert [l.name for l in net.layers] == ["data", "ip1", "relu1", "ip2", "loss"]
    ref = build(MLP, dtype="float64")
    for layer, params in ref.params.items():
        for pname, p in params.items():
            net.params[layer][pname].data[...] = p.data
    rng = np.random.default_rng(0)
    feed = {"data": rng.normal(size=(4, 3)), "label": np.array([0, 2, 1, 2])}
    assert net.forward(feed)["loss"] == ref.forward(feed)["loss"]
    p = ref.params
    h = np.maximum(feed["data"] @ p["ip1"]["weight"].data.T + p["ip1"]["bias"].data, 0)
    s = h @ p["ip2"]["weight"].data.T + p["ip2"]["bias"].data
    logp = s - s.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    expected = -logp[np.arange(4), feed["label"]].mean()
    np.testing.assert_allclose(net.forward(feed)["loss"], expected, rtol=1e-12)


# ---- in-place, shapes ---------------------------------------------------------------------

def test_in_place_activation_forward_and_backward():
    net = build("""
        force_backward: true
        dtype: float64
        layers:
          - {name: x, type: Input, shape: [3, 4]}
          - {name: ip1, type: InnerProduct, num_output: 5,
             bias_filler: {type: uniform, min: -1, max: 1}}
          - {name: relu1, type: ReLU, bottom: ip1, top: ip1, negative_slope: 0.1}
          - {name: ip2, type: InnerProduct, num_output: 2, bottom: ip1}
        """)
    assert net.layer_by_name["relu1"].top_names == ["ip1"]
    assert net.layer_by_name["ip2"].bottom_names == ["ip1"]
    assert net.outputs == ["ip2"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4))
    out = net.forward({"x": x})["ip2"]
    w1, b1 = net.params["ip1"]["weight"].data, net.params["ip1"]["bias"].data
    w2, b2 = net.params["ip2"]["weight"].data, net.params["ip2"]["bias"].data
    z = x @ w1.T + b1
    h = leaky(z, 0.1)
    np.testing.assert_allclose(net.blobs["ip1"].data, h, rtol=1e-12)  # the newest version
    np.testing.assert_allclose(out, h @ w2.T + b2, rtol=1e-12)

    dout = rng.normal(size=(3, 2))
    net.backward({"ip2": dout})
    dh = dout @ w2
    dz = dh * np.where(z > 0, 1.0, 0.1)
    np.testing.assert_allclose(net.params["ip2"]["weight"].grad, dout.T @ h, rtol=1e-12)
    np.testing.assert_allclose(net.params["ip2"]["bias"].grad, dout.sum(0), rtol=1e-12)
    np.testing.assert_allclose(net.params["ip1"]["weight"].grad, dz.T @ x, rtol=1e-12)
    np.testing.assert_allclose(net.params["ip1"]["bias"].grad, dz.sum(0), rtol=1e-12)
    np.testing.assert_allclose(net.blobs["x"].diff, dz @ w1, rtol=1e-12)


def test_every_shape_is_inferred_at_build_time():
    net = build("""
        layers:
          - {name: data, type: Input, shape: [[2, 3, 4, 5], [2]], top: [data, label]}
          - {name: ip1, type: InnerProduct, num_output: 7}
          - {name: ip_axis, type: InnerProduct, num_output: 6, bottom: data, axis: 2}
          - {name: relu, type: ReLU, bottom: ip1}
          - {name: sig, type: Sigmoid}
          - {name: sum, type: Eltwise, bottom: [relu, sig]}
          - {name: ip2, type: InnerProduct, num_output: 3}
          - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
          - {name: hinge, type: SVMLoss, bottom: [ip2, label]}
          - {name: acc, type: Accuracy, bottom: [ip2, label]}
        """)
    shapes = {name: blob.shape for name, blob in net.blobs.items()}
    assert shapes == {"data": (2, 3, 4, 5), "label": (2,), "ip1": (2, 7), "ip_axis": (2, 3, 6),
                      "relu": (2, 7), "sig": (2, 7), "sum": (2, 7), "ip2": (2, 3),
                      "loss": (), "hinge": (), "acc": ()}
    params = {f"{l}.{p}": v.shape for l, ps in net.params.items() for p, v in ps.items()}
    assert params == {"ip1.weight": (7, 60), "ip1.bias": (7,), "ip_axis.weight": (6, 20),
                      "ip_axis.bias": (6,), "ip2.weight": (3, 7), "ip2.bias": (3,)}
    rng = np.random.default_rng(0)
    net.forward({"data": rng.normal(size=(2, 3, 4, 5)), "label": [0, 2]})
    for name, blob in net.blobs.items():
        assert blob.data.shape == shapes[name], name


def test_shape_mismatch_between_layers_is_found_at_build_time():
    text = """
        layers:
          - {name: data, type: Input, shape: [[4, 3], [5]], top: [data, label]}
          - {name: ip, type: InnerProduct, num_output: 3}
          - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
        """
    msg = build_error(text)
    assert msg.startswith(where(text, "name: loss") + ": layers[2] (loss): ")
    assert "(5,)" in msg and "(4, 3)" in msg
    assert "layer loss (SoftmaxLoss)" not in msg  # the layer is named once


# ---- fan-out ------------------------------------------------------------------------------

FAN_OUT = """
    dtype: float64
    force_backward: true
    layers:
      - {name: x, type: Input, shape: [[4, 3], [4]], top: [x, label]}
      - {name: ip1, type: InnerProduct, num_output: 5, top: h}
      - {name: ipa, type: InnerProduct, num_output: 3, bottom: h}
      - {name: ipb, type: InnerProduct, num_output: 3, bottom: h}
      - {name: relu, type: ReLU, bottom: h, negative_slope: 0.2}
      - {name: lossa, type: SoftmaxLoss, bottom: [ipa, label], loss_weight: 0.7}
      - {name: lossb, type: SVMLoss, bottom: [ipb, label], loss_weight: 1.9}
    """


def softmax_loss_grad(s, y):
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def svm_loss_grad(s, y, margin=1.0):
    n = len(y)
    t = s - s[np.arange(n), y][:, None] + margin
    g = (t > 0).astype(float)
    g[np.arange(n), y] = 0
    g[np.arange(n), y] = -g.sum(1)
    return g / n


def test_a_blob_feeding_several_layers_gets_the_sum_of_their_diffs():
    net = build(FAN_OUT)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4, 3)), np.array([0, 1, 2, 1])
    net.forward({"x": x, "label": y})
    assert set(net.outputs) == {"relu", "lossa", "lossb"}
    net.backward()
    p = {f"{l}.{n}": v.data for l, ps in net.params.items() for n, v in ps.items()}
    h = x @ p["ip1.weight"].T + p["ip1.bias"]
    sa, sb = h @ p["ipa.weight"].T + p["ipa.bias"], h @ p["ipb.weight"].T + p["ipb.bias"]
    dsa, dsb = 0.7 * softmax_loss_grad(sa, y), 1.9 * svm_loss_grad(sb, y)
    dh = dsa @ p["ipa.weight"] + dsb @ p["ipb.weight"]  # relu is an output: no diff from it
    np.testing.assert_allclose(net.blobs["h"].diff, dh, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(net.params["ip1"]["weight"].grad, dh.T @ x, rtol=1e-10)
    np.testing.assert_allclose(net.params["ip1"]["bias"].grad, dh.sum(0), rtol=1e-10)
    np.testing.assert_allclose(net.blobs["x"].diff, dh @ p["ip1.weight"], rtol=1e-10)

    # from given diffs: all three consumers of h contribute
    dr = rng.normal(size=(4, 5))
    net.backward({"relu": dr, "lossa": 1.0, "lossb": 1.0})
    dh3 = softmax_loss_grad(sa, y) @ p["ipa.weight"] + svm_loss_grad(sb, y) @ p["ipb.weight"] \
        + dr * np.where(h > 0, 1.0, 0.2)
    np.testing.assert_allclose(net.blobs["h"].diff, dh3, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(net.params["ip1"]["weight"].grad, dh3.T @ x, rtol=1e-10)


def test_the_same_blob_twice_as_bottoms_of_one_layer():
    net = build("""
        dtype: float64
        force_backward: true
        layers:
          - {name: x, type: Input, shape: [2, 3]}
          - {name: sq, type: Eltwise, bottom: [x, x], operation: PROD}
        """)
    x = np.array([[1.5, -2.0, 0.5], [3.0, -0.25, 2.0]])
    np.testing.assert_allclose(net.forward({"x": x})["sq"], x * x)
    dout = np.arange(6.0).reshape(2, 3) - 2
    net.backward({"sq": dout})
    np.testing.assert_allclose(net.blobs["x"].diff, 2 * x * dout)


# ---- force_backward -----------------------------------------------------------------------

@pytest.mark.parametrize("force", [True, False])
def test_input_diffs_only_with_force_backward(force):
    net = build(f"""
        force_backward: {str(force).lower()}
        dtype: float64
        layers:
          - {{name: x, type: Input, shape: [[4, 3], [4]], top: [x, label]}}
          - {{name: ip, type: InnerProduct, num_output: 3}}
          - {{name: loss, type: SoftmaxLoss, bottom: [ip, label]}}
        """)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(4, 3)), np.array([2, 0, 1, 1])
    net.forward({"x": x, "label": y})
    net.backward()
    w, b = net.params["ip"]["weight"].data, net.params["ip"]["bias"].data
    ds = softmax_loss_grad(x @ w.T + b, y)
    np.testing.assert_allclose(net.params["ip"]["weight"].grad, ds.T @ x, rtol=1e-10)
    assert net.blobs["label"].diff is None  # labels never get a diff
    if force:
        np.testing.assert_allclose(net.blobs["x"].diff, ds @ w, rtol=1e-10)
    else:
        assert net.blobs["x"].diff is None


# ---- dtype --------------------------------------------------------------------------------

def test_dtype_float32_by_default_float64_on_request():
    f32 = build(MLP)
    f64 = build("dtype: float64\n" + textwrap.dedent(MLP))
    over = build(MLP, dtype="float64")
    for net, dtype in ((f32, np.float32), (f64, np.float64), (over, np.float64)):
        assert net.dtype == dtype
        for ps in net.params.values():
            for p in ps.values():
                assert p.data.dtype == dtype and p.grad.dtype == dtype
    for layer, ps in f32.params.items():
        for name, p in ps.items():
            f64.params[layer][name].data[...] = p.data
    rng = np.random.default_rng(2)
    feed = {"data": rng.normal(size=(4, 3)), "label": np.array([0, 1, 2, 0])}
    out32, out64 = f32.forward(feed), f64.forward(feed)
    assert out32["loss"].dtype == np.float32 and out64["loss"].dtype == np.float64
    for name in ("data", "ip1", "relu1", "ip2"):
        assert f32.blobs[name].data.dtype == np.float32
    np.testing.assert_allclose(out32["loss"], out64["loss"], rtol=1e-5)
    f32.backward()
    f64.backward()
    np.testing.assert_allclose(f32.params["ip1"]["weight"].grad,
                               f64.params["ip1"]["weight"].grad, rtol=1e-4, atol=1e-6)


# ---- the Python API -----------------------------------------------------------------------

LINEAR = """
    dtype: float64
    layers:
      - {name: x, type: Input, shape: [2, 3]}
      - {name: ip, type: InnerProduct, num_output: 4, bias_filler: {type: gaussian, std: 1}}
      - {name: sig, type: Sigmoid}
    """


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_forward_feeds_inputs_and_returns_copies_of_the_outputs():
    net = build(LINEAR)
    x = np.random.default_rng(0).normal(size=(2, 3))
    out = net.forward({"x": x})
    assert list(out) == ["sig"]
    w, b = net.params["ip"]["weight"].data, net.params["ip"]["bias"].data
    np.testing.assert_allclose(out["sig"], sigmoid(x @ w.T + b), rtol=1e-12)
    np.testing.assert_array_equal(net.blobs["x"].data, x)
    out["sig"][...] = 7.0
    assert not np.any(net.blobs["sig"].data == 7.0)
    x[...] = 0  # the net keeps its own copy of what was fed
    np.testing.assert_allclose(net.forward()["sig"], sigmoid(net.blobs["ip"].data))
    assert np.all(net.blobs["x"].data != 0)


def test_feeding_errors():
    net = build(LINEAR)
    with pytest.raises(UserError, match=r'blob "xx" is not an input of net net \(did you mean '
                                        r'"x"\?\); inputs: x'):
        net.forward({"xx": np.zeros((2, 3))})
    x = np.random.default_rng(0).normal(size=(2, 3))
    before = net.forward({"x": x})["sig"]
    # (2, 3, 1) flattens to the 3 inputs InnerProduct was made for: the net takes it
    np.testing.assert_array_equal(net.forward({"x": x[:, :, None]})["sig"], before)
    with pytest.raises(UserError, match=r'cannot take input "x" \(2, 4\) \(it has \(2, 3, 1\)\)'
                                        r'.*layers\[1\] \(ip\): bottom shape \(2, 4\) has 4 inputs.*'
                                        r'made for 3.*keeps its previous shapes'):
        net.forward({"x": np.zeros((2, 4))})
    np.testing.assert_array_equal(net.forward()["sig"], before)  # as it was


def test_backward_from_given_diffs_and_zeroing_of_param_grads():
    net = build(LINEAR)
    rng = np.random.default_rng(1)
    x, d = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    net.forward({"x": x})
    net.backward({"sig": d})
    y = net.blobs["sig"].data
    dz = d * y * (1 - y)
    np.testing.assert_allclose(net.blobs["sig"].diff, d)
    np.testing.assert_allclose(net.blobs["ip"].diff, dz, rtol=1e-12)
    np.testing.assert_allclose(net.params["ip"]["weight"].grad, dz.T @ x, rtol=1e-12)
    np.testing.assert_allclose(net.params["ip"]["bias"].grad, dz.sum(0), rtol=1e-12)
    net.backward({"sig": d})  # grads are zeroed first: the same values, not twice them
    np.testing.assert_allclose(net.params["ip"]["weight"].grad, dz.T @ x, rtol=1e-12)
    net.backward({"sig": d}, accumulate=True)
    np.testing.assert_allclose(net.params["ip"]["weight"].grad, 2 * dz.T @ x, rtol=1e-12)
    with pytest.raises(UserError, match='no blob "sgi" in net net \\(did you mean "sig"'):
        net.backward({"sgi": d})
    with pytest.raises(UserError, match=r'diff of "sig" has shape \(4, 2\), the blob has '
                                        r'shape \(2, 4\)'):
        net.backward({"sig": d.T})


def test_backward_from_the_losses_is_scaled_by_loss_weight():
    def grads(weight):
        net = build(f"""
            dtype: float64
            layers:
              - {{name: x, type: Input, shape: [[3, 2], [3]], top: [x, label]}}
              - {{name: ip, type: InnerProduct, num_output: 3}}
              - {{name: loss, type: SoftmaxLoss, bottom: [ip, label], loss_weight: {weight}}}
            """)
        out = net.forward({"x": [[1, 2], [3, -1], [0.5, 0]], "label": [0, 2, 1]})
        net.backward()
        return out["loss"], net.loss, net.params["ip"]["weight"].grad.copy()

    loss1, total1, g1 = grads(1)
    loss3, total3, g3 = grads(2.5)
    assert loss1 == loss3 and total1 == loss1 and total3 == pytest.approx(2.5 * loss1)
    np.testing.assert_allclose(g3, 2.5 * g1, rtol=1e-12)
    assert np.abs(g1).sum() > 0


def test_feeding_another_batch_size_reshapes_the_net():
    net = build(LINEAR)
    w, b = net.params["ip"]["weight"], net.params["ip"]["bias"]
    rng = np.random.default_rng(4)
    for n in (5, 1, 2):
        x = rng.normal(size=(n, 3))
        out = net.forward({"x": x})["sig"]
        assert out.shape == (n, 4) and net.blobs["ip"].shape == (n, 4)
        np.testing.assert_allclose(out, sigmoid(x @ w.data.T + b.data), rtol=1e-12)
        d = rng.normal(size=(n, 4))
        net.backward({"sig": d})
        dz = d * out * (1 - out)
        np.testing.assert_allclose(net.params["ip"]["weight"].grad, dz.T @ x, rtol=1e-12)
    assert net.params["ip"]["weight"] is w  # params survive a reshape


def test_feeding_a_new_shape_does_not_change_the_config():
    cfg = parse_net(load_yaml_text(textwrap.dedent(LINEAR)))
    first = lf.Net(cfg)
    first.forward({"x": np.ones((7, 3))})
    assert lf.Net(cfg).blobs["x"].shape == (2, 3)


def test_param_and_blob_access():
    net = build(MLP)
    weight = net.params["ip1"]["weight"]
    assert weight.data.shape == (5, 3) and weight.grad.shape == (5, 3)
    assert not weight.grad.any()
    assert set(net.params) == {"ip1", "ip2"}
    assert set(net.params["ip2"]) == {"weight", "bias"}
    assert set(net.blobs) == {"data", "label", "ip1", "relu1", "ip2", "loss"}
    net.params["ip1"]["weight"].data[...] = 0  # the live array: the next forward sees it
    net.params["ip1"]["bias"].data[...] = 1
    net.forward({"data": np.ones((4, 3)), "label": np.zeros(4)})
    np.testing.assert_array_equal(net.blobs["ip1"].data, np.ones((4, 5)))
    net.backward()
    assert net.blobs["ip2"].diff.shape == (4, 3)
    assert net.blobs["loss"].diff == 1.0
    assert weight.grad.any()
    assert net.state_dict().keys() == {"ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias"}


def test_forward_backward_gives_the_same_grads_when_called_twice():
    """Like backward(), forward_backward() zeroes the param grads first: calling it twice on
    the same batch must not double them."""
    net = lf.Net.from_string("""
layers:
  - {name: in, type: Input, top: [x, y], shape: [[3, 4], [3]]}
  - {name: ip, type: InnerProduct, bottom: x, num_output: 2}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, y]}
""", dtype="float64")
    net.feed({"x": np.random.default_rng(0).normal(size=(3, 4)), "y": [0, 1, 1]})
    first = net.forward_backward()
    grad = net.params["ip"]["weight"].grad.copy()
    assert np.any(grad != 0)
    assert net.forward_backward() == first
    np.testing.assert_array_equal(net.params["ip"]["weight"].grad, grad)
