"""Caffe's data sources (lmdb, hdf5, images) against numpy references, Caffe's transform order,
prefetch (same batches, exact resume, errors in the main thread), and the errors that name the
file, the key or the line.

Every fixture is written here: LMDBs of Datum records encoded by hand (tests/caffe/conftest.py's
wire encoder, independent of layerflow's caffe.proto), PNG/JPEG files by Pillow, .h5 files by
h5py.
"""
from __future__ import annotations

import io
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from layerflow import UserError
from layerflow.layers.data import Data

lmdb = pytest.importorskip("lmdb")
h5py = pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")


# ---- fixtures -------------------------------------------------------------------------------

def put(path: Path, records: dict[bytes, bytes]) -> Path:
    """An LMDB folder holding `records` (written in the order given; LMDB sorts by key)."""
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for k, v in records.items():
            txn.put(k, v)
    env.close()
    return path


def raw_db(wire, path, images, labels, order=None) -> Path:
    """Raw uint8 Datums, keys as convert_imageset writes them, inserted in `order`."""
    order = range(len(images)) if order is None else order
    recs = {}
    for i in order:
        c, h, w = images[i].shape
        recs[f"{i:08d}_img{i}.png".encode()] = wire.datum(c, h, w, images[i].tobytes(),
                                                          int(labels[i]))
    return put(path, recs)


def encoded_datum(wire, image_bytes: bytes, label: int) -> bytes:
    """Datum: data 4 (the file's bytes), label 5, encoded 7 = true; C/H/W left unset."""
    return wire.f_bytes(4, image_bytes) + wire.f_varint(5, label) + wire.f_varint(7, 1)


def float_datum(wire, x: np.ndarray, label: int) -> bytes:
    """Datum: channels 1, height 2, width 3, label 5, float_data 6 (packed floats)."""
    c, h, w = x.shape
    floats = struct.pack(f"<{x.size}f", *x.reshape(-1).tolist())
    return (wire.f_varint(1, c) + wire.f_varint(2, h) + wire.f_varint(3, w)
            + wire.f_varint(5, label) + wire.f_bytes(6, floats))


def png(hwc: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, "PNG")
    return buf.getvalue()


def make(base, tops=("data", "label"), phase="train", seed=0, dtype=np.float32, **params):
    layer = Data("data", Data.params_model(params)(**params), phase=phase, dtype=dtype,
                 rng=np.random.default_rng(seed), base_dir=base, top_names=list(tops))
    layer.shapes = layer.build([])
    return layer


def batches(layer, k):
    return [[t.copy() for t in layer.forward([])] for _ in range(k)]


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("layerflow-prefetch")]


def caffe_transform(x, *, crop=0, h_off=0, w_off=0, mirror=False, mean=None, mean_value=None,
                    scale=1.0):
    """data_transformer.cpp's loop, written out: for each c, h, w of the crop, read the
    source at the uncropped position, subtract the mean there (file) or of the channel
    (values), multiply by scale, write at w or at crop_w - 1 - w when mirrored."""
    c, height, width = x.shape
    ch, cw = (crop, crop) if crop else (height, width)
    out = np.zeros((c, ch, cw), np.float32)
    for k in range(c):
        for h in range(ch):
            for w in range(cw):
                v = np.float32(x[k, h + h_off, w + w_off])
                if mean is not None:
                    v = v - np.float32(mean[k, h + h_off, w + w_off])
                elif mean_value is not None:
                    v = v - np.float32(mean_value[k if len(mean_value) > 1 else 0])
                out[k, h, cw - 1 - w if mirror else w] = v * np.float32(scale)
    return out


@pytest.fixture
def images():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (10, 3, 6, 7), dtype=np.uint8), np.arange(10) % 4


# ---- LMDB -----------------------------------------------------------------------------------

def test_lmdb_raw_records_in_key_order_with_wrap_around(wire, tmp_path, images):
    x, y = images
    # inserted backwards: the order read is LMDB's key order, as Caffe's cursor reads it
    raw_db(wire, tmp_path / "db", x, y, order=reversed(range(10)))
    layer = make(tmp_path, source="db", backend="lmdb", batch_size=4)
    assert layer.shapes == [(4, 3, 6, 7), (4,)] and layer.num_samples == 10
    got = batches(layer, 3)
    index = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    np.testing.assert_array_equal(np.concatenate([d for d, _ in got]), x[index])
    np.testing.assert_array_equal(np.concatenate([l for _, l in got]), y[index])


def test_lmdb_float_data_and_one_top(wire, tmp_path):
    xs = np.random.default_rng(1).normal(0, 10, (3, 2, 2, 3)).astype(np.float32)
    put(tmp_path / "db", {f"{i}".encode(): float_datum(wire, xs[i], i) for i in range(3)})
    layer = make(tmp_path, tops=["data"], source="db", backend="lmdb", batch_size=3, scale=2)
    (data,) = layer.forward([])
    np.testing.assert_array_equal(data, xs * np.float32(2))


def test_lmdb_encoded_png_and_jpeg_decode_to_bgr(wire, tmp_path, images):
    x, _ = images
    hwc = x[:3].transpose(0, 2, 3, 1)  # RGB pixels as a viewer shows them
    gray = x[3, 0]
    jpeg = io.BytesIO()
    Image.fromarray(gray).save(jpeg, "JPEG", quality=95)
    put(tmp_path / "db", {b"0": encoded_datum(wire, png(hwc[0]), 0),
                          b"1": encoded_datum(wire, png(hwc[1]), 1),
                          b"2": encoded_datum(wire, png(hwc[2]), 2)})
    layer = make(tmp_path, source="db", backend="lmdb", batch_size=3)
    data, label = layer.forward([])
    # Caffe's channel order is OpenCV's: B, G, R
    np.testing.assert_array_equal(data, x[:3, ::-1].astype(np.float32))
    np.testing.assert_array_equal(label, [0, 1, 2])
    # force_gray: one channel, luma 0.299 R + 0.587 G + 0.114 B (within rounding)
    layer = make(tmp_path, source="db", backend="lmdb", batch_size=3, force_gray=True)
    data, _ = layer.forward([])
    r, g, b = x[:3, 0].astype(float), x[:3, 1].astype(float), x[:3, 2].astype(float)
    assert data.shape == (3, 1, 6, 7)
    assert np.abs(data[:, 0] - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 1
    # a gray JPEG kept as stored (1 channel), or forced to 3 equal BGR channels
    put(tmp_path / "gray", {b"0": encoded_datum(wire, jpeg.getvalue(), 5)})
    (d1,) = make(tmp_path, tops=["data"], source="gray", backend="lmdb", batch_size=1).forward([])
    assert d1.shape == (1, 1, 6, 7) and np.abs(d1[0, 0] - gray).max() <= 8  # lossy JPEG
    (d3,) = make(tmp_path, tops=["data"], source="gray", backend="lmdb", batch_size=1,
                 force_color=True).forward([])
    assert d3.shape == (1, 3, 6, 7)
    np.testing.assert_array_equal(d3[0], np.repeat(d1[0], 3, axis=0))


def test_lmdb_shuffle_reads_each_record_once_per_epoch(wire, tmp_path, images):
    x, y = images
    raw_db(wire, tmp_path / "db", x, np.arange(10))
    layer = make(tmp_path, source="db", backend="lmdb", batch_size=5, shuffle=True)
    epochs = [np.concatenate([l for _, l in batches(layer, 2)]) for _ in range(2)]
    for e in epochs:
        assert sorted(e.astype(int)) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    again = make(tmp_path, source="db", backend="lmdb", batch_size=5, shuffle=True)
    got = batches(again, 2)
    np.testing.assert_array_equal(np.concatenate([l for _, l in got]), epochs[0])
    np.testing.assert_array_equal(np.concatenate([d for d, _ in got]),
                                  x[epochs[0].astype(int)])


def test_lmdb_resume_in_the_middle_of_an_epoch(wire, tmp_path, images):
    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    a = make(tmp_path, source="db", backend="lmdb", batch_size=3)
    batches(a, 2)
    b = make(tmp_path, source="db", backend="lmdb", batch_size=3)
    b.load_state(a.state())
    for (d1, l1), (d2, l2) in zip(batches(a, 3), batches(b, 3)):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)


@pytest.mark.parametrize("mutate, message", [
    (lambda w: {b"00000000_a": b"\xff\xff\xff"}, "not a Caffe Datum"),
    (lambda w: {b"00000000_a": w.datum(1, 2, 2, b"\x00\x01\x02", 0)},
     "3 data bytes, but channels x height x width = 1 x 2 x 2 = 4"),
    (lambda w: {b"00000000_a": w.f_varint(1, 1) + w.f_varint(2, 2) + w.f_varint(3, 2)},
     "no pixels"),
    (lambda w: {b"00000000_a": encoded_datum(w, b"not a png", 0)}, "not an image Pillow"),
])
def test_a_bad_first_record_names_the_database_and_key(wire, tmp_path, mutate, message):
    put(tmp_path / "db", mutate(wire))
    with pytest.raises(UserError, match=r"layer data \(Data\): .*db: record 0 \(key "
                                        r"'00000000_a'\): " + message):
        make(tmp_path, source="db", backend="lmdb", batch_size=1)


def test_lmdb_setup_errors(wire, tmp_path, images):
    x, y = images
    with pytest.raises(UserError, match=r"nope: LMDB folder not found"):
        make(tmp_path, source="nope", backend="lmdb", batch_size=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: not an LMDB database \(no data.mdb"):
        make(tmp_path, source="empty", backend="lmdb", batch_size=1)
    raw_db(wire, tmp_path / "db", x, y)
    with pytest.raises(UserError, match=r"force_gray applies to encoded records.*raw pixels"):
        make(tmp_path, source="db", backend="lmdb", batch_size=1, force_gray=True)
    with pytest.raises(UserError, match=r"3 tops, but an LMDB of Datum records gives two"):
        make(tmp_path, tops=["a", "b", "c"], source="db", backend="lmdb", batch_size=1)
    with pytest.raises(UserError, match=r"force_color applies to sources that decode images"):
        np.savez(tmp_path / "d.npz", data=np.zeros((2, 3)), label=np.zeros(2))
        make(tmp_path, source="d.npz", batch_size=1, force_color=True)


def test_a_missing_library_names_the_extra(wire, tmp_path, images, monkeypatch):
    import sys

    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError
    with pytest.raises(UserError, match=r"needs the Python package 'lmdb'.*layerflow\[caffe\]"):
        make(tmp_path, source="db", backend="lmdb", batch_size=1)


def test_labels_out_of_range_are_found_in_the_batch_that_reads_them(wire, tmp_path, images):
    from layerflow.config import load_yaml_text, parse_net
    from layerflow.net import Net

    x, _ = images
    raw_db(wire, tmp_path / "db", x[:4], [0, 1, 7, 1])
    text = """
    layers:
      - {name: data, type: Data, top: [data, label], source: db, backend: lmdb, batch_size: 2}
      - {name: ip, type: InnerProduct, bottom: data, num_output: 3}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
    """
    net = Net(parse_net(load_yaml_text(text, str(tmp_path / "net.yaml"))), "train")
    net.forward()  # records 0, 1
    with pytest.raises(UserError, match=r"db: record 2 \(key '00000002_img2.png'\): label 7 is "
                                        r"not a class index in \[0, 3\)"):
        net.forward()


# ---- the transform: Caffe's order ---------------------------------------------------------------

def test_full_size_mean_file_and_centre_crop_at_a_known_offset(wire, tmp_path, images):
    """Test phase, crop 4 of 6 x 7: offsets ((6-4)//2, (7-4)//2) = (1, 1); the mean file is
    full-size and indexed at the uncropped position; then the scale."""
    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    mean = np.random.default_rng(3).uniform(0, 255, (3, 6, 7))  # every position differs
    (tmp_path / "mean.binaryproto").write_bytes(wire.blob(mean, legacy=[1, 3, 6, 7]))
    layer = make(tmp_path, phase="test", source="db", backend="lmdb", batch_size=5,
                 crop_size=4, mean_file="mean.binaryproto", scale=0.5)
    data, _ = layer.forward([])
    assert data.shape == (5, 3, 4, 4)
    want = np.stack([caffe_transform(x[i], crop=4, h_off=1, w_off=1, mean=mean, scale=0.5)
                     for i in range(5)])
    np.testing.assert_array_equal(data, want)
    # the order matters: scaling before subtracting, or a mean cropped at (0, 0), differ
    assert not np.allclose(data, (x[:5, :, 1:5, 1:5] * 0.5 - mean[:, 1:5, 1:5]))
    assert not np.allclose(data, (x[:5, :, 1:5, 1:5] - mean[:, :4, :4]) * 0.5)


def test_random_crops_and_mirrors_in_training_are_caffe_windows(wire, tmp_path, images):
    x, y = images
    raw_db(wire, tmp_path / "db", x, np.arange(10))
    kw = dict(source="db", backend="lmdb", batch_size=5, crop_size=4, mirror=True,
              mean_value=[10, 20, 30], scale=0.25)
    layer = make(tmp_path, **kw)
    seen = set()
    for data, label in batches(layer, 4):
        for d, i in zip(data, label.astype(int)):
            found = [(h, w, m) for h in range(3) for w in range(4) for m in (False, True)
                     if np.array_equal(d, caffe_transform(x[i], crop=4, h_off=h, w_off=w,
                                                          mirror=m, mean_value=[10, 20, 30],
                                                          scale=0.25))]
            assert found, f"sample {i} is not a crop of its image"
            seen.update(found)
    assert len({s[:2] for s in seen}) > 3 and {s[2] for s in seen} == {False, True}
    # from the layer's rng: the same seed gives the same windows
    again = make(tmp_path, **kw)
    for (a, _), (b, _) in zip(batches(make(tmp_path, **kw), 3), batches(again, 3)):
        np.testing.assert_array_equal(a, b)


def test_mirror_is_random_in_the_test_phase_too(wire, tmp_path, images):
    """Caffe's trap: only the crop is centred in TEST; mirror: true still flips at random."""
    x, y = images
    raw_db(wire, tmp_path / "db", x, np.arange(10))
    layer = make(tmp_path, phase="test", source="db", backend="lmdb", batch_size=10,
                 mirror=True)
    flips = []
    for data, label in batches(layer, 3):
        for d, i in zip(data, label.astype(int)):
            if np.array_equal(d, x[i]):
                flips.append(False)
            else:
                np.testing.assert_array_equal(d, x[i][:, :, ::-1])
                flips.append(True)
    assert 0 < sum(flips) < len(flips)


# ---- prefetch ---------------------------------------------------------------------------------

def test_prefetch_gives_the_batches_and_states_of_a_run_without_it(wire, tmp_path, images):
    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    kw = dict(source="db", backend="lmdb", batch_size=4, shuffle=True, crop_size=5,
              mirror=True)
    on, off = make(tmp_path, prefetch=True, **kw), make(tmp_path, prefetch=False, **kw)
    assert on.prefetcher is not None and off.prefetcher is None

    def step(layer):
        out = [t.copy() for t in layer.forward([])]
        return out, layer.state(), layer.rng.bit_generator.state

    for k in range(9):
        if k == 4:  # a test pass's moves: back to the start, a smaller batch, then back
            for layer in (on, off):
                layer.rewind()
                layer.set_batch_size(3)
                layer.reshape([])
        if k == 6:
            for layer in (on, off):
                layer.set_batch_size(4)
                layer.reshape([])
        (a, sa, ra), (b, sb, rb) = step(on), step(off)
        for p, q in zip(a, b):
            np.testing.assert_array_equal(p, q)
        # the state is the consumed batch's, not the prefetched one's
        assert {k: v.tolist() for k, v in sa.items()} == {k: v.tolist() for k, v in sb.items()}
        assert ra == rb
    on.close()
    assert not prefetch_threads()


def test_restoring_a_state_drops_the_prefetched_batch(wire, tmp_path, images):
    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    kw = dict(source="db", backend="lmdb", batch_size=3, mirror=True)
    a = make(tmp_path, **kw)
    batches(a, 2)
    state, rng = a.state(), a.rng.bit_generator.state
    want = batches(a, 2)
    b = make(tmp_path, **kw)
    batches(b, 3)  # b prefetched its 4th batch; restoring the state must drop it
    b.load_state(state)
    b.rng.bit_generator.state = rng
    for (d1, l1), (d2, l2) in zip(want, batches(b, 2)):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)


def test_a_bad_record_met_by_prefetch_is_raised_in_the_main_thread(wire, tmp_path, images):
    x, y = images
    recs = {f"{i:08d}".encode(): wire.datum(3, 6, 7, x[i].tobytes(), int(y[i]))
            for i in range(8)}
    recs[b"00000005"] = wire.datum(3, 6, 7, x[5].tobytes()[:-1], 0)  # one byte short
    put(tmp_path / "db", recs)
    layer = make(tmp_path, source="db", backend="lmdb", batch_size=2)
    batches(layer, 2)  # records 0-3; the thread meets record 5 while the net runs 2, 3
    state = layer.state()
    for _ in range(2):  # raised again when asked again, never a hang
        with pytest.raises(UserError, match=r"layer data \(Data\): .*db: record 5 \(key "
                                            r"'00000005'\): 125 data bytes, but channels x "
                                            r"height x width = 3 x 6 x 7 = 126"):
            layer.forward([])
    assert layer.state()["cursor"].tolist() == state["cursor"].tolist() == [4]
    assert not prefetch_threads()


# ---- HDF5 -----------------------------------------------------------------------------------------

@pytest.fixture
def h5_list(tmp_path):
    """Two files listed by data/train.txt, relative to the list's folder: 5 and 3 rows."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(5, 2, 3)).astype(np.float32), rng.normal(size=(3, 2, 3)).astype(
        np.float32)]
    ys = [np.arange(5), 5 + np.arange(3)]
    for name, x, y in zip(("a.h5", "b.h5"), xs, ys):
        with h5py.File(folder / name, "w") as f:
            f["data"] = x
            f["label"] = y.astype(np.float64)  # Caffe's HDF5 labels are often floats
    (folder / "train.txt").write_text("a.h5\n  b.h5\n")
    return tmp_path, np.concatenate(xs), np.concatenate(ys)


def test_hdf5_list_rows_in_order_across_files(h5_list):
    base, x, y = h5_list
    layer = make(base, source="data/train.txt", backend="hdf5", batch_size=3, scale=2)
    assert layer.shapes == [(3, 2, 3), (3,)] and layer.num_samples == 8
    got = batches(layer, 4)
    index = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    np.testing.assert_array_equal(np.concatenate([d for d, _ in got]), x[index] * 2)
    np.testing.assert_array_equal(np.concatenate([l for _, l in got]), y[index])


def test_hdf5_shuffle_permutes_files_and_rows_within_files(h5_list):
    base, x, y = h5_list
    layer = make(base, source="data/train.txt", backend="hdf5", batch_size=4, shuffle=True)
    orders = []
    for _ in range(4):  # four epochs
        labels = np.concatenate([l for _, l in batches(layer, 2)]).astype(int)
        assert sorted(labels) == list(range(8))
        first_file = set(labels[:5]) == set(range(5))
        assert first_file or set(labels[:3]) == {5, 6, 7}  # one file, then the other
        orders.append(tuple(labels))
    assert len(set(orders)) > 1


def test_one_h5_file_and_named_tops(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["feat"] = np.arange(12, dtype=np.int16).reshape(6, 2)
        f["target"] = np.arange(6, dtype=np.float32) / 2
    layer = make(tmp_path, tops=["feat", "target"], source="d.h5", batch_size=4)
    feat, target = layer.forward([])
    np.testing.assert_array_equal(feat, np.arange(8).reshape(4, 2))
    np.testing.assert_array_equal(target, np.arange(4) / 2)


def test_hdf5_errors_name_the_file_and_dataset(h5_list, tmp_path):
    base, _, _ = h5_list
    with pytest.raises(UserError, match=r"a.h5: no dataset named \"images\" .*has: data, "
                                        r"label"):
        make(base, tops=["images", "label"], source="data/train.txt", backend="hdf5",
             batch_size=1)
    (base / "data" / "bad.txt").write_text("a.h5\nmissing.h5\n")
    with pytest.raises(UserError, match=r"bad.txt: lists missing.h5, which is not a file "
                                        r"\(tried .*data/missing.h5 nor .*missing.h5\)"):
        make(base, source="data/bad.txt", backend="hdf5", batch_size=1)
    with h5py.File(base / "data" / "ragged.h5", "w") as f:
        f["data"] = np.zeros((4, 2))
        f["label"] = np.zeros(3)
    (base / "data" / "ragged.txt").write_text("ragged.h5")
    with pytest.raises(UserError, match=r"ragged.h5: dataset \"label\" has 3 rows, \"data\" "
                                        r"has 4"):
        make(base, source="data/ragged.txt", backend="hdf5", batch_size=1)


def test_hdf5_list_paths_fall_back_to_the_working_directory(h5_list, monkeypatch):
    """Caffe opens listed paths from the working directory: its own lists still work."""
    base, x, _ = h5_list
    (base / "lists").mkdir()
    (base / "lists" / "caffe.txt").write_text("data/a.h5\n")  # relative to the cwd
    monkeypatch.chdir(base)
    layer = make(base, source="lists/caffe.txt", backend="hdf5", batch_size=5)
    np.testing.assert_array_equal(layer.forward([])[0], x[:5])


# ---- image lists --------------------------------------------------------------------------------

@pytest.fixture
def image_list(tmp_path, images):
    x, y = images
    folder = tmp_path / "imgs"
    folder.mkdir()
    lines = []
    for i in range(4):
        Image.fromarray(x[i].transpose(1, 2, 0)).save(folder / f"{i}.png")
        lines.append(f"{i}.png {y[i]}")
    Image.fromarray(x[4, 0]).save(folder / "gray.png")
    lines.append(f"gray.png {y[4]}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, x, y


def test_image_list_bgr_gray_and_labels(image_list):
    base, x, y = image_list
    layer = make(base, source="imgs/list.txt", backend="images", batch_size=5)
    data, label = layer.forward([])
    np.testing.assert_array_equal(data[:4], x[:4, ::-1])  # BGR, as OpenCV reads them
    np.testing.assert_array_equal(data[4], np.repeat(x[4, :1], 3, axis=0))  # gray -> 3 equal
    np.testing.assert_array_equal(label, y[:5])
    gray = make(base, source="imgs/list.txt", backend="images", batch_size=5, is_color=False)
    data, _ = gray.forward([])
    assert data.shape == (5, 1, 6, 7)
    np.testing.assert_array_equal(data[4, 0], x[4, 0])


def opencv_bilinear(img, height, width):
    """cv::resize(INTER_LINEAR) in floating point: source coordinate (d + 0.5) * in/out - 0.5,
    clamped to the image, two taps per axis."""
    c, h, w = img.shape

    def taps(n_in, n_out):
        f = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        f = np.clip(f, 0, n_in - 1)
        i0 = np.floor(f).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, f - i0

    y0, y1, fy = taps(h, height)
    x0, x1, fx = taps(w, width)
    a = img.astype(float)
    top = a[:, y0][:, :, x0] * (1 - fx) + a[:, y0][:, :, x1] * fx
    bot = a[:, y1][:, :, x0] * (1 - fx) + a[:, y1][:, :, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


@pytest.mark.parametrize("size", [(11, 13), (3, 4), (6, 5)])
def test_image_list_resize_is_opencv_bilinear(image_list, size):
    base, x, _ = image_list
    layer = make(base, source="imgs/list.txt", backend="images", batch_size=4,
                 new_height=size[0], new_width=size[1])
    data, _ = layer.forward([])
    assert data.shape == (4, 3) + size
    for i in range(4):
        want = opencv_bilinear(x[i, ::-1], *size)
        assert np.abs(data[i] - want).max() <= 1.0  # OpenCV's fixed-point rounding


def test_image_list_root_folder_shuffle_and_rand_skip(image_list):
    base, x, y = image_list
    lst = base / "plain.txt"
    lst.write_text("".join(f"{i}.png {i}\n" for i in range(4)))
    layer = make(base, source="plain.txt", backend="images", batch_size=4,
                 root_folder="imgs/", shuffle=True)
    for _ in range(2):
        data, label = layer.forward([])
        assert sorted(label.astype(int)) == [0, 1, 2, 3]
        for d, i in zip(data, label.astype(int)):
            np.testing.assert_array_equal(d, x[i, ::-1])
    skipped = make(base, source="plain.txt", backend="images", batch_size=1,
                   root_folder="imgs/", rand_skip=3, seed=5)
    start = skipped.cursor.position
    assert 0 <= start < 3 and skipped.forward([])[1][0] == start


def test_images_of_several_sizes_need_a_crop(image_list):
    base, x, _ = image_list
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(base / "imgs" / "big.png")
    (base / "imgs" / "mixed.txt").write_text("0.png 0\nbig.png 1\n")
    layer = make(base, source="imgs/mixed.txt", backend="images", batch_size=2)
    with pytest.raises(UserError, match=r"mixed.txt:2: big.png: a sample of shape \(3, 9, 8\) "
                                        r"becomes \(3, 9, 8\), but the batch's samples are "
                                        r"\(3, 6, 7\).*give crop_size"):
        layer.forward([])
    cropped = make(base, phase="test", source="imgs/mixed.txt", backend="images",
                   batch_size=2, crop_size=5)
    data, _ = cropped.forward([])
    np.testing.assert_array_equal(data[0], x[0, ::-1, 0:5, 1:6])
    np.testing.assert_array_equal(data[1], 0)


def test_image_list_errors_name_the_line(image_list):
    base, _, _ = image_list
    (base / "imgs" / "bad.txt").write_text("0.png 0\n1.png one\n")
    with pytest.raises(UserError, match=r"bad.txt:2: expected `path label`.*'1.png one'"):
        make(base, source="imgs/bad.txt", backend="images", batch_size=1)
    (base / "imgs" / "gone.txt").write_text("0.png 0\n\nnope.png 1\n")
    layer = make(base, source="imgs/gone.txt", backend="images", batch_size=2)
    with pytest.raises(UserError, match=r"gone.txt:3: nope.png: image not found \(tried "
                                        r".*imgs/nope.png nor .*nope.png\)"):
        layer.forward([])
    with pytest.raises(ValueError, match=r"give new_height and new_width both"):
        make(base, source="imgs/list.txt", backend="images", batch_size=1, new_height=4)


# ---- deploy: the Transform does the test-phase transform ------------------------------------------

def test_deploy_net_centre_crops_and_never_mirrors(wire, tmp_path, images):
    from layerflow.builder import build_net

    x, y = images
    raw_db(wire, tmp_path / "db", x, y)
    mean = np.random.default_rng(4).uniform(0, 255, (3, 6, 7))
    np.save(tmp_path / "mean.npy", mean)
    (tmp_path / "net.yaml").write_text(
        "layers:\n"
        "  - {name: data, type: Data, top: [data, label], source: db, backend: lmdb,\n"
        "     batch_size: 4, crop_size: 4, mirror: true, mean_file: mean.npy, scale: 0.5}\n"
        "  - {name: ip, type: InnerProduct, num_output: 4}\n"
        "  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}\n")
    deploy = build_net(tmp_path / "net.yaml", deploy=True)
    kinds = [(l.type, getattr(l.p, "crop_size", None)) for l in deploy.layers]
    assert kinds[:2] == [("Input", None), ("Transform", 4)]
    assert "mirror" not in type(deploy.layers[1].p).model_fields
    deploy.forward({"data": x[:4].astype(np.float32)})
    test = build_net(tmp_path / "net.yaml", "test", overrides=None)
    test.layer_by_name["data"].transformer.mirror = False  # the deterministic half
    test.forward()
    np.testing.assert_array_equal(deploy.blobs["data"].data, test.blobs["data"].data)
    np.testing.assert_allclose(deploy.blobs["ip"].data, test.blobs["ip"].data, rtol=1e-6)


def test_training_resumes_exactly_with_prefetch_crops_and_mirrors(wire, tmp_path, images):
    """2N iterations straight == N, snapshot, resume, N more, bit for bit, with the train and
    test data read from LMDBs by prefetching layers that shuffle, crop and mirror."""
    import yaml

    from layerflow.snapshot import snapshot_paths
    from layerflow.solver import Solver
    from layerflow.trainer import Events, Trainer

    x, y = images
    raw_db(wire, tmp_path / "train_db", x, y)
    raw_db(wire, tmp_path / "test_db", x[:6], y[:6])

    def run(folder, resume=None):
        folder.mkdir()
        (folder / "net.yaml").write_text(
            "layers:\n"
            f"  - {{name: data, type: Data, top: [data, label], source: {tmp_path}/train_db,\n"
            "     backend: lmdb, batch_size: 3, shuffle: true, crop_size: 5, mirror: true,\n"
            "     scale: 0.01, include: {phase: train}}\n"
            f"  - {{name: data, type: Data, top: [data, label], source: {tmp_path}/test_db,\n"
            "     backend: lmdb, batch_size: 4, crop_size: 5, mirror: true, scale: 0.01,\n"
            "     include: {phase: test}}\n"
            "  - {name: ip, type: InnerProduct, bottom: data, num_output: 4}\n"
            "  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}\n")
        (folder / "solver.yaml").write_text(yaml.safe_dump(dict(
            net="net.yaml", type="SGD", base_lr=0.1, momentum=0.9, max_iter=14, snapshot=7,
            test_interval=5, test_iter=2, random_seed=3, snapshot_prefix="snap/s")))
        trainer = Trainer(Solver.from_yaml(folder / "solver.yaml"), Events())
        if resume is not None:
            trainer.resume(resume)
        trainer.run()
        net = trainer.solver.net
        assert net.layer_by_name["data"].prefetcher is not None
        return {k: v.copy() for k, v in net.state_dict().items()}

    straight = run(tmp_path / "a")
    _, state = snapshot_paths(tmp_path / "a" / "snap" / "s", 7)
    resumed = run(tmp_path / "b", resume=state)
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert np.array_equal(straight[k], resumed[k]), k


def test_caffe_image_data_and_hdf5_data_prototxts_run_as_they_are(image_list, h5_list, write,
                                                                  monkeypatch):
    """ImageData and HDF5Data layers of a prototxt, their paths relative to the working
    directory as Caffe opens them, read by the images and hdf5 sources."""
    from layerflow.builder import build_net

    base, x, _ = image_list
    write(base, "net.prototxt", """
        layer { name: "img" type: "ImageData" top: "img" top: "label"
          image_data_param { source: "imgs/list.txt" batch_size: 5 new_height: 8 new_width: 9
                             is_color: false }
          transform_param { crop_size: 6 mean_value: 100 scale: 0.5 } }
        layer { name: "h5" type: "HDF5Data" top: "data"
          hdf5_data_param { source: "data/train.txt" batch_size: 4 } }
    """)
    monkeypatch.chdir(base)
    net = build_net(base / "net.prototxt", "test")
    out = net.forward()
    assert out["img"].shape == (5, 1, 6, 6) and out["data"].shape == (4, 2, 3)
    gray = make(base, phase="test", source="imgs/list.txt", backend="images", batch_size=5,
                new_height=8, new_width=9, is_color=False, crop_size=6, mean_value=100,
                scale=0.5)
    np.testing.assert_array_equal(out["img"], gray.forward([])[0])
    np.testing.assert_array_equal(out["data"], h5_list[1][:4])
