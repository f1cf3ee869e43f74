"""Short Fashion-MNIST trainings on the real data must clear 0.80 test accuracy.

MLP: 800 batches of 64 (0.85 of an epoch) through a 784-128-10 MLP, then the whole 10k test
set. It reached 0.840-0.843 over seeds 1-4 when written; the bar leaves room for other BLAS
builds.
LeNet: models/fashion_mnist_lenet as it is (Caffe's LeNet and lenet_solver recipe, its training
images mirrored at random), stopped after 450 batches of 64 (0.48 of an epoch), then the whole
test set. Measured when the mirror came in: 0.8364 with seed 1 (the model's, the one tested),
0.8293 and 0.8018 with seeds 2 and 3; after 300 batches 0.798-0.819, too close to the bar.
Skipped only when the data files are absent (CI installs the Debian package
dataset-fashion-mnist).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import layerflow as lf
from layerflow import data as datasets
from layerflow.trainer import evaluate

LENET = Path(__file__).resolve().parents[1] / "models" / "fashion_mnist_lenet" / "solver.yaml"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")

NET = """\
name: fashion_quick
layers:
  - {name: data, type: Data, top: [data, label], source: fashion-mnist, split: train,
     batch_size: 64, scale: 0.00392156862745098, shuffle: true, include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: fashion-mnist, split: test,
     batch_size: 500, scale: 0.00392156862745098, include: {phase: test}}
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 128, weight_filler: {type: msra}}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 10}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""

SOLVER = """\
net: net.yaml
type: SGD
base_lr: 0.02
momentum: 0.9
lr_policy: step
gamma: 0.2
stepsize: 600
max_iter: 800
test_iter: 20
random_seed: 1
"""


def data_missing() -> str | None:
    for folder in datasets.fashion_mnist_dirs():
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in FILES):
            return None
    return (f"Fashion-MNIST is not in {' nor '.join(map(str, datasets.fashion_mnist_dirs()))}"
            f" (apt-get install dataset-fashion-mnist, or set LAYERFLOW_DATA)")


@pytest.mark.skipif(data_missing() is not None, reason=str(data_missing()))
def test_fashion_mnist_mlp_clears_0_80_in_most_of_an_epoch(tmp_path):
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(SOLVER)
    solver = lf.Solver.from_yaml(tmp_path / "solver.yaml")
    solver.step(solver.spec.max_iter)
    test_net = solver.test_nets[0]
    assert test_net.layer_by_name["data"].num_samples == 10000
    result = evaluate(test_net, 20)  # 20 x 500: the whole test set, once
    assert result["accuracy"] >= 0.80, result
    assert result["loss"] < 0.6, result


@pytest.mark.skipif(data_missing() is not None, reason=str(data_missing()))
def test_fashion_mnist_lenet_clears_0_80_in_half_an_epoch():
    solver = lf.Solver.from_yaml(LENET, overrides=["max_iter=450"])
    assert (solver.spec.base_lr, solver.spec.lr_policy, solver.spec.random_seed) == (0.01, "inv", 1)
    solver.step(solver.spec.max_iter)
    assert solver.iter == 450
    test_net = solver.test_nets[0]
    assert test_net.layer_by_name["data"].num_samples == 10000
    result = evaluate(test_net, 100)  # 100 x 100: the whole test set, once
    assert result["accuracy"] >= 0.80, result
    assert result["loss"] < 0.6, result
