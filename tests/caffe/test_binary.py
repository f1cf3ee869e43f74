"""Caffe's binary formats, with fixtures encoded by hand in the protobuf wire format (see
conftest.py): .caffemodel weights (new and V1 layers, shape and legacy dims, float and double,
packed and unpacked), Datum records, .binaryproto mean files; the conversions and --weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from layerflow.errors import UserError

MLP = """
name: "mlp"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 2 } }
"""

rng = np.random.default_rng(0)
W1 = rng.standard_normal((3, 4)).astype(np.float32)
B1 = rng.standard_normal(3).astype(np.float32)
W2 = rng.standard_normal((2, 3)).astype(np.float32)
B2 = rng.standard_normal(2).astype(np.float32)


def new_style_model(wire) -> bytes:
    """Modern layers: BlobProto shape; a Split layer without blobs, as snapshots have."""
    return wire.net("mlp", layers=[
        wire.layer("data", "Input", top=["data"]),
        wire.layer("ip1", "InnerProduct", [wire.blob(W1, shape=[3, 4]),
                                           wire.blob(B1, shape=[3], unpacked=True)],
                   bottom=["data"], top=["ip1"]),
        wire.layer("ip1_split", "Split", bottom=["ip1"], top=["a", "b"]),
        wire.layer("ip2", "InnerProduct", [wire.blob(W2, shape=[2, 3]),
                                           wire.blob(B2, shape=[2])]),
        wire.layer("extra", "InnerProduct", [wire.blob(np.ones((1, 1)), shape=[1, 1])]),
    ])


def v1_model(wire) -> bytes:
    """V1 `layers` (type enum 14 = INNER_PRODUCT) with legacy right-aligned 4-D dims, one
    blob in double precision."""
    return wire.net("mlp", v1_layers=[
        wire.v1_layer("ip1", 14, [wire.blob(W1, legacy=[1, 1, 3, 4]),
                                  wire.blob(B1, legacy=[1, 1, 1, 3], double=True)]),
        wire.v1_layer("ip2", 14, [wire.blob(W2, legacy=[1, 1, 2, 3]),
                                  wire.blob(B2, legacy=[1, 1, 1, 2])]),
    ])


def test_new_style_caffemodel_to_arrays(wire, tmp_path):
    from layerflow.caffe.weights import caffemodel_arrays

    path = tmp_path / "m.caffemodel"
    path.write_bytes(new_style_model(wire))
    arrays, notes = caffemodel_arrays(path)
    assert set(arrays) == {"ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias", "extra.weight"}
    np.testing.assert_array_equal(arrays["ip1.weight"], W1)
    np.testing.assert_array_equal(arrays["ip1.bias"], B1)  # written unpacked
    np.testing.assert_array_equal(arrays["ip2.weight"], W2)
    assert arrays["ip1.weight"].dtype == np.float32 and notes == []


def test_v1_caffemodel_legacy_dims_and_double_data(wire, tmp_path):
    from layerflow.caffe.weights import caffemodel_arrays

    path = tmp_path / "old.caffemodel"
    path.write_bytes(v1_model(wire))
    arrays, _ = caffemodel_arrays(path)
    assert arrays["ip1.weight"].shape == (1, 1, 3, 4)  # as stored; reshaped on loading
    np.testing.assert_array_equal(arrays["ip1.weight"].reshape(3, 4), W1)
    assert arrays["ip1.bias"].dtype == np.float64
    np.testing.assert_array_equal(arrays["ip1.bias"].reshape(3), B1.astype(np.float64))


def test_blob_count_mismatch_is_an_error(wire, tmp_path):
    from layerflow.caffe.weights import caffemodel_arrays

    path = tmp_path / "bad.caffemodel"
    path.write_bytes(wire.net("x", layers=[
        wire.layer("ip", "InnerProduct", [wire.blob(np.ones(5), shape=[2, 3])])]))
    with pytest.raises(UserError, match=r"layer ip blob weight: the blob has shape \[2, 3\] "
                                        r"\(6 values\) but holds 5 values"):
        caffemodel_arrays(path)


def test_garbage_caffemodel_names_the_file(tmp_path):
    from layerflow.caffe.weights import caffemodel_arrays

    path = tmp_path / "junk.caffemodel"
    path.write_bytes(b"\xff\xff\xff\xff not a proto")
    with pytest.raises(UserError, match="junk.caffemodel: not a valid .caffemodel file"):
        caffemodel_arrays(path)


def test_blobs_of_a_type_layerflow_lacks_are_reported(wire, tmp_path):
    from layerflow.caffe.weights import caffemodel_arrays

    path = tmp_path / "m.caffemodel"
    path.write_bytes(wire.net("x", layers=[
        wire.layer("emb", "Embed", [wire.blob(np.ones(4), shape=[2, 2])])]))
    arrays, notes = caffemodel_arrays(path)
    assert arrays == {} and "layer emb (Embed): 1 blob(s) skipped" in notes[0]


def test_datum_hand_encoded_parses_with_the_project_proto(wire):
    from layerflow.caffe.proto import messages

    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    d = messages().Datum.FromString(wire.datum(2, 3, 4, img.tobytes(), 7))
    assert (d.channels, d.height, d.width, d.label, d.encoded) == (2, 3, 4, 7, False)
    np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(2, 3, 4), img)


def test_convert_caffemodel_to_safetensors_and_back(cli, wire, write, tmp_path):
    write(tmp_path, "mlp.prototxt", MLP)
    src = tmp_path / "old.caffemodel"
    src.write_bytes(v1_model(wire))
    out = tmp_path / "w.safetensors"
    res = cli.ok(cli.invoke("convert", src, "-o", out))
    assert "wrote" in res.stdout
    st = load_file(str(out))
    np.testing.assert_array_equal(st["ip2.weight"].reshape(2, 3), W2)
    # back: a .caffemodel for the net, read again equal (shapes now the net's)
    back = tmp_path / "back.caffemodel"
    save_file({"ip1.weight": W1, "ip1.bias": B1, "ip2.weight": W2, "ip2.bias": B2},
              str(tmp_path / "net_w.safetensors"))
    cli.ok(cli.invoke("convert", tmp_path / "net_w.safetensors", "--net",
                      tmp_path / "mlp.prototxt", "-o", back))
    from layerflow.caffe.weights import caffemodel_arrays, read_caffemodel

    arrays, _ = caffemodel_arrays(back)
    assert {k: v.shape for k, v in arrays.items()} == {
        "ip1.weight": (3, 4), "ip1.bias": (3,), "ip2.weight": (2, 3), "ip2.bias": (2,)}
    np.testing.assert_array_equal(arrays["ip1.weight"], W1)
    # written as Caffe writes: shape + data, layers named and typed
    msg = read_caffemodel(back)
    ip1 = [l for l in msg.layer if l.name == "ip1"][0]
    assert ip1.type == "InnerProduct" and list(ip1.blobs[0].shape.dim) == [3, 4]
    assert not ip1.blobs[0].HasField("num")


def test_caffemodel_written_without_net_is_an_error(cli, tmp_path):
    save_file({"a.weight": np.ones((1, 1), np.float32)}, str(tmp_path / "w.safetensors"))
    cli.error(cli.invoke("convert", tmp_path / "w.safetensors", "-o", tmp_path / "w.caffemodel"),
              "needs the net they belong to: --net")


def test_caffemodel_keys_not_in_net_are_an_error(cli, write, tmp_path):
    write(tmp_path, "mlp.prototxt", MLP)
    save_file({"nope.weight": np.ones((1, 1), np.float32)}, str(tmp_path / "w.safetensors"))
    cli.error(cli.invoke("convert", tmp_path / "w.safetensors", "--net",
                         tmp_path / "mlp.prototxt", "-o", tmp_path / "w.caffemodel"),
              "nope.weight: no layer of net mlp has these params")


def _forward(net_path, weights):
    from layerflow.builder import build_net
    from layerflow.weights import copy_weight_files

    net = build_net(net_path, "test")
    done = copy_weight_files(net, weights)
    copied, notes = done.copied, done.notes
    x = np.linspace(-1, 1, 8).reshape(2, 1, 2, 2)
    return net.forward({"data": x})["ip2"], copied, notes


def test_weights_from_a_v1_caffemodel_give_caffes_forward(wire, write, tmp_path):
    net_path = write(tmp_path, "mlp.prototxt", MLP)
    model = tmp_path / "old.caffemodel"
    model.write_bytes(v1_model(wire))
    out, copied, notes = _forward(net_path, str(model))
    x = np.linspace(-1, 1, 8).reshape(2, 4)
    want = np.maximum(x @ W1.T + B1, 0) @ W2.T + B2
    np.testing.assert_allclose(out, want, rtol=1e-5)
    assert len(copied) == 4 and notes == []


def test_weights_list_later_overrides_and_ignored_layers_reported(wire, write, tmp_path):
    net_path = write(tmp_path, "mlp.prototxt", MLP)
    model = tmp_path / "m.caffemodel"
    model.write_bytes(new_style_model(wire))
    head = tmp_path / "head.safetensors"
    save_file({"ip2.bias": np.array([10.0, 20.0], np.float32)}, str(head))
    out, copied, notes = _forward(net_path, f"{model}, {head}")
    x = np.linspace(-1, 1, 8).reshape(2, 4)
    want = np.maximum(x @ W1.T + B1, 0) @ W2.T + np.array([10.0, 20.0])
    np.testing.assert_allclose(out, want, rtol=1e-5)
    assert any("ignoring source layer extra" in n for n in notes), notes


def test_cli_test_accepts_caffemodel_and_reports_ignored_layers(cli, wire, write, tmp_path,
                                                               lmdb_db):
    imgs = np.arange(4 * 1 * 2 * 2, dtype=np.uint8).reshape(4, 1, 2, 2)
    lmdb_db(tmp_path / "db", imgs, [0, 1, 0, 1])
    net = write(tmp_path, "net.prototxt", """
        name: "mlp"
        layer { name: "data" type: "Data" top: "data" top: "label"
                data_param { source: "db" batch_size: 2 backend: LMDB } }
        layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 3 } }
        layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
        layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
    """)
    model = tmp_path / "m.caffemodel"
    model.write_bytes(new_style_model(wire))
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)  # Caffe opens data sources from the working directory
    try:
        res = cli.ok(cli.invoke("test", net, "--weights", model, "--iterations", "2", "--json"))
    finally:
        os.chdir(cwd)
    report = json.loads(res.stdout)
    assert "loss" in report["outputs"] and np.isfinite(report["outputs"]["loss"])
    assert "ignoring source layer extra" in res.stderr


def test_binaryproto_mean_file_in_a_data_layer(wire, write, tmp_path, lmdb_db):
    """compute_image_mean's output: legacy dims 1 x C x H x W, packed floats."""
    imgs = (np.arange(3 * 2 * 2 * 2) % 7).astype(np.uint8).reshape(3, 2, 2, 2)
    lmdb_db(tmp_path / "db", imgs, [0, 1, 2])
    mean = imgs.astype(np.float64).mean(axis=0)
    (tmp_path / "mean.binaryproto").write_bytes(wire.blob(mean, legacy=[1, 2, 2, 2]))
    net = write(tmp_path, "net.prototxt", """
        layer { name: "data" type: "Data" top: "data" top: "label"
                data_param { source: "db" batch_size: 3 backend: LMDB }
                transform_param { mean_file: "mean.binaryproto" scale: 0.5 } }
    """)
    from layerflow.builder import build_net

    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        n = build_net(net, "test")
    finally:
        os.chdir(cwd)
    out = n.forward()
    np.testing.assert_allclose(out["data"], (imgs - mean.astype(np.float32)) * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out["label"], [0, 1, 2])


def test_binaryproto_converts_to_npy_and_back(cli, wire, tmp_path):
    mean = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    (tmp_path / "m.binaryproto").write_bytes(wire.blob(mean, legacy=[1, 3, 2, 2]))
    cli.ok(cli.invoke("convert", tmp_path / "m.binaryproto", "-o", tmp_path / "m.npy"))
    arr = np.load(tmp_path / "m.npy")
    assert arr.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(arr[0], mean)
    cli.ok(cli.invoke("convert", tmp_path / "m.npy", "-o", tmp_path / "back.binaryproto"))
    from layerflow.caffe.weights import read_binaryproto

    np.testing.assert_array_equal(read_binaryproto(tmp_path / "back.binaryproto"), arr)


def test_missing_mean_binaryproto_names_layer_and_path(write, tmp_path, lmdb_db):
    lmdb_db(tmp_path / "db", np.zeros((2, 1, 2, 2), np.uint8), [0, 1])
    net = write(tmp_path, "net.prototxt", f"""
        layer {{ name: "data" type: "Data" top: "data" top: "label"
                data_param {{ source: "{tmp_path / 'db'}" batch_size: 2 backend: LMDB }}
                transform_param {{ mean_file: "{tmp_path / 'nope.binaryproto'}" }} }}
    """)
    from layerflow.builder import build_net

    with pytest.raises(UserError, match=r"net.prototxt:1:1: layers\[0\] \(data\): mean_file "
                                        r".*nope.binaryproto: .binaryproto file not found"):
        build_net(net, "test")


def test_batchnorm_scale_prelu_blobs_map_to_layerflow_params(wire, write, tmp_path):
    """BatchNorm's three sums, Scale's weight and bias, a channel-shared PReLU's 0-axis blob."""
    net_path = write(tmp_path, "bn.prototxt", """
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }
        layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }
        layer { name: "pr" type: "PReLU" bottom: "sc" top: "pr" prelu_param { channel_shared: true } }
    """)
    mean_sum, var_sum, factor = np.array([2.0, 4, 6]), np.array([8.0, 8, 8]), np.array([2.0])
    gamma, beta = np.array([1.0, 2, 3]), np.array([0.5, 0, -0.5])
    model = tmp_path / "bn.caffemodel"
    model.write_bytes(wire.net("bn", layers=[
        wire.layer("bn", "BatchNorm", [wire.blob(mean_sum, shape=[3]),
                                       wire.blob(var_sum, shape=[3]),
                                       wire.blob(factor, shape=[1])]),
        wire.layer("sc", "Scale", [wire.blob(gamma, shape=[3]), wire.blob(beta, shape=[3])],
                   bottom=["bn"]),
        wire.layer("pr", "PReLU", [wire.blob([0.1], shape=[])]),
    ]))
    from layerflow.builder import build_net
    from layerflow.weights import copy_weight_files

    net = build_net(net_path, "test", dtype="float64")
    copied = copy_weight_files(net, str(model)).copied
    assert sorted(copied) == ["bn.mean", "bn.scale_factor", "bn.variance", "pr.weight",
                              "sc.bias", "sc.weight"]
    x = np.array([[1.0, 2.0, -4.0], [3.0, -1.0, 0.0]])
    y = net.forward({"data": x})["pr"]
    # Caffe's global stats: mean = sum / factor, var = sum / factor
    z = gamma * (x - mean_sum / 2) / np.sqrt(var_sum / 2 + 1e-5) + beta
    np.testing.assert_allclose(y, np.where(z > 0, z, 0.1 * z), rtol=1e-6)
