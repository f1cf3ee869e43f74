"""Issue 10's acceptance: a LeNet written as a Caffe prototxt, fed from an LMDB of
Fashion-MNIST Datum records with a .binaryproto mean (as convert_imageset and
compute_image_mean make them), trains with `layerflow train` exactly as the same net reading
the fashion-mnist source does: the batches are identical, hence the weights and the test
accuracy, bit for bit.

A short run on a subset (the first 640 training images, 10 batches of 64; the first 200 test
images); the full-length comparison with models/fashion_mnist_lenet was run by hand (see the
caffe-data report). Skipped when the Fashion-MNIST files are absent (CI installs the Debian
package dataset-fashion-mnist).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from layerflow import UserError
from layerflow import data as datasets

pytest.importorskip("lmdb")

TRAIN, TEST, BATCH, ITERS = 640, 200, 64, 10

# Caffe's examples/mnist/lenet_train_test layer mix, with a mean file (this repository's own)
NET = """
name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 mean_file: "fashion_mean.binaryproto" }
  data_param { source: "fashion_train_lmdb" batch_size: 64 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 mean_file: "fashion_mean.binaryproto" }
  data_param { source: "fashion_test_lmdb" batch_size: 100 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SOLVER = f"""
net: "lenet_train_test.prototxt"
test_iter: 2
test_interval: 5
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 5
max_iter: {ITERS}
snapshot: {ITERS}
snapshot_prefix: "snapshots/lenet"
random_seed: 1
"""


def fashion_or_skip(split):
    try:
        return datasets.fashion_mnist(split)
    except UserError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")


def write_lmdb(path, wire, images, labels):
    """convert_imageset's layout: keys '%08d_<file>' in list order, raw 1 x 28 x 28 Datums
    (the records encoded by hand, independently of layerflow's caffe.proto)."""
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for i, (x, y) in enumerate(zip(images, labels)):
            txn.put(f"{i:08d}_fashion/{i}.png".encode(),
                    wire.datum(1, 28, 28, x.tobytes(), int(y)))
    env.close()


def test_prototxt_lenet_from_lmdb_trains_as_the_yaml_net(cli, wire, write, tmp_path):
    train, test = fashion_or_skip("train"), fashion_or_skip("test")
    write_lmdb(tmp_path / "fashion_train_lmdb", wire, train["data"][:TRAIN],
               train["label"][:TRAIN])
    write_lmdb(tmp_path / "fashion_test_lmdb", wire, test["data"][:TEST], test["label"][:TEST])
    # compute_image_mean's output: the mean image as a BlobProto of legacy dims 1 x C x H x W
    mean = train["data"][:TRAIN].astype(np.float64).mean(axis=0)
    (tmp_path / "fashion_mean.binaryproto").write_bytes(wire.blob(mean, legacy=[1, 1, 28, 28]))
    write(tmp_path, "lenet_train_test.prototxt", NET)
    write(tmp_path, "lenet_solver.prototxt", SOLVER)

    # Caffe's way: `train` on the prototxt, run from the folder its paths are relative to
    res = cli.ok(cli.invoke("train", "lenet_solver.prototxt", "--json", cwd=tmp_path))
    from_lmdb = json.loads(res.stdout)
    assert from_lmdb["iterations"] == ITERS

    # the same net converted to YAML, its data layers reading the fashion-mnist source
    cli.ok(cli.invoke("convert", "lenet_solver.prototxt", "-o", "yaml/solver.yaml",
                      cwd=tmp_path))
    net_path = tmp_path / "yaml" / "lenet_train_test.yaml"
    net = yaml.safe_load(net_path.read_text())
    for layer in net["layers"][:2]:
        assert layer["backend"] == "lmdb" and layer["mean_file"] == "../fashion_mean.binaryproto"
        del layer["backend"]
        layer["source"] = "fashion-mnist"
        layer["split"] = layer["include"][0]["phase"]
    net_path.write_text(yaml.safe_dump(net))
    solver = yaml.safe_load((tmp_path / "yaml" / "solver.yaml").read_text())
    solver["snapshot_prefix"] = "../snapshots_yaml/lenet"
    (tmp_path / "yaml" / "solver.yaml").write_text(yaml.safe_dump(solver))
    res = cli.ok(cli.invoke("train", tmp_path / "yaml" / "solver.yaml", "--json"))
    from_source = json.loads(res.stdout)

    assert from_lmdb["test"] == from_source["test"]
    assert from_lmdb["test"]["accuracy"] > 0.4, from_lmdb  # it learned (chance: 0.1)
    assert from_lmdb["loss"] == from_source["loss"]
    from layerflow.snapshot import load_weights

    a = load_weights(tmp_path / "snapshots" / f"lenet_iter_{ITERS}.safetensors")
    b = load_weights(tmp_path / "snapshots_yaml" / f"lenet_iter_{ITERS}.safetensors")
    assert a.keys() == b.keys() and len(a) == 8
    for k in a:
        assert np.array_equal(a[k], b[k]), k
