"""Labels are checked when the net is built: each layer that reads class labels declares them
(`Layer.label_bottoms`), and the data layer that produces them checks its whole label array
(`Layer.check_labels`), for the train and the test phase alike."""
from __future__ import annotations

import numpy as np
import pytest

import layerflow as lf
from layerflow import UserError

NET = """
name: labels
layers:
  - {name: data, type: Data, top: [data, label], source: train.npz, batch_size: 2,
     include: {phase: train}}
  - {name: data, type: Data, top: [data, label], source: test.npz, batch_size: 2,
     include: {phase: test}}
  - {name: ip, type: InnerProduct, bottom: data, num_output: 4}
  - {name: loss, type: LOSS, bottom: [ip, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip, label], include: {phase: test}}
"""


def write(folder, train, test):
    for name, labels in (("train", train), ("test", test)):
        labels = np.asarray(labels, np.float32)
        np.savez(folder / f"{name}.npz", data=np.zeros((len(labels), 3), np.float32),
                 label=labels)
    return str(folder / "net.yaml")


@pytest.mark.parametrize("loss", ["SoftmaxLoss", "SVMLoss"])
def test_each_phase_checks_its_own_data(tmp_path, loss):
    file = write(tmp_path, [0, 1, 2, 3], [0, 1, 4, 3])
    net = NET.replace("LOSS", loss)
    lf.Net.from_string(net, "train", file=file)  # the train labels are all classes of 4
    with pytest.raises(UserError) as err:
        lf.Net.from_string(net, "test", file=file)
    assert str(err.value).endswith(
        f"layers[1] (data): {tmp_path / 'test.npz'}: array \"label\", row 2: label 4 is not a "
        f"class index in [0, 4); layer loss ({loss}) reads top \"label\" as labels of 4 "
        f"classes")


def test_the_solver_finds_bad_test_labels_before_training(tmp_path):
    file = write(tmp_path, [0, 1, 2, 3], [0, 1, 2, -1])
    (tmp_path / "net.yaml").write_text(NET.replace("LOSS", "SoftmaxLoss"))
    (tmp_path / "solver.yaml").write_text("net: net.yaml\nmax_iter: 2\ntest_interval: 1\n")
    with pytest.raises(UserError, match=r"row 3: label -1 is not a class index in \[0, 4\)"):
        lf.Solver.from_yaml(tmp_path / "solver.yaml")
    assert file.endswith("net.yaml")


def test_ignore_label_is_accepted_only_where_declared(tmp_path):
    file = write(tmp_path, [0, 255, 2, 3], [0, 1, 2, 3])
    net = NET.replace("LOSS", "SoftmaxLoss")
    with pytest.raises(UserError, match="label 255 is not a class index"):
        lf.Net.from_string(net, "train", file=file)
    lf.Net.from_string(net.replace("bottom: [ip, label]}", "bottom: [ip, label], "
                                   "ignore_label: 255}", 1), "train", file=file)


def test_fed_labels_are_still_checked_by_the_layer_each_batch():
    net = lf.Net.from_string("""
name: fed
layers:
  - {name: in, type: Input, top: [x, y], shape: [[2, 3], [2]]}
  - {name: ip, type: InnerProduct, bottom: x, num_output: 4}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, y]}
""")
    with pytest.raises(UserError, match=r"\(loss\): label .* at batch index 1 is not a class "
                                        r"index in \[0, 4\)"):
        net.forward({"x": np.zeros((2, 3)), "y": np.array([0, 4])})
