"""Net .prototxt -> YAML: every field carried over, Caffe's defaults made explicit, legacy V1
and V0 nets and `input:` fields upgraded as Caffe does, NetStateRules and propagate_down,
errors at the prototxt's lines, and the export back (YAML -> prototxt -> YAML, same net)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from layerflow.config import load_yaml, parse_net
from layerflow.errors import UserError
from layerflow.net import Net


def layers_of(path):
    return {l["name"]: l for l in load_yaml(path).data["layers"]}


def test_every_field_and_generic_key_carried_over(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        name: "full"
        layer { name: "in" type: "Input" top: "x" top: "y"
                input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
                param { name: "w_shared" lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
                inner_product_param { num_output: 3 axis: 1
                  weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0.1 } } }
        layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" relu_param { negative_slope: 0.1 engine: CAFFE } }
        layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.3 }
                include { phase: TRAIN } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss"
                loss_weight: 2 propagate_down: true propagate_down: false
                loss_param { ignore_label: 1 normalization: BATCH_SIZE } softmax_param { axis: 1 } }
        layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "y" top: "acc"
                accuracy_param { top_k: 2 } exclude { phase: TRAIN stage: "deploy" min_level: 1 } }
    """)
    L = layers_of(path)
    assert L["in"] == {"name": "in", "type": "Input", "top": ["x", "y"], "shape": [[4, 6], [4]]}
    assert L["ip"]["param"] == [{"name": "w_shared", "lr_mult": 1.0, "decay_mult": 1.0},
                                {"lr_mult": 2.0, "decay_mult": 0.0}]
    assert L["ip"]["weight_filler"] == {"type": "gaussian", "std": 0.01}
    assert L["ip"]["bias_filler"] == {"type": "constant", "value": 0.1}
    assert L["ip"]["num_output"] == 3 and L["ip"]["axis"] == 1
    assert L["relu"]["negative_slope"] == 0.1 and "engine" not in L["relu"]
    assert L["drop"]["dropout_ratio"] == 0.3 and L["drop"]["include"] == [{"phase": "train"}]
    loss = L["loss"]
    assert loss["type"] == "SoftmaxLoss" and loss["loss_weight"] == [2.0]
    assert loss["propagate_down"] == [True, False]
    assert (loss["ignore_label"], loss["normalization"], loss["axis"]) == (1, "BATCH_SIZE", 1)
    assert L["acc"]["top_k"] == 2
    assert L["acc"]["exclude"] == [{"phase": "train", "min_level": 1, "stage": ["deploy"]}]
    Net(parse_net(load_yaml(path)), "train")  # and it builds


def test_caffe_default_fillers_are_written_explicitly(write, tmp_path):
    """Caffe's unset filler is constant 0; layerflow's InnerProduct defaults to xavier."""
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 4 } }
        layer { name: "sc" type: "Scale" bottom: "ip" top: "sc" scale_param { bias_term: true } }
        layer { name: "pr" type: "PReLU" bottom: "sc" top: "pr" }
    """)
    L = layers_of(path)
    assert L["ip"]["weight_filler"] == {"type": "constant", "value": 0.0}
    assert L["ip"]["bias_filler"] == {"type": "constant", "value": 0.0}
    assert L["sc"]["filler"] == {"type": "constant", "value": 1.0}
    assert L["sc"]["bias_filler"] == {"type": "constant", "value": 0.0}
    assert L["pr"]["filler"] == {"type": "constant", "value": 0.25}
    net = Net(parse_net(load_yaml(path)), "test")
    assert not net.params["ip"]["weight"].data.any()  # Caffe's all-zero weights
    np.testing.assert_array_equal(net.params["pr"]["weight"].data, 0.25)
    np.testing.assert_array_equal(net.params["sc"]["weight"].data, 1.0)


def test_sparse_gaussian_filler_as_in_the_autoencoder(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 400 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
                inner_product_param { num_output: 200 weight_filler { type: "gaussian" std: 1 sparse: 15 } } }
    """)
    w = Net(parse_net(load_yaml(path)), "test").params["ip"]["weight"].data
    frac = np.count_nonzero(w) / w.size
    assert abs(frac - 15 / 200) < 0.01, frac  # Bernoulli(sparse / shape[0]) per value


def test_v1_layers_upgrade_like_caffe(write, tmp_path):
    path = write(tmp_path, "v1.prototxt", """
        name: "old"
        input: "data"
        input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1
        layers { name: "ip1" type: INNER_PRODUCT bottom: "data" top: "ip1"
                 blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 param: "shared_w"
                 inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
        layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip1" bottom: "label" top: "loss"
                 include { phase: TRAIN } }
        layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" include { phase: TEST } }
    """)
    data = load_yaml(path).data
    assert [l["name"] for l in data["layers"]] == ["input", "ip1", "relu1", "loss", "prob"]
    inp, ip1 = data["layers"][0], data["layers"][1]
    assert inp == {"name": "input", "type": "Input", "top": ["data"], "shape": [[2, 3, 1, 1]]}
    assert ip1["type"] == "InnerProduct" and ip1["num_output"] == 5
    assert ip1["param"] == [{"name": "shared_w", "lr_mult": 1.0, "decay_mult": 1.0},
                            {"lr_mult": 2.0, "decay_mult": 0.0}]
    assert data["layers"][3]["type"] == "SoftmaxLoss"
    net = Net(parse_net(load_yaml(path)), "test")
    assert net.blobs["prob"].shape == (2, 5)


def test_v1_data_layer_transform_fields_move_to_transform_param(write, tmp_path, lmdb_db):
    lmdb_db(tmp_path / "db", np.zeros((2, 1, 2, 2), np.uint8), [0, 1])
    path = write(tmp_path, "v1data.prototxt", f"""
        layers {{ name: "mnist" type: DATA top: "data" top: "label"
                 data_param {{ source: "{tmp_path / 'db'}" backend: LMDB batch_size: 2 scale: 0.00390625 }} }}
    """)
    d = layers_of(path)["mnist"]
    assert d["type"] == "Data" and d["backend"] == "lmdb" and d["scale"] == 0.00390625
    assert d["source"] == str(tmp_path / "db")


def test_v0_net_upgrades_and_folds_padding_layers(write, tmp_path):
    path = write(tmp_path, "v0.prototxt", """
        name: "v0net"
        input: "data"
        input_dim: 1 input_dim: 4 input_dim: 1 input_dim: 1
        layers { layer { name: "fc" type: "innerproduct" num_output: 3 biasterm: false
                          weight_filler { type: "constant" value: 0.5 } blobs_lr: 2 }
                 bottom: "data" top: "fc" }
        layers { layer { name: "relu" type: "relu" } bottom: "fc" top: "fc" }
        layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.25 } bottom: "fc" top: "fc" }
    """)
    L = layers_of(path)
    assert L["fc"]["type"] == "InnerProduct" and L["fc"]["bias_term"] is False
    assert L["fc"]["weight_filler"] == {"type": "constant", "value": 0.5}
    assert L["fc"]["param"] == [{"lr_mult": 2.0, "decay_mult": 1.0}]
    assert L["drop"]["dropout_ratio"] == 0.25
    net = Net(parse_net(load_yaml(path)), "test")
    out = net.forward({"data": np.ones((1, 4, 1, 1))})
    np.testing.assert_allclose(out["fc"], 2.0)


def test_v0_padding_layer_folds_into_the_conv_that_reads_it():
    from layerflow.caffe.proto import messages
    from layerflow.caffe.upgrade import upgrade_net
    from google.protobuf import text_format

    net = text_format.Parse("""
        layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
        layers { layer { name: "conv1" type: "conv" num_output: 8 kernelsize: 3 stride: 2 }
                 bottom: "pad1" top: "conv1" }
        layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
                 bottom: "conv1" top: "pool1" }
    """, messages().NetParameter())
    upgrade_net(net)
    conv, pool = net.layer
    assert conv.type == "Convolution" and list(conv.bottom) == ["data"]
    assert list(conv.convolution_param.pad) == [2] and list(conv.convolution_param.kernel_size) == [3]
    assert list(conv.convolution_param.stride) == [2]
    assert pool.type == "Pooling" and pool.pooling_param.pool == 1 and pool.pooling_param.kernel_size == 3


def test_input_shape_and_batch_norm_param_upgrades(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        input: "a" input_shape { dim: 2 dim: 3 }
        input: "b" input_shape { dim: 2 dim: 3 }
        layer { name: "bn" type: "BatchNorm" bottom: "a" top: "bn"
                param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }
        layer { name: "sum" type: "Eltwise" bottom: "bn" bottom: "b" top: "sum" eltwise_param { operation: MAX } }
    """)
    L = layers_of(path)
    assert L["input"] == {"name": "input", "type": "Input", "top": ["a", "b"],
                          "shape": [[2, 3], [2, 3]]}
    assert L["bn"]["param"] == [{"lr_mult": 0.0, "decay_mult": 0.0}] * 3
    assert L["sum"]["operation"] == "MAX"


def test_input_without_shape_is_dropped_as_in_caffe(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        input: "data"
        layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
    """)
    assert [l["name"] for l in load_yaml(path).data["layers"]] == ["in"]


# ---- NetStateRule and propagate_down ---------------------------------------------------------

RULES = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "always" type: "ReLU" bottom: "x" top: "a" }
    layer { name: "trainonly" type: "ReLU" bottom: "x" top: "t" include { phase: TRAIN } }
    layer { name: "stage_a" type: "ReLU" bottom: "x" top: "sa" include { stage: "a" } }
    layer { name: "stages_ab" type: "ReLU" bottom: "x" top: "sab" include { stage: "a" stage: "b" } }
    layer { name: "a_or_b" type: "ReLU" bottom: "x" top: "aob" include { stage: "a" } include { stage: "b" } }
    layer { name: "not_a" type: "ReLU" bottom: "x" top: "na" include { not_stage: "a" } }
    layer { name: "lvl" type: "ReLU" bottom: "x" top: "l" include { min_level: 1 max_level: 2 } }
    layer { name: "excl" type: "ReLU" bottom: "x" top: "e" exclude { phase: TEST stage: "a" } }
"""


@pytest.mark.parametrize("phase, level, stages, want", [
    ("train", 0, (), {"always", "trainonly", "not_a", "excl"}),
    ("test", 0, (), {"always", "not_a", "excl"}),
    ("test", 0, ("a",), {"always", "stage_a", "a_or_b"}),
    ("test", 0, ("b",), {"always", "a_or_b", "not_a", "excl"}),
    ("train", 0, ("a", "b"), {"always", "trainonly", "stage_a", "stages_ab", "a_or_b", "excl"}),
    ("test", 1, (), {"always", "not_a", "lvl", "excl"}),
    ("test", 2, (), {"always", "not_a", "lvl", "excl"}),
    ("test", 3, (), {"always", "not_a", "excl"}),
])
def test_net_state_rules_as_caffe(write, tmp_path, phase, level, stages, want):
    path = write(tmp_path, "rules.prototxt", RULES)
    net = Net(parse_net(load_yaml(path)), phase, level=level, stages=stages)
    assert {l.name for l in net.layers} - {"in"} == want


def test_rules_in_yaml_and_cli_stage_and_level(cli, tmp_path):
    (tmp_path / "net.yaml").write_text(yaml.safe_dump({"name": "r", "layers": [
        {"name": "in", "type": "Input", "shape": [2, 3]},
        {"name": "deep", "type": "ReLU", "bottom": "in", "include": {"stage": "deploy", "min_level": 2}},
        {"name": "shallow", "type": "TanH", "bottom": "in", "exclude": {"stage": "deploy"}},
    ]}))
    out = cli.ok(cli.invoke("summary", tmp_path / "net.yaml", "--json")).stdout
    import json

    names = lambda out: {l["name"] for l in json.loads(out)["layers"]}  # noqa: E731
    assert names(out) == {"in", "shallow"}
    from layerflow.builder import build_net

    assert {l.name for l in build_net(tmp_path / "net.yaml", "test", stage=["deploy"],
                                      level=2).layers} == {"in", "deep"}
    assert {l.name for l in build_net(tmp_path / "net.yaml", "test", stage="x,deploy",
                                      level=1).layers} == {"in"}


def test_propagate_down_false_stops_the_diff(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        force_backward: true
        layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ipx" type: "InnerProduct" bottom: "x" top: "px" inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
        layer { name: "ipy" type: "InnerProduct" bottom: "y" top: "py" inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "px" bottom: "py" top: "loss" propagate_down: true propagate_down: false }
    """)
    net = Net(parse_net(load_yaml(path)), "train", dtype="float64")
    rng = np.random.default_rng(1)
    net.forward({"x": rng.normal(size=(2, 3)), "y": rng.normal(size=(2, 3))})
    net.backward()
    assert np.abs(net.params["ipx"]["weight"].grad).sum() > 0
    assert not net.params["ipy"]["weight"].grad.any()  # no diff reaches py
    assert net.blobs["x"].diff is not None


def test_propagate_down_count_must_match_bottoms(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "r" type: "ReLU" bottom: "x" top: "r" propagate_down: true propagate_down: false }
    """)
    with pytest.raises(UserError, match=r"net.prototxt:2:1: layers\[1\] \(r\): propagate_down "
                                        r"has 2 values for 1 bottom"):
        Net(parse_net(load_yaml(path)), "train")


# ---- errors at the prototxt's lines --------------------------------------------------------

def test_unknown_type_names_type_layer_and_line(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }
        layer {
          name: "py"
          type: "Python"
          bottom: "x" top: "y"
          python_param { module: "mymod" layer: "MyLayer" }
        }
    """)
    with pytest.raises(UserError) as err:
        load_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:4:3: layer py: type \"Python\" has no layerflow counterpart")


def test_unknown_v1_enum_type_names_layer_and_line(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layers { name: "ok" type: RELU bottom: "x" top: "x" }
        layers { name: "win" type: WINDOW_DATA top: "data" }
    """)
    with pytest.raises(UserError, match=rf"^{path}:2:22: layer win: type \"WindowData\" has no "
                                        rf"layerflow counterpart"):
        load_yaml(path)


def test_unknown_field_and_syntax_errors_name_line_and_column(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "ip" type: "InnerProduct"
          inner_product_param { num_outputs: 3 } }
    """)
    with pytest.raises(UserError, match=rf"^{path}:2:25: prototxt error: .*num_outputs"):
        load_yaml(path)
    path = write(tmp_path, "bad.prototxt", 'layer { name: "x" \n')
    with pytest.raises(UserError, match=rf"^{path}:\d+:\d+: prototxt error: Expected"):
        load_yaml(path)


def test_validation_errors_point_at_the_prototxt_field(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
          inner_product_param {
            num_output: 0
          }
        }
    """)
    with pytest.raises(UserError, match=rf"^{path}:4:5: layers\[1\] \(ip\): num_output: Input "
                                        rf"should be greater than 0"):
        parse_net(load_yaml(path))


def test_a_field_layerflow_lacks_is_reported_at_its_line(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
          inner_product_param { num_output: 2 transpose: true } }
    """)
    with pytest.raises(UserError, match=rf"^{path}:3:39: layers\[1\] \(ip\): transpose: unknown "
                                        rf"key for an InnerProduct layer"):
        parse_net(load_yaml(path))


def test_shape_errors_at_build_point_at_the_layer_line(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "in" type: "Input" top: "x" top: "y"
                input_param { shape { dim: 2 dim: 3 } shape { dim: 4 dim: 3 } } }
        layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "y" top: "s" }
    """)
    with pytest.raises(UserError, match=rf"^{path}:3:1: layers\[1\] \(sum\):"):
        Net(parse_net(load_yaml(path)), "test")


def test_both_layer_and_layers_refused_as_in_caffe(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layers { name: "a" type: RELU bottom: "x" top: "x" }
        layer { name: "b" type: "ReLU" bottom: "x" top: "x" }
    """)
    with pytest.raises(UserError, match="both `layer` and legacy `layers`"):
        load_yaml(path)


def test_data_layer_without_backend_is_leveldb_as_in_caffe(write, tmp_path):
    path = write(tmp_path, "net.prototxt", """
        layer { name: "d" type: "Data" top: "data" top: "label"
                data_param { source: "some_db" batch_size: 4 } }
    """)
    assert layers_of(path)["d"]["backend"] == "leveldb"
    with pytest.raises(UserError, match=rf"^{path}:2:9: layers\[0\] \(d\): backend: unknown "
                                        rf"source type 'leveldb'"):
        parse_net(load_yaml(path))


def test_missing_prototxt_names_the_path(tmp_path):
    with pytest.raises(UserError, match=rf"{tmp_path / 'nope.prototxt'}: .*not found"):
        load_yaml(tmp_path / "nope.prototxt")


# ---- export and round trip ----------------------------------------------------------------

def _same_net(a, b):
    from layerflow.caffe.nets import explicit_bottoms

    ca, cb = parse_net(a), parse_net(b)
    assert ca.name == cb.name and ca.force_backward == cb.force_backward
    assert len(ca.layers) == len(cb.layers)
    for la, lb, bottom in zip(ca.layers, cb.layers, explicit_bottoms(ca)):
        assert la.cls is lb.cls, (la.name, lb.name)
        sa, sb = la.spec.model_dump(), lb.spec.model_dump()
        for s in (sa, sb):  # "SoftmaxLoss" and its alias "SoftmaxWithLoss" are one class
            s.pop("type")
        # Caffe has no stack rule: the implicit bottom and top are written out on export
        if sa["top"] is None:
            sa["top"] = [la.name]
        if sa["bottom"] is None and bottom:
            sa["bottom"] = bottom
        assert sa == sb, la.name
        assert la.params.model_dump() == lb.params.model_dump(), la.name


def test_yaml_to_prototxt_to_yaml_gives_the_same_net(cli, tmp_path, lmdb_db):
    lmdb_db(tmp_path / "db", np.zeros((4, 1, 2, 2), np.uint8), [0, 1, 0, 1])
    net = {"name": "rt", "force_backward": True, "layers": [
        {"name": "data", "type": "Data", "top": ["data", "label"], "source": "db",
         "backend": "lmdb", "batch_size": 2, "scale": 0.5, "mean_value": 1.0,
         "include": {"phase": "train"}},
        {"name": "data", "type": "Data", "top": ["data", "label"], "source": "db",
         "backend": "lmdb", "batch_size": 4, "include": {"phase": "test", "stage": "val"}},
        {"name": "ip1", "type": "InnerProduct", "bottom": "data", "num_output": 5,
         "param": [{"name": "w", "lr_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]},
        {"name": "bn", "type": "BatchNorm", "use_global_stats": False, "eps": 1e-4},
        {"name": "sc", "type": "Scale", "bias_term": True},
        {"name": "prelu", "type": "PReLU", "channel_shared": True},
        {"name": "drop", "type": "Dropout", "dropout_ratio": 0.2},
        {"name": "ip2", "type": "InnerProduct", "num_output": 3,
         "weight_filler": {"type": "msra", "variance_norm": "FAN_OUT"}},
        {"name": "loss", "type": "SoftmaxLoss", "bottom": ["ip2", "label"], "loss_weight": 0.5,
         "normalization": "FULL", "propagate_down": [True, False]},
        {"name": "acc", "type": "Accuracy", "bottom": ["ip2", "label"], "top_k": 2,
         "exclude": {"phase": "train", "not_stage": "x", "max_level": 3}},
    ]}
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(net))
    cli.ok(cli.invoke("convert", tmp_path / "net.yaml", "-o", tmp_path / "caffe" / "net.prototxt"))
    text = (tmp_path / "caffe" / "net.prototxt").read_text()
    assert 'type: "SoftmaxWithLoss"' in text and "backend: LMDB" in text
    assert 'source: "../db"' in text  # relative to the written file
    assert 'type: "xavier"' in text  # layerflow's default filler, explicit for Caffe
    cli.ok(cli.invoke("convert", tmp_path / "caffe" / "net.prototxt", "-o",
                      tmp_path / "back.yaml", cwd=tmp_path / "caffe"))
    _same_net(load_yaml(tmp_path / "net.yaml"), load_yaml(tmp_path / "back.yaml"))
    back = layers_of(tmp_path / "back.yaml")
    assert back["data"]["source"] == "db"


def test_export_of_a_key_caffe_lacks_is_an_error(cli, tmp_path):
    (tmp_path / "net.yaml").write_text(yaml.safe_dump({"layers": [
        {"name": "in", "type": "Input", "shape": [2, 3]},
        {"name": "svm", "type": "SVMLoss", "bottom": ["in", "in"]}]}))
    err = cli.error(cli.invoke("convert", tmp_path / "net.yaml", "-o", tmp_path / "n.prototxt"))
    assert "layers[1] (svm): type SVMLoss has no Caffe counterpart" in err


def test_export_of_a_source_caffe_cannot_read_is_an_error(cli, tmp_path):
    (tmp_path / "net.yaml").write_text(yaml.safe_dump({"layers": [
        {"name": "data", "type": "Data", "top": ["data", "label"], "source": "spiral",
         "batch_size": 10}]}))
    err = cli.error(cli.invoke("convert", tmp_path / "net.yaml", "-o", tmp_path / "n.prototxt"))
    assert "layers[0] (data): source 'spiral' has no Caffe counterpart" in err
