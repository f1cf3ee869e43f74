"""The dataset readers of layerflow.data, against small files built here byte by byte."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from layerflow import UserError
from layerflow import data


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False):
    raw = idx_bytes(np.asarray(array))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


# ---- spiral ----------------------------------------------------------------------------

def test_spiral_matches_cs231n_formula():
    d = data.spiral(num_classes=3, points_per_class=50, noise=0.2, seed=4)
    assert d["data"].shape == (150, 2) and d["data"].dtype == np.float64
    assert d["label"].shape == (150,) and d["label"].dtype == np.int64
    rng = np.random.default_rng(4)
    r = np.linspace(0, 1, 50)
    for j in range(3):
        t = np.linspace(4 * j, 4 * (j + 1), 50) + rng.standard_normal(50) * 0.2
        np.testing.assert_allclose(d["data"][j * 50:(j + 1) * 50],
                                   np.c_[r * np.sin(t), r * np.cos(t)])
        assert (d["label"][j * 50:(j + 1) * 50] == j).all()


def test_spiral_is_deterministic_and_checks_its_arguments():
    a, b = data.spiral(seed=1), data.spiral(seed=1)
    np.testing.assert_array_equal(a["data"], b["data"])
    assert not np.array_equal(a["data"], data.spiral(seed=2)["data"])
    with pytest.raises(UserError, match="num_classes"):
        data.spiral(num_classes=0)
    with pytest.raises(UserError, match="noise"):
        data.spiral(noise=float("nan"))


# ---- IDX -------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_uint8_images(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    # the name says nothing: gzip is told by its magic bytes
    path = write_idx(tmp_path / "images.idx", images, gz=gz)
    out = data.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 4, 3)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_read_idx_multibyte_types_come_back_native(tmp_path, dtype):
    step = 1 if dtype == "i1" else 37
    values = (np.arange(-6, 6).reshape(3, 4) * step).astype(dtype)
    out = data.read_idx(write_idx(tmp_path / "x.idx", values))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_read_idx_bad_magic(tmp_path, magic):
    path = tmp_path / "bad.idx"
    path.write_bytes(magic + struct.pack(">I", 3) + b"abc")
    with pytest.raises(UserError, match=r"bad\.idx: not an IDX file: bad magic number"):
        data.read_idx(path)


def test_read_idx_truncated_names_file_and_byte_counts(tmp_path):
    raw = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(UserError) as err:
        data.read_idx(path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "7840" in msg and "7740" in msg


def test_read_idx_oversized(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.int32)) + b"\0" * 5)
    with pytest.raises(UserError, match=r"x\.idx: has extra bytes.*promises 24 data bytes, the "
                                        r"file has 29"):
        data.read_idx(path)


def test_read_idx_short_header_corrupt_gzip_and_missing_file(tmp_path):
    (tmp_path / "a").write_bytes(b"\0\0\x08\x03" + struct.pack(">I", 2))
    with pytest.raises(UserError, match="truncated IDX header"):
        data.read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"\0\0")
    with pytest.raises(UserError, match="shorter than the 4-byte magic"):
        data.read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(gzip.compress(b"\0\0\x08\x01" + b"\0" * 100)[:-12])
    with pytest.raises(UserError, match="not a valid gzip file"):
        data.read_idx(tmp_path / "c")
    with pytest.raises(UserError, match="nope.idx: file not found"):
        data.read_idx(tmp_path / "nope.idx")


def test_read_idx_nan_is_refused(tmp_path):
    x = np.zeros((4, 2), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(UserError, match=r"f\.idx: array \"data\" .*NaN.*index \(2, 1\) \(nan\);"):
        data.read_idx(write_idx(tmp_path / "f.idx", x))


# ---- NPZ -------------------------------------------------------------------------------

def test_read_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((5, 3), np.float32), y=np.arange(5), unused=np.zeros(2))
    out = data.read_npz(path, ["x", "y"])
    assert list(out) == ["x", "y"] and out["x"].shape == (5, 3) and out["y"].dtype == np.int64


def test_read_npz_missing_array_lists_present_ones(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((5, 3)), y=np.arange(5))
    with pytest.raises(UserError) as err:
        data.read_npz(path, ["data", "label"])
    msg = str(err.value)
    assert str(path) in msg and '"data"' in msg and "x, y" in msg


def test_read_npz_length_mismatch_names_both(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=np.ones((5, 3)), label=np.arange(4))
    with pytest.raises(UserError, match=r'd\.npz: arrays "data" and "label" have different '
                                        r'lengths \(5 vs 4\)'):
        data.read_npz(path, ["data", "label"])


def test_read_npz_object_array_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=np.array([np.ones(2), "a"], dtype=object), label=np.arange(2))
    with pytest.raises(UserError, match=r'd\.npz: array "data" is an object array'):
        data.read_npz(path, ["data", "label"])


def test_read_npz_nan_strings_npy_and_garbage(tmp_path):
    path = tmp_path / "d.npz"
    x = np.ones((5, 3))
    x[3, 0] = np.inf
    np.savez(path, data=x)
    with pytest.raises(UserError, match=r'd\.npz: array "data" .*index \(3, 0\) \(inf\);'):
        data.read_npz(path, ["data"])
    np.savez(path, data=np.array(["a", "b"]))
    with pytest.raises(UserError, match=r'array "data" has dtype <U1'):
        data.read_npz(path, ["data"])
    np.save(tmp_path / "single.npy", np.ones(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(UserError, match=r"single array \(\.npy\)"):
        data.read_npz(tmp_path / "single.npz", ["data"])
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match=r"junk\.npz: not a readable \.npz archive"):
        data.read_npz(tmp_path / "junk.npz", ["data"])


# ---- CSV -------------------------------------------------------------------------------

def test_read_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1.5,0,2\n-1,2,3e2\n\n0,1,0\n")
    out = data.read_csv(path)
    np.testing.assert_array_equal(out["data"], [[1.5, 2], [-1, 300], [0, 0]])
    np.testing.assert_array_equal(out["label"], [0, 2, 1])
    assert out["label"].dtype == np.int64 and out["data"].dtype == np.float64
    path.write_text("y,a\n0.5,1\n1.5,2\n")
    out = data.read_csv(path, label_column="y")
    assert out["label"].dtype == np.float64 and out["data"].shape == (2, 1)


def test_read_csv_bad_cell_names_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n1,1,two\n")
    with pytest.raises(UserError, match=r"d\.csv:3: column \"b\": 'two' is not a number"):
        data.read_csv(path)


def test_read_csv_nan_ragged_and_missing_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label\n1,0\nnan,1\n")
    with pytest.raises(UserError, match=r"d\.csv:3: column \"a\": 'nan' is NaN or infinite"):
        data.read_csv(path)
    path.write_text("a,label\n1,0\n1,0,3\n")
    with pytest.raises(UserError, match=r"d\.csv:3: 3 cells, the header has 2 columns"):
        data.read_csv(path)
    path.write_text("a,b\n1,0\n")
    with pytest.raises(UserError, match=r'no column named "label".*columns are: a, b'):
        data.read_csv(path)
    path.write_text("")
    with pytest.raises(UserError, match="empty file"):
        data.read_csv(path)
    path.write_text("a,label\n")
    with pytest.raises(UserError, match="no data rows"):
        data.read_csv(path)


# ---- Fashion-MNIST ---------------------------------------------------------------------

@pytest.fixture
def fresh_fashion(monkeypatch, tmp_path):
    """No system copy, an empty cache, and $LAYERFLOW_DATA pointing into tmp_path."""
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-such-dir")
    monkeypatch.setattr(data, "_fashion_cache", {})
    monkeypatch.setenv("LAYERFLOW_DATA", str(tmp_path / "lf"))
    return tmp_path / "lf" / "fashion-mnist"


def write_fashion(folder, split="train", n=6, labels=None, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = np.random.default_rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz=gz)
    return images, labels


def test_fashion_mnist_missing_says_how_to_get_it(fresh_fashion):
    with pytest.raises(UserError) as err:
        data.fashion_mnist("train")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "$LAYERFLOW_DATA/fashion-mnist/" in msg and str(fresh_fashion) in msg


def test_fashion_mnist_from_layerflow_data_read_once(fresh_fashion, monkeypatch):
    images, labels = write_fashion(fresh_fashion, "test", n=7, gz=False)
    calls = []
    real = data.read_idx
    monkeypatch.setattr(data, "read_idx", lambda p: calls.append(p) or real(p))
    out = data.fashion_mnist("test")
    assert out["data"].shape == (7, 1, 28, 28) and out["data"].dtype == np.uint8
    assert out["label"].dtype == np.uint8
    np.testing.assert_array_equal(out["data"][:, 0], images)
    np.testing.assert_array_equal(out["label"], labels)
    again = data.fashion_mnist("test")
    assert len(calls) == 2 and again["data"] is out["data"]
    assert not out["data"].flags.writeable  # the cached copy is shared: nobody may write it
    with pytest.raises(UserError, match="split"):
        data.fashion_mnist("val")


def test_fashion_mnist_count_mismatch_and_partial_folder(fresh_fashion):
    write_fashion(fresh_fashion, "train", n=6, labels=np.zeros(5, np.uint8))
    with pytest.raises(UserError, match="has 5 labels but .* has 6 images"):
        data.fashion_mnist("train")
    (fresh_fashion / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="not train-labels-idx1-ubyte"):
        data.fashion_mnist("train")


def test_fashion_mnist_bad_label(fresh_fashion):
    write_fashion(fresh_fashion, "train", n=3, labels=np.array([1, 12, 0], np.uint8))
    with pytest.raises(UserError, match="label 12 at index 1"):
        data.fashion_mnist("train")


@pytest.mark.skipif(not all((data.FASHION_MNIST_SYSTEM_DIR / f).exists() for f in (
    "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(monkeypatch, split, n):
    monkeypatch.delenv("LAYERFLOW_DATA", raising=False)
    out = data.fashion_mnist(split)
    assert out["data"].shape == (n, 1, 28, 28) and out["data"].dtype == np.uint8
    assert out["label"].shape == (n,) and out["label"].dtype == np.uint8
    assert out["label"].min() == 0 and out["label"].max() == 9
    assert np.bincount(out["label"]).tolist() == [n // 10] * 10


# ---- the cursor ------------------------------------------------------------------------

def test_cursor_wraps_and_reshuffles_each_epoch():
    c = data.Cursor(5, shuffle=False, seed=0)
    out = np.zeros(3, np.int64)
    seen = [c.next(out).tolist() for _ in range(4)]
    assert seen == [[0, 1, 2], [3, 4, 0], [1, 2, 3], [4, 0, 1]]
    c = data.Cursor(5, shuffle=True, seed=9)
    flat = np.concatenate([c.next(out).copy() for _ in range(10)])
    epochs = flat.reshape(6, 5)
    for e, order in enumerate(epochs):
        np.testing.assert_array_equal(order, np.random.default_rng([9, e]).permutation(5))
    assert c.epoch == 6 and c.position == 0
