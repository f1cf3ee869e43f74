"""Deploy nets derived from train/test nets (layerflow.deploy, lf.deploy_net)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
from safetensors.numpy import save_file

import layerflow as lf
from layerflow import UserError
from layerflow.config import load_yaml_text, parse_net
from layerflow.deploy import derive

NET = """\
name: small
layers:
  - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 4,
     scale: 0.5, mean_value: [10, 20], shuffle: true, include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 6,
     scale: 0.5, mean_value: [10, 20], include: {phase: test}}
  - {name: ip1, type: InnerProduct, num_output: 5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: drop, type: Dropout, bottom: ip1, top: ip1, include: {phase: train}}
  - {name: ip2, type: InnerProduct, num_output: 3, loss_weight: 0}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label], axis: 1}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""


def write_data(folder, n=6):
    rng = np.random.default_rng(3)
    np.savez(folder / "d.npz", data=rng.uniform(0, 255, (n, 2, 3)).astype(np.float32),
             label=np.arange(n) % 3)
    return np.load(folder / "d.npz")


def project(tmp_path, text=NET):
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def types_of(net):
    return [(layer.name, layer.type) for layer in net.layers]


def test_mlp_becomes_input_transform_and_softmax(tmp_path):
    write_data(tmp_path)
    net = lf.deploy_net(project(tmp_path))
    assert types_of(net) == [("data", "Input"), ("data_transform", "Transform"),
                             ("ip1", "InnerProduct"), ("relu1", "ReLU"),
                             ("ip2", "InnerProduct"), ("prob", "Softmax")]
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net.phase == "test"
    assert net.blobs["data"].shape == (1, 2, 3)  # one sample; any batch on feed
    assert net.layer_by_name["prob"].p.axis == 1
    assert net.config.labels == {"data": "label"}
    assert net.loss == 0.0 and not net._losses


def test_deploy_forward_on_raw_samples_equals_test_net(tmp_path):
    """The Transform gives exactly what the Data layer gave in training: softmax of the test
    net's scores on the same samples, fed raw."""
    d = write_data(tmp_path)
    path = project(tmp_path)
    test_net = lf.Net.from_yaml(path, phase="test")
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32)
               for k, v in test_net.state_dict().items()}
    save_file(weights, str(tmp_path / "w.safetensors"))
    test_net.copy_from(weights)
    test_net.run_forward()  # the first batch: samples 0..5 in order
    scores = test_net.blobs["ip2"].data.astype(np.float64)
    expected = np.exp(scores - scores.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    net = lf.deploy_net(path, tmp_path / "w.safetensors")
    out = net.forward({"data": d["data"]})
    np.testing.assert_allclose(out["prob"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(net.blobs["data"].data, test_net.blobs["data"].data)
    one = net.forward({"data": d["data"][2:3]})  # another batch size
    np.testing.assert_allclose(one["prob"], out["prob"][2:3], rtol=1e-6)


def test_mean_file_carries_over(tmp_path):
    d = write_data(tmp_path)
    mean = np.random.default_rng(1).uniform(0, 50, (2, 3))
    np.save(tmp_path / "mean.npy", mean)
    path = project(tmp_path, NET.replace("mean_value: [10, 20]", "mean_file: mean.npy"))
    test_net = lf.Net.from_yaml(path, phase="test")
    test_net.run_forward()
    net = lf.deploy_net(path)
    assert net.layer_by_name["data_transform"].p.mean_file == "mean.npy"
    net.forward({"data": d["data"]})
    np.testing.assert_array_equal(net.blobs["data"].data, test_net.blobs["data"].data)


def test_identity_transform_adds_no_layer(tmp_path):
    write_data(tmp_path)
    text = NET.replace("scale: 0.5, mean_value: [10, 20], ", "")
    net = lf.deploy_net(project(tmp_path, text))
    assert "Transform" not in [t for _, t in types_of(net)]


def test_deploy_net_is_used_as_it_is(tmp_path):
    text = """\
    name: ready
    layers:
      - {name: data, type: Input, shape: [1, 4]}
      - {name: ip, type: InnerProduct, num_output: 2}
      - {name: prob, type: Softmax}
    """
    config = parse_net(load_yaml_text(textwrap.dedent(text), "ready.yaml"))
    deployed = derive(config)
    assert deployed.source.data["layers"] == [
        {"name": "data", "type": "Input", "shape": [1, 4], "top": ["data"]},
        {"name": "ip", "type": "InnerProduct", "num_output": 2, "bottom": ["data"],
         "top": ["ip"]},
        {"name": "prob", "type": "Softmax", "bottom": ["ip"], "top": ["prob"]}]
    assert deployed.labels == {}


def test_layers_reading_labels_or_losses_are_left_out(tmp_path):
    """A layer fed by a label (even through another layer) goes, as does one reading a loss;
    a SigmoidCrossEntropyLoss becomes a Sigmoid; a blob named prob already exists."""
    write_data(tmp_path)
    text = """\
    name: labels
    layers:
      - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 2}
      - {name: prob, type: InnerProduct, num_output: 3}
      - {name: onehot, type: Power, bottom: label, scale: 2.0}
      - {name: onehot2, type: Power, bottom: onehot, top: onehot}
      - {name: l2, type: EuclideanLoss, bottom: [prob, prob]}
      - {name: l2x, type: Power, bottom: l2}
      - {name: sig, type: SigmoidCrossEntropyLoss, bottom: [prob, onehot]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert types_of(net) == [("data", "Input"), ("prob", "InnerProduct"),
                             ("prob_1", "Sigmoid")]
    assert net.outputs == ["prob_1"]


def test_sigmoid_loss_on_labels_is_left_out_with_them(tmp_path):
    write_data(tmp_path)
    text = """\
    name: s
    layers:
      - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 2}
      - {name: ip, type: InnerProduct, num_output: 1}
      - {name: sig, type: SigmoidCrossEntropyLoss, bottom: [label, ip]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert types_of(net) == [("data", "Input"), ("ip", "InnerProduct")]


def test_csv_label_column_is_the_label_name(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    text = """\
    name: c
    layers:
      - {name: data, type: Data, top: [data, label], source: d.csv, label_column: y,
         batch_size: 2}
      - {name: ip, type: InnerProduct, num_output: 2}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert net.config.labels == {"data": "y"}
    assert net.blobs["data"].shape == (1, 2)


def test_fashion_mnist_shape_needs_no_data(tmp_path, monkeypatch):
    from layerflow import data as datasets

    monkeypatch.setattr(datasets, "fashion_mnist", lambda split: pytest.fail("data read"))
    text = """\
    name: f
    layers:
      - {name: data, type: Data, top: [data, label], source: fashion-mnist, batch_size: 2,
         scale: 0.00392156862745098}
      - {name: ip, type: InnerProduct, num_output: 10}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert net.blobs["data"].shape == (1, 1, 28, 28)


def test_missing_data_file_is_located(tmp_path):
    path = project(tmp_path)
    with pytest.raises(UserError) as err:
        lf.deploy_net(path)
    assert str(err.value).startswith(f"{path}:5:5: layers[1] (data): ")
    assert "d.npz" in str(err.value)


def test_errors_in_the_deploy_net_name_the_original_line(tmp_path):
    write_data(tmp_path)
    path = project(tmp_path, NET.replace("{name: ip2, type: InnerProduct, num_output: 3",
                                         "{name: ip2, type: InnerProduct, num_output: 3, "
                                         "axis: 4"))
    with pytest.raises(UserError) as err:
        lf.deploy_net(path)
    assert str(err.value).startswith(f"{path}:10:5: layers[5] (ip2): axis 4 is out of range")


def test_nothing_left_is_an_error(tmp_path):
    write_data(tmp_path)
    text = """\
    name: nothing
    layers:
      - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 2}
      - {name: acc, type: Accuracy, bottom: [data, label]}
    """
    path = project(tmp_path, text)
    with pytest.raises(UserError, match=f"{path}: every layer of the test phase but the data is left out"):
        lf.deploy_net(path)


def test_weights_missing_a_param(tmp_path):
    write_data(tmp_path)
    path = project(tmp_path)
    full = lf.Net.from_yaml(path, phase="test").state_dict()
    save_file({k: v for k, v in full.items() if k != "ip2.bias"} | {"other.weight":
              np.zeros(2, np.float32)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(UserError, match=r"w.safetensors: has no values for ip2.bias; were "
                                        r"these weights trained for .*net.yaml\?"):
        lf.deploy_net(path, tmp_path / "w.safetensors")


def test_input_fed_net_drops_its_label_input(tmp_path):
    """A net fed by Input layers, with a loss and an Accuracy (written before the loss): the
    label Input top goes, whatever reads it goes, wherever it stands in the file."""
    text = """\
    name: fed
    layers:
      - {name: input, type: Input, top: [data, label], shape: [[8, 3], [8]]}
      - {name: ip, type: InnerProduct, bottom: data, num_output: 4}
      - {name: accuracy, type: Accuracy, bottom: [ip, label]}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert types_of(net) == [("input", "Input"), ("ip", "InnerProduct"), ("prob", "Softmax")]
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net.config.source.data["layers"][0] == {
        "name": "input", "type": "Input", "top": ["data"], "shape": [[8, 3]]}


def test_a_label_only_input_layer_goes(tmp_path):
    text = """\
    name: fed2
    layers:
      - {name: x, type: Input, shape: [2, 3]}
      - {name: y, type: Input, shape: [2]}
      - {name: ip, type: InnerProduct, bottom: x, num_output: 4}
      - {name: loss, type: SVMLoss, bottom: [ip, y]}
    """
    net = lf.deploy_net(project(tmp_path, text))
    assert types_of(net) == [("x", "Input"), ("ip", "InnerProduct")]
