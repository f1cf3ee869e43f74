"""The Data layer: batch order, wrap-around, shuffling, resuming, the transform, bad configs."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow import data as datasets
from layerflow.config import load_yaml_text, parse_net
from layerflow.layers.data import Data
from layerflow.transformer import transform_batch


def make(tmp_path=".", tops=("data", "label"), seed=0, dtype=np.float32, phase="train",
         **params):
    layer = Data("data", Data.params_model(params)(**params), phase=phase, dtype=dtype,
                 rng=np.random.default_rng(seed), base_dir=tmp_path, top_names=list(tops))
    layer.shapes = layer.build([])
    return layer


def batches(layer, k):
    return [[t.copy() for t in layer.forward([])] for _ in range(k)]


def write_idx(path, array, gz=False):
    codes = {"u1": 0x08, "i4": 0x0C, "f4": 0x0D}
    header = bytes([0, 0, codes[array.dtype.str[1:]], array.ndim])
    raw = header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(
        array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def counting_npz(tmp_path):
    """10 samples whose data row i is [i, 10 + i] and label i: the batch shows the indices."""
    n = 10
    np.savez(tmp_path / "d.npz", data=np.c_[np.arange(n), 10 + np.arange(n)].astype(np.float64),
             label=np.arange(n))
    return tmp_path


def test_shapes_order_and_wrap_around(counting_npz):
    layer = make(counting_npz, source="d.npz", batch_size=4)  # relative to base_dir
    assert layer.shapes == [(4, 2), (4,)] and layer.num_samples == 10
    got = [label.tolist() for _, label in batches(layer, 4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    data, label = layer.forward([])
    assert data.dtype == np.float32 and label.dtype == np.float32
    np.testing.assert_array_equal(data[:, 1], 10 + label)
    assert layer.backward([]) == []


@pytest.mark.parametrize("shuffle", [False, True])
def test_epoch_rewind_and_a_smaller_last_batch(counting_npz, shuffle):
    """The data-layer contract a test pass uses: (samples, batch size), back to the first
    sample of the first epoch's order, and batches of another size after a reshape."""
    layer = make(counting_npz, source="d.npz", batch_size=4, shuffle=shuffle)
    assert layer.epoch() == (10, 4) and layer.batches_per_epoch() == 3
    first = [label.tolist() for _, label in batches(layer, 2)]
    batches(layer, 3)  # somewhere in the second epoch
    layer.rewind()
    assert [label.tolist() for _, label in batches(layer, 2)] == first
    layer.set_batch_size(2)
    assert layer.reshape([]) == [(2, 2), (2,)]
    data, label = layer.forward([])
    seen = {int(v) for b in first for v in b}
    assert label.shape == (2,) and set(label.astype(int)) == set(range(10)) - seen
    if not shuffle:
        assert label.tolist() == [8, 9]
    np.testing.assert_array_equal(data[:, 1], 10 + label)
    assert layer.epoch() == (10, 4)  # the declared batch size is still the pass's


def test_batch_larger_than_the_dataset(counting_npz):
    layer = make(counting_npz, tops=["label"], source="d.npz", batch_size=23)
    (label,), = batches(layer, 1)
    assert label.tolist() == list(range(10)) * 2 + [0, 1, 2]
    assert layer.cursor.epoch == 2


def test_shuffle_covers_each_sample_once_per_epoch(counting_npz):
    layer = make(counting_npz, source="d.npz", batch_size=5, shuffle=True)
    labels = np.concatenate([b[1] for b in batches(layer, 8)]).astype(int).reshape(4, 10)
    for epoch in labels:
        assert sorted(epoch) == list(range(10))
    assert len({tuple(e) for e in labels}) == 4  # a fresh order each epoch
    assert labels[0].tolist() != list(range(10))


def test_shuffle_with_batches_crossing_epochs(counting_npz):
    layer = make(counting_npz, source="d.npz", batch_size=3, shuffle=True)
    labels = np.concatenate([b[1] for b in batches(layer, 10)]).astype(int)
    for epoch in labels.reshape(3, 10):
        assert sorted(epoch) == list(range(10))


def test_same_seed_same_batches(counting_npz):
    def run(seed):
        layer = make(counting_npz, seed=seed, source="d.npz", batch_size=4, shuffle=True)
        return np.concatenate([b[1] for b in batches(layer, 6)])
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize("shuffle", [True, False])
def test_resume_gives_the_same_batches(counting_npz, shuffle):
    straight = make(counting_npz, seed=1, source="d.npz", batch_size=3, shuffle=shuffle)
    expected = batches(straight, 12)
    first = make(counting_npz, seed=1, source="d.npz", batch_size=3, shuffle=shuffle)
    batches(first, 7)
    state = {k: v.copy() for k, v in first.state().items()}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    resumed = make(counting_npz, seed=99, source="d.npz", batch_size=3, shuffle=shuffle)
    resumed.load_state(state)
    for got, want in zip(batches(resumed, 5), expected[7:]):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_resume_with_another_dataset_is_an_error(counting_npz, tmp_path):
    layer = make(counting_npz, source="d.npz", batch_size=3)
    state = layer.state()
    np.savez(tmp_path / "e.npz", data=np.zeros((4, 2)), label=np.zeros(4))
    other = make(tmp_path, source="e.npz", batch_size=3)
    with pytest.raises(UserError, match=r"layer data \(Data\): .*10 samples.*now has 4"):
        other.load_state(state)
    with pytest.raises(UserError, match="lacks seed"):
        layer.load_state({"cursor": np.array([0]), "epoch": np.array([0]),
                          "num_samples": np.array([10])})


@pytest.fixture
def idx_pair(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9], np.uint8)
    write_idx(tmp_path / "images.idx", images, gz=True)
    write_idx(tmp_path / "labels.idx", labels)
    return tmp_path, images, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_idx_pair_scale_and_mean_value_match_numpy(idx_pair, dtype):
    folder, images, labels = idx_pair
    layer = make(folder, dtype=dtype, source=str(folder / "images.idx"),
                 label_source="labels.idx", batch_size=4, scale=0.5, mean_value=100)
    assert layer.shapes == [(4, 1, 5, 4), (4,)]  # a channel axis for (N, H, W) images
    (d1, l1), (d2, l2) = batches(layer, 2)
    index = [0, 1, 2, 3, 4, 5, 0, 1]
    x = images[:, None].astype(np.float64)
    want = ((x[index] - 100) * 0.5).astype(dtype)
    np.testing.assert_allclose(np.concatenate([d1, d2]), want, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([l1, l2]), labels[index])
    assert d1.dtype == dtype and l1.dtype == dtype


def test_mean_value_per_channel_and_mean_file(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (5, 3, 2, 2), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", data=x, label=np.arange(5))
    layer = make(tmp_path, source="d.npz", batch_size=5, mean_value=[10, 20, 30], scale=0.1)
    mean = np.array([10.0, 20, 30]).reshape(3, 1, 1)
    np.testing.assert_allclose(layer.forward([])[0], (x - mean) * 0.1, rtol=1e-6)
    per_pixel = np.random.default_rng(2).uniform(0, 255, (3, 2, 2))
    np.save(tmp_path / "mean.npy", per_pixel[None])  # Caffe-style leading 1 is accepted
    layer = make(tmp_path, source="d.npz", batch_size=5, mean_file="mean.npy", scale=2.0)
    np.testing.assert_allclose(layer.forward([])[0], (x - per_pixel) * 2.0, rtol=1e-5)


def test_kernel_alone():
    """The shared transform kernel without crop or flip: (x - mean) * scale per sample."""
    x = np.arange(12, dtype=np.uint8).reshape(4, 3, 1, 1)
    out = np.zeros((4, 3, 1, 1), np.float32)
    zeros = np.zeros(4, np.int64)
    transform_batch(x, zeros, zeros, np.zeros(4, np.bool_), np.float32([1, 2, 3]).reshape(3, 1, 1),
                    np.float32(0.5), out)
    np.testing.assert_array_equal(out, (x - np.reshape([1, 2, 3], (3, 1, 1))) * 0.5)


def test_uint8_data_stays_uint8(idx_pair):
    folder, images, _ = idx_pair
    layer = make(folder, source="images.idx", label_source="labels.idx", batch_size=2)
    assert layer.source.arrays[0].dtype == np.uint8
    full = images.size

    def arrays(obj, depth=0):
        if isinstance(obj, np.ndarray):
            yield obj
        elif depth < 3 and isinstance(obj, (list, tuple, dict)):
            for v in (obj.values() if isinstance(obj, dict) else obj):
                yield from arrays(v, depth + 1)
        elif depth < 3 and hasattr(obj, "__dict__") and not isinstance(obj, type):
            yield from arrays(vars(obj), depth + 1)

    floats = [a for a in arrays(vars(layer)) if a.dtype.kind == "f"]
    assert floats and all(a.size < full for a in floats)


def test_spiral_and_csv_sources(tmp_path):
    layer = make(source="spiral", batch_size=30, num_classes=4, points_per_class=10, noise=0.0)
    assert layer.num_samples == 40 and layer.shapes == [(30, 2), (30,)]
    d, label = layer.forward([])
    ref = datasets.spiral(4, 10, 0.0, 0)
    np.testing.assert_allclose(d, ref["data"][:30], rtol=1e-6)
    (tmp_path / "t.csv").write_text("f1,f2,y\n1,2,0\n3,4,1\n5,6,1\n")
    layer = make(tmp_path, source="t.csv", label_column="y", batch_size=2, mean_value=1)
    d, label = layer.forward([])
    np.testing.assert_array_equal(d, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(label, [0, 1])


def test_fashion_mnist_split_defaults_to_phase(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setattr(datasets, "_fashion_cache", {})
    monkeypatch.setenv("LAYERFLOW_DATA", str(tmp_path))
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix, n in (("train", 5), ("t10k", 3)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8),
                  gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8), gz=True)
    assert make(source="fashion-mnist", batch_size=2, phase="test").num_samples == 3
    assert make(source="fashion-mnist", batch_size=2, phase="test", split="train"
                ).num_samples == 5
    layer = make(source="fashion-mnist", batch_size=2, scale=1 / 255)
    assert layer.shapes == [(2, 1, 28, 28), (2,)] and layer.source.arrays[0].dtype == np.uint8


@pytest.mark.parametrize("params,message", [
    (dict(source="d.npz", noise=0.1), "noise only applies to source: spiral"),
    (dict(source="spiral", label_source="l.idx"), "label_source only applies to an IDX source"),
    (dict(source="spiral", split="train"), "split only applies to source: fashion-mnist"),
    (dict(source="spiral", label_column="y"), "label_column only applies to a .csv source"),
    (dict(source="fashion-mnist", split="val"), "split must be train or test"),
    (dict(source="spiral", mean_value=1, mean_file="m.npy"), "not both"),
    (dict(source="spiral", mean_value=[]), "non-empty"),
    (dict(source="spiral", batch_size=0), "greater than 0"),
    (dict(source="spiral", shufle=True), "Extra inputs"),
])
def test_bad_params(params, message):
    params.setdefault("batch_size", 2)
    with pytest.raises(ValidationError, match=message):
        Data.params_model(params)(**params)


def test_bad_key_in_yaml_points_at_it():
    src = load_yaml_text("layers:\n  - {name: d, type: Data, source: d.npz, batch_size: 2,\n"
                         "     num_classes: 3}\n", "net.yaml")
    with pytest.raises(UserError, match=r"net\.yaml:3:6: layers\[0\] \(d\): num_classes: .*"
                                        r"only applies to source: spiral"):
        parse_net(src)


def test_setup_errors_name_the_layer(tmp_path, idx_pair):
    folder = idx_pair[0]
    with pytest.raises(UserError, match=r"layer data \(Data\): mean_value has 3 values, but a "
                                        r"sample of spiral has shape \(2,\): give one value or 2"):
        make(source="spiral", batch_size=2, mean_value=[1, 2, 3])
    np.save(folder / "m.npy", np.zeros((2, 2)))
    with pytest.raises(UserError, match=r"layer data \(Data\): mean_file .*m\.npy has shape "
                                        r"\(2, 2\), but a sample .* \(1, 5, 4\)"):
        make(folder, source="images.idx", label_source="labels.idx", batch_size=2,
             mean_file="m.npy")
    with pytest.raises(UserError, match=r"layer data \(Data\): .*give the IDX file of labels"):
        make(folder, source="images.idx", batch_size=2)
    with pytest.raises(UserError, match=r"layer data \(Data\): 3 tops"):
        make(tops=["a", "b", "c"], source="spiral", batch_size=2)
    with pytest.raises(UserError, match=r"layer data \(Data\): .*missing\.npz: file not found"):
        make(tmp_path, source="missing.npz", batch_size=2)
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)))
    with pytest.raises(UserError, match=r'layer data \(Data\): .*d\.npz: no array named '
                                        r'"data".*has: x'):
        make(tmp_path, source="d.npz", batch_size=2)
    np.savez(tmp_path / "e.npz", data=np.zeros((0, 2)), label=np.zeros(0))
    with pytest.raises(UserError, match="no samples"):
        make(tmp_path, source="e.npz", batch_size=2)
    write_idx(folder / "short.idx", np.zeros(5, np.uint8))
    with pytest.raises(UserError, match=r"short\.idx has 5 labels but .*images\.idx has 6"):
        make(folder, source="images.idx", label_source="short.idx", batch_size=2)


def test_registered_as_data():
    from layerflow.registry import LAYERS
    assert LAYERS.get("Data") is Data


# ---- labels checked when the data is read --------------------------------------------------

def test_check_labels_names_the_csv_line_and_the_value_as_written(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n1,0\n\n2,1\n3,4\n4,7\n")  # line 3 is blank
    layer = make(tmp_path, source="t.csv", batch_size=2)
    layer.check_labels(1, 8, None)  # 8 classes: every label is one
    with pytest.raises(UserError) as err:
        layer.check_labels(1, 4, None)
    assert str(err.value) == (f"layer data (Data): {tmp_path / 't.csv'}:5, column \"label\": "
                              f"label 4 is not a class index in [0, 4) (the first of 2 bad "
                              f"labels)")


@pytest.mark.parametrize("label,shown", [(1.5, "1.5"), (-1, "-1"), (3, "3")])
def test_check_labels_of_an_npz_and_ignore_label(tmp_path, label, shown):
    labels = np.array([0, 1, 2, label, 0], np.float32)
    np.savez(tmp_path / "d.npz", data=np.zeros((5, 2)), label=labels)
    layer = make(tmp_path, source="d.npz", batch_size=2)
    with pytest.raises(UserError) as err:
        layer.check_labels(1, 3, 255)
    assert str(err.value) == (f"layer data (Data): {tmp_path / 'd.npz'}: array \"label\", row 3: "
                              f"label {shown} is not a class index in [0, 3) nor the "
                              f"ignore_label 255")
    if label != 1.5:
        layer.check_labels(1, 3, int(label))  # the one bad label is the ignored one: fine


def test_check_labels_of_an_idx_pair(idx_pair):
    folder = idx_pair[0]  # labels 3 1 4 1 5 9
    layer = make(folder, source="images.idx", label_source="labels.idx", batch_size=2)
    layer.check_labels(1, 10, None)
    with pytest.raises(UserError, match=r"labels\.idx: item 4: label 5 is not a class index in "
                                        r"\[0, 5\) \(the first of 2 bad labels\)$"):
        layer.check_labels(1, 5, None)

