"""Every model in models/ (globbed: a new model is covered when it lands) exported to ONNX with
random weights: ONNX Runtime's output equals the deploy net's forward within 1e-5 on random raw
inputs of two batch sizes. Then `layerflow export` as a user runs it, and its errors.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import layerflow as lf  # noqa: E402
from layerflow import UserError  # noqa: E402
from layerflow.onnx import to_onnx  # noqa: E402

from onnx_parity import max_diff, randomize_params, session  # noqa: E402
from plugin_support import MODELS, model_nets, use_site  # noqa: E402

NETS = model_nets()  # every net YAML of models/ (net.yaml, a hand-written deploy.yaml...)


@pytest.fixture(autouse=True)
def example_plugin_installed(swish_site):
    use_site(swish_site)


def raw_inputs(net, seed: int):
    """Raw samples as a data set stores them: 0-255 where the net scales its input (images),
    else standard normal."""
    transform = [layer for layer in net.layers if layer.type == "Transform"]
    high = 255.0 if transform and transform[0].p.scale < 0.1 else None

    def make(n):
        rng = np.random.default_rng([seed, n])
        out = {}
        for name in net.inputs:
            shape = (n, *net.blobs[name].shape[1:])
            x = rng.uniform(0, high, shape) if high else rng.normal(0, 1, shape)
            out[name] = x.astype(np.float32)
        return out
    return make


def test_models_are_found():
    assert {p.parent.name for p in NETS} >= {"spiral", "fashion_mnist_mlp", "plugin_example"}


@pytest.mark.parametrize("path", NETS, ids=[f"{p.parent.name}/{p.name}" for p in NETS])
def test_model_onnx_matches_deploy_forward(path, record_property):
    net = lf.deploy_net(path)
    randomize_params(net, seed=3)
    model = to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init.name for init in model.graph.initializer if init.name not in used]
    assert not unused, f"initializers no node reads (ONNX Runtime warns about each): {unused}"
    worst = max_diff(net, model, raw_inputs(net, seed=4), batches=(1, 7))
    record_property("max_abs_diff", worst)
    print(f"{path.parent.name}/{path.name}: max |onnx - layerflow| = {worst:.3g}")


def test_transform_is_the_first_nodes():
    net = lf.deploy_net(MODELS / "fashion_mnist_mlp" / "net.yaml")
    model = to_onnx(net)
    first = model.graph.node[0]
    assert first.op_type == "Mul" and first.input[0] == "data"
    assert [i.name for i in model.graph.input] == ["data"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, 28, 28]


def trained(tmp_path, net_path):
    net = lf.deploy_net(net_path)
    randomize_params(net, seed=5)
    weights = tmp_path / "w.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in net.state_dict().items()}, str(weights))
    return net, weights


def test_export_command_writes_a_model_onnx_runtime_runs(cli, tmp_path):
    path = MODELS / "spiral" / "net.yaml"
    net, weights = trained(tmp_path, path)
    out = tmp_path / "spiral.onnx"
    r = cli("export", path, "--weights", weights, "-o", out)
    assert r.code == 0, r.err
    assert r.out.startswith(f"wrote {out} (opset 17, ")
    assert "inputs data ('N', 2); outputs prob ('N', 3)" in r.out
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    got = session(onnx.load(str(out))).run(None, {"data": x})[0]
    np.testing.assert_allclose(got, net.forward({"data": x})["prob"], rtol=1e-5, atol=1e-6)


def test_export_json(cli, tmp_path):
    path = MODELS / "spiral" / "net.yaml"
    _, weights = trained(tmp_path, path)
    r = cli("export", path, "--weights", weights, "-o", tmp_path / "m.onnx", "--json",
            "--opset", "18")
    assert r.code == 0, r.err
    import json
    result = json.loads(r.out)
    assert result["opset"] == 18 and result["outputs"] == {"prob": ["N", 3]}
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 18


PLUGIN_NET = """\
name: p
layers:
  - {name: data, type: Input, shape: [2, 3]}
  - {name: odd, type: Oddity}
  - {name: ip, type: InnerProduct, num_output: 2}
"""

ODDITY = """\
import numpy as np
from layerflow import Layer, register_layer

@register_layer
class Oddity(Layer):
    def reshape(self, shapes):
        return [tuple(shapes[0])]
    def forward(self, bottoms):
        return [bottoms[0] * 2]
    def backward(self, diffs):
        return [diffs[0] * 2]
"""


def test_layer_without_mapping_is_an_error_naming_it(tmp_path):
    (tmp_path / "oddity.py").write_text(ODDITY)
    net = lf.Net.from_string(PLUGIN_NET, phase="test", plugins=[str(tmp_path / "oddity.py")])
    with pytest.raises(UserError, match=r"net p: no ONNX mapping for layer odd \(Oddity\); a "
                                        r"plugin registers one with "
                                        r"@layerflow.register_onnx\(\"<type>\"\)"):
        to_onnx(net)


def test_plugin_registers_its_mapping(tmp_path):
    (tmp_path / "oddity.py").write_text(ODDITY + """
from layerflow import register_onnx

@register_onnx("Oddity")
def oddity(layer, g):
    g.node("Mul", [g.bottoms[0], g.const(2.0)], g.tops)
""")
    net = lf.Net.from_string(PLUGIN_NET, phase="test", plugins=[str(tmp_path / "oddity.py")])
    randomize_params(net)
    model = to_onnx(net)
    from layerflow.registry import ONNX
    assert ONNX.origin_of("Oddity").startswith("plugin file")
    max_diff(net, model, lambda n: {"data": np.ones((n, 3), np.float32) * np.float32([1, 2, 3])})


def test_mapping_that_forgets_a_top(tmp_path):
    (tmp_path / "oddity.py").write_text(ODDITY + """
from layerflow import register_onnx

@register_onnx("Oddity")
def oddity(layer, g):
    g.node("Mul", [g.bottoms[0], g.const(2.0)])
""")
    net = lf.Net.from_string(PLUGIN_NET, phase="test", plugins=[str(tmp_path / "oddity.py")])
    with pytest.raises(UserError, match=r"layer odd \(Oddity\): its ONNX mapping \(plugin file "
                                        r".*oddity.py\) made no value for top\(s\) odd"):
        to_onnx(net)


def test_missing_onnx_package_names_the_extra(monkeypatch, tmp_path, cli):
    monkeypatch.setitem(sys.modules, "onnx", None)
    path = MODELS / "spiral" / "net.yaml"
    _, weights = trained(tmp_path, path)
    r = cli("export", path, "--weights", weights, "-o", tmp_path / "m.onnx")
    assert r.code == 2
    assert r.err == ("error: exporting to ONNX needs the onnx package: pip install "
                     "'layerflow[onnx]'\n")
    assert not (tmp_path / "m.onnx").exists()


def test_old_opset_and_missing_folder(cli, tmp_path):
    path = MODELS / "spiral" / "net.yaml"
    _, weights = trained(tmp_path, path)
    r = cli("export", path, "--weights", weights, "-o", tmp_path / "m.onnx", "--opset", "13")
    assert r.code == 2 and "--opset 13: the export needs opset 17 or newer" in r.err
    r = cli("export", path, "--weights", weights, "-o", tmp_path / "no" / "m.onnx")
    assert r.code == 2 and f"{tmp_path / 'no' / 'm.onnx'}: folder {tmp_path / 'no'} does " \
                           f"not exist" in r.err
