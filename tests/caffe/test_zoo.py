"""Caffe's published example nets as the yardstick (fixtures of the same shape and layer mix in
zoo.py): converted, built with Caffe's shapes, and trained or run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import zoo

from layerflow.config import load_yaml, parse_net
from layerflow.net import Net



def digits(n, seed, size=28, classes=10):
    """Synthetic 'digits': class k is a bright bar at row band k, on noise (uint8 images)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.integers(0, 40, size=(n, 1, size, size))
    band = size // classes
    for i, k in enumerate(labels):
        x[i, 0, k * band:(k + 1) * band, 2:size - 2] += 200
    return x.astype(np.uint8), labels


def shapes(net, *names):
    return {n: net.blobs[n].shape for n in names}


def test_lenet_train_test_and_solver(cli, tmp_path, write, lmdb_db):
    lmdb_db(tmp_path / "digits_train_lmdb", *digits(160, 0))
    lmdb_db(tmp_path / "digits_test_lmdb", *digits(32, 1))
    write(tmp_path, "lenet_train_test.prototxt", zoo.LENET_TRAIN_TEST)
    write(tmp_path, "lenet_solver.prototxt", zoo.LENET_SOLVER)
    net = Net(parse_net(load_yaml(tmp_path / "lenet_train_test.prototxt")), "test")
    assert shapes(net, "conv1", "pool1", "conv2", "pool2", "ip1", "ip2") == {
        "conv1": (16, 20, 24, 24), "pool1": (16, 20, 12, 12), "conv2": (16, 50, 8, 8),
        "pool2": (16, 50, 4, 4), "ip1": (16, 500), "ip2": (16, 10)}
    assert sum(p.data.size for p in net.learnable_params()) == 431080
    res = cli.ok(cli.invoke("train", "lenet_solver.prototxt", "--json", cwd=tmp_path))
    summary = json.loads(res.stdout)
    assert summary["iterations"] == 100 and summary["test"]["accuracy"] >= 0.5, summary
    cli.ok(cli.invoke("convert", "lenet_solver.prototxt", "-o", tmp_path / "yaml" / "solver.yaml",
                      cwd=tmp_path))
    assert yaml.safe_load((tmp_path / "yaml" / "solver.yaml").read_text())["net"] == \
        "lenet_train_test.yaml"


def test_lenet_deploy_with_legacy_input_shape(write, tmp_path):
    path = write(tmp_path, "lenet.prototxt", zoo.LENET_DEPLOY)
    net = Net(parse_net(load_yaml(path)), "test")
    assert net.inputs == ["data"]
    assert shapes(net, "pool2", "ip2", "prob") == {"pool2": (64, 50, 4, 4), "ip2": (64, 10),
                                                   "prob": (64, 10)}
    out = net.forward({"data": np.zeros((2, 1, 28, 28))})["prob"]
    np.testing.assert_allclose(out, 0.1)  # Caffe's default fillers: all-zero weights


@pytest.mark.parametrize("name", ["CIFAR_QUICK", "CIFAR_FULL"])
def test_cifar10_nets_with_a_binaryproto_mean(name, wire, write, tmp_path, lmdb_db):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, size=(16, 3, 32, 32)).astype(np.uint8)
    lmdb_db(tmp_path / "cifar_train_lmdb", imgs, np.arange(16) % 10)
    lmdb_db(tmp_path / "cifar_test_lmdb", imgs[:8], np.arange(8) % 10)
    mean = imgs.mean(axis=0)
    (tmp_path / "mean.binaryproto").write_bytes(wire.blob(mean, legacy=[1, 3, 32, 32]))
    path = write(tmp_path, "cifar.prototxt", getattr(zoo, name))
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        net = Net(parse_net(load_yaml(path)), "train")
    finally:
        os.chdir(cwd)
    assert shapes(net, "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "ip2") == {
        "conv1": (8, 32, 32, 32), "pool1": (8, 32, 16, 16), "conv2": (8, 32, 16, 16),
        "pool2": (8, 32, 8, 8), "conv3": (8, 64, 8, 8), "pool3": (8, 64, 4, 4), "ip2": (8, 10)}
    if name == "CIFAR_FULL":
        assert net.params["ip2"]["weight"].decay_mult == 250
        assert net.blobs["norm1"].shape == (8, 32, 16, 16)
    else:
        assert net.blobs["ip1"].shape == (8, 64)
    loss = net.forward_backward()
    assert np.isfinite(loss) and abs(loss - np.log(10)) < 0.5


@pytest.mark.parametrize("name, want", [
    ("ALEXNET", {"conv1": (1, 96, 55, 55), "norm1": (1, 96, 55, 55), "pool1": (1, 96, 27, 27),
                 "conv2": (1, 256, 27, 27), "pool2": (1, 256, 13, 13),
                 "conv5": (1, 256, 13, 13), "pool5": (1, 256, 6, 6), "fc6": (1, 4096),
                 "prob": (1, 1000)}),
    ("CAFFENET", {"conv1": (1, 96, 55, 55), "pool1": (1, 96, 27, 27), "norm1": (1, 96, 27, 27),
                  "pool2": (1, 256, 13, 13), "norm2": (1, 256, 13, 13),
                  "pool5": (1, 256, 6, 6), "fc8": (1, 1000)}),
])
def test_imagenet_deploy_nets_give_caffes_shapes(name, want, write, tmp_path):
    path = write(tmp_path, "deploy.prototxt", getattr(zoo, name))
    net = Net(parse_net(load_yaml(path)), "test")
    assert shapes(net, *want) == want
    assert net.params["conv2"]["weight"].shape == (256, 48, 5, 5)  # group 2


def test_googlenet_inception_modules(write, tmp_path):
    path = write(tmp_path, "googlenet.prototxt", zoo.GOOGLENET)
    net = Net(parse_net(load_yaml(path)), "test")
    assert shapes(net, "conv1/7x7_s2", "pool1/3x3_s2", "conv2/3x3", "pool2/3x3_s2",
                  "inception_3a/output", "inception_3b/output", "pool3/3x3_s2",
                  "pool5/7x7_s1", "prob") == {
        "conv1/7x7_s2": (1, 64, 112, 112), "pool1/3x3_s2": (1, 64, 56, 56),
        "conv2/3x3": (1, 192, 56, 56), "pool2/3x3_s2": (1, 192, 28, 28),
        "inception_3a/output": (1, 256, 28, 28), "inception_3b/output": (1, 480, 28, 28),
        "pool3/3x3_s2": (1, 480, 14, 14), "pool5/7x7_s1": (1, 480, 1, 1), "prob": (1, 1000)}
    assert net.blobs["inception_3a/pool"].shape == (1, 192, 28, 28)  # 3x3/1 pad 1 pool


def test_mnist_autoencoder_with_stages(cli, write, tmp_path, lmdb_db):
    """Runs now: InnerProduct, Sigmoid, Flatten and the two losses are all in layerflow."""
    size = 10
    lmdb_db(tmp_path / "digits_train_lmdb", *digits(40, 0, size=size))
    lmdb_db(tmp_path / "digits_test_lmdb", *digits(20, 1, size=size))
    write(tmp_path, "autoencoder.prototxt", zoo.AUTOENCODER.replace("{pixels}", str(size * size)))
    write(tmp_path, "solver.prototxt", zoo.AUTOENCODER_SOLVER)
    res = cli.ok(cli.invoke("convert", "solver.prototxt", "-o", "yaml/solver.yaml", cwd=tmp_path))
    assert "the solver defines 2 test nets; layerflow tests one: the first is kept" in res.stderr
    solver = yaml.safe_load((tmp_path / "yaml/solver.yaml").read_text())
    assert solver["test_state"] == {"stage": ["test-on-train"]} and solver["test_iter"] == 2
    assert (solver["lr_policy"], solver["stepsize"], solver["gamma"]) == ("step", 10000, 0.1)
    net_yaml = yaml.safe_load((tmp_path / "yaml/autoencoder.yaml").read_text())
    enc = [l for l in net_yaml["layers"] if l["name"] == "encode1"][0]
    assert enc["weight_filler"] == {"type": "gaussian", "std": 1.0, "sparse": 15}
    # Caffe allows the two layers named "loss"; layerflow renames the second, and leaves the
    # three "data" layers alone (no phase and stages keep two of them)
    names = [l["name"] for l in net_yaml["layers"]]
    assert names.count("data") == 3 and "loss" in names and "loss_1" in names
    assert "layer loss: a second layer of this name in the same net; renamed loss_1" in res.stderr
    losses = {l["name"]: l for l in net_yaml["layers"] if l["name"].startswith("loss")}
    assert losses["loss"]["loss_weight"] == [1.0] and losses["loss_1"]["loss_weight"] == [0.0]
    assert losses["loss_1"]["type"] == "EuclideanLoss"
    # the stages pick the test data layer
    test_net = Net(parse_net(load_yaml(tmp_path / "yaml/autoencoder.yaml")), "test",
                   stages=("test-on-test",))
    assert test_net.layer_by_name["data"].p.source.endswith("digits_test_lmdb")
    res = cli.ok(cli.invoke("train", "solver.prototxt", "--json", cwd=tmp_path))
    summary = json.loads(res.stdout)
    assert summary["iterations"] == 20
    assert set(summary["test"]) == {"cross_entropy_loss", "l2_error"}
    assert np.isfinite(summary["test"]["l2_error"])


def test_siamese_shares_params_by_name(write, tmp_path, lmdb_db):
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 255, size=(16, 2, 28, 28)).astype(np.uint8)
    lmdb_db(tmp_path / "pairs_lmdb", pairs, np.arange(16) % 2)
    path = write(tmp_path, "siamese.prototxt", zoo.SIAMESE)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        net = Net(parse_net(load_yaml(path)), "train")
    finally:
        os.chdir(cwd)
    for layer in ("conv1", "conv2", "ip1", "ip2", "feat"):
        for p in ("weight", "bias"):
            assert net.params[layer][p] is net.params[f"{layer}_p"][p]
    assert shapes(net, "data", "data_p", "feat", "feat_p") == {
        "data": (8, 1, 28, 28), "data_p": (8, 1, 28, 28), "feat": (8, 2), "feat_p": (8, 2)}
    assert np.isfinite(net.forward_backward())


def test_hdf5_classification_converts(cli, write, tmp_path):
    write(tmp_path, "hdf5_classification/data/train.txt", "train.h5\n")
    write(tmp_path, "hdf5_classification/data/test.txt", "test.h5\n")
    write(tmp_path, "net.prototxt", zoo.HDF5_CLASSIFY)
    res = cli.ok(cli.invoke("convert", "net.prototxt", "-o", "out/net.yaml", cwd=tmp_path))
    net = yaml.safe_load((tmp_path / "out/net.yaml").read_text())
    data = net["layers"][0]
    assert (data["type"], data["backend"], data["batch_size"]) == ("Data", "hdf5", 10)
    assert data["source"] == "../hdf5_classification/data/train.txt"
    from layerflow.registry import SOURCES

    if "hdf5" not in SOURCES:
        assert "no 'hdf5' data source installed" in res.stderr
    fc1 = net["layers"][2]
    assert fc1["param"] == [{"lr_mult": 1.0, "decay_mult": 1.0},
                            {"lr_mult": 1.0, "decay_mult": 0.0}]
