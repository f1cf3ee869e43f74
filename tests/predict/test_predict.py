"""`layerflow predict`: top-k of new inputs with a trained model, against the deploy net's own
forward (computed here), in every input format and output format, and its errors."""
from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest
from safetensors.numpy import save_file

import layerflow as lf

PIL = pytest.importorskip("PIL.Image")

GRAY_NET = """\
name: gray
layers:
  - {name: data, type: Data, top: [data, label], source: d.npz, batch_size: 4,
     scale: 0.00392156862745098, mean_value: 100}
  - {name: ip1, type: InnerProduct, num_output: 6}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, num_output: 4}
  - {name: loss, type: SoftmaxLoss, bottom: [ip2, label]}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
"""


class Project:
    """A net over (C, 5, 4) uint8 images with 4 classes, random weights saved."""

    def __init__(self, root, channels=1, text=GRAY_NET):
        self.root = root
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (6, channels, 5, 4)).astype(np.uint8)
        self.labels = np.array([0, 1, 2, 3, 1, 2])
        np.savez(root / "d.npz", data=self.images, label=self.labels)
        self.net_path = root / "net.yaml"
        self.net_path.write_text(textwrap.dedent(text))
        net = lf.deploy_net(self.net_path)
        for p in net.learnable_params():
            p.data[...] = rng.normal(0, 0.5, p.data.shape)
        self.weights = root / "w.safetensors"
        save_file(dict(net.state_dict()), str(self.weights))
        self.net = lf.deploy_net(self.net_path, self.weights)

    def probs(self, x):
        return self.net.forward({"data": np.asarray(x, np.float32)})[self.net.outputs[0]]

    def run(self, cli, *args):
        return cli("predict", self.net_path, "--weights", self.weights, *args)


@pytest.fixture
def gray(tmp_path):
    return Project(tmp_path)


def records(out: str):
    lines = [json.loads(line) for line in out.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def expect_top(rows, probs, k):
    for row, p in zip(rows, probs):
        order = np.argsort(-p, kind="stable")[:k]
        assert [t["class"] for t in row["top"]] == order.tolist()
        np.testing.assert_allclose([t["prob"] for t in row["top"]], p[order], rtol=1e-6)


def test_npy_json_lines_match_deploy_forward(gray, cli, tmp_path):
    np.save(tmp_path / "x.npy", gray.images)
    r = gray.run(cli, tmp_path / "x.npy", "--json", "--top-k", "3", "--batch-size", "4")
    assert r.code == 0, r.err
    rows, summary = records(r.out)
    assert [row["input"] for row in rows] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(6)]
    expect_top(rows, gray.probs(gray.images), 3)
    assert summary["samples"] == 6 and summary["accuracy"] is None
    assert summary["failed"] == []


def test_one_sample_npy(gray, cli, tmp_path):
    np.save(tmp_path / "one.npy", gray.images[2])
    r = gray.run(cli, tmp_path / "one.npy", "--json", "--top-k", "2")
    rows, _ = records(r.out)
    assert len(rows) == 1
    expect_top(rows, gray.probs(gray.images[2:3]), 2)


def test_when_every_input_fails_nothing_claims_results(gray, cli, tmp_path):
    r = gray.run(cli, tmp_path / "nothere.npy")
    assert r.code == 2
    assert "samples in" not in r.out
    assert r.err.strip().splitlines()[-1] == "1 input(s) failed; nothing was predicted"


def test_a_file_of_another_kind_is_named_as_such(gray, cli, tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    r = gray.run(cli, tmp_path / "notes.txt")
    assert r.code == 2
    assert f"{tmp_path / 'notes.txt'}: not an input predict reads: images (.png" in r.err


def test_gray_images_without_their_channel_axis(gray, cli, tmp_path):
    """(N, H, W) and one (H, W) array for a net of (1, H, W) gray images: how IDX files and
    MNIST-style arrays hold them; the same predictions as with the channel axis."""
    np.save(tmp_path / "many.npy", gray.images[:, 0])  # (6, 5, 4)
    np.save(tmp_path / "one.npy", gray.images[4, 0])  # (5, 4)
    r = gray.run(cli, tmp_path / "many.npy", tmp_path / "one.npy", "--json", "--top-k", "3")
    assert r.code == 0, r.err
    rows, summary = records(r.out)
    assert [row["input"] for row in rows] == (
        [f"{tmp_path / 'many.npy'}[{i}]" for i in range(6)] + [f"{tmp_path / 'one.npy'}[0]"])
    expect_top(rows, gray.probs(np.concatenate([gray.images, gray.images[4:5]])), 3)
    assert summary["failed"] == []


def test_npz_with_labels_gives_accuracy(gray, cli, tmp_path):
    np.savez(tmp_path / "x.npz", data=gray.images, label=gray.labels)
    r = gray.run(cli, tmp_path / "x.npz", "--json", "--top-k", "2")
    rows, summary = records(r.out)
    probs = gray.probs(gray.images)
    top1 = np.argmax(probs, 1)
    top2 = np.argsort(-probs, 1)[:, :2]
    assert [row["label"] for row in rows] == gray.labels.tolist()
    acc = summary["accuracy"]
    assert acc["labelled"] == 6
    assert acc["top1"] == pytest.approx(np.mean(top1 == gray.labels))
    assert acc["topk"] == pytest.approx(np.mean((top2 == gray.labels[:, None]).any(1)))


def test_images_and_folders(gray, cli, tmp_path):
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    for i in range(3):
        PIL.fromarray(gray.images[i, 0]).save(folder / f"{i}.png")
    big = PIL.fromarray(gray.images[3, 0]).resize((8, 10))
    big.save(tmp_path / "big.png")
    (folder / "notes.txt").write_text("not an input")
    r = gray.run(cli, tmp_path / "imgs", tmp_path / "big.png", "--json", "--top-k", "4")
    assert r.code == 0, r.err
    rows, _ = records(r.out)
    assert [row["input"] for row in rows] == [str(folder / f"{i}.png") for i in range(3)] + [
        str(tmp_path / "big.png")]
    resized = np.asarray(big.resize((4, 5), PIL.Resampling.BILINEAR))[None]
    expect_top(rows, gray.probs(np.concatenate([gray.images[:3], resized[None]])), 4)


def test_rgb_images_for_a_three_channel_net(tmp_path, cli):
    text = GRAY_NET.replace("mean_value: 100", "mean_value: [100, 110, 120]")
    project = Project(tmp_path, channels=3, text=text)
    image = project.images[1].transpose(1, 2, 0)  # (H, W, 3)
    PIL.fromarray(image).save(tmp_path / "c.png")
    PIL.fromarray(image).convert("L").save(tmp_path / "gray.png")  # converted to RGB
    r = project.run(cli, tmp_path / "c.png", tmp_path / "gray.png", "--json")
    rows, _ = records(r.out)
    as_rgb = np.asarray(PIL.fromarray(image).convert("L").convert("RGB")).transpose(2, 0, 1)
    expect_top(rows, project.probs(np.stack([project.images[1], as_rgb])), 4)


def test_csv_with_and_without_label_column(tmp_path, cli):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3))
    y = np.array([0, 1, 1, 0, 1])
    with open(tmp_path / "train.csv", "w") as f:
        f.write("a,b,kind,c\n" + "".join(f"{r[0]},{r[1]},{c},{r[2]}\n" for r, c in zip(x, y)))
    text = """\
    name: tab
    layers:
      - {name: data, type: Data, top: [data, label], source: train.csv, label_column: kind,
         batch_size: 5}
      - {name: ip, type: InnerProduct, num_output: 2}
      - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
    """
    project = Project.__new__(Project)
    project.net_path = tmp_path / "net.yaml"
    project.net_path.write_text(textwrap.dedent(text))
    net = lf.deploy_net(project.net_path)
    for p in net.learnable_params():
        p.data[...] = rng.normal(size=p.data.shape)
    project.weights = tmp_path / "w.safetensors"
    save_file(dict(net.state_dict()), str(project.weights))
    project.net = lf.deploy_net(project.net_path, project.weights)
    (tmp_path / "new.csv").write_text("a,b,c\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in x))
    r = project.run(cli, tmp_path / "train.csv", tmp_path / "new.csv", "--json")
    assert r.code == 0, r.err
    rows, summary = records(r.out)
    assert [row["input"] for row in rows[:2]] == [f"{tmp_path / 'train.csv'}:2",
                                                  f"{tmp_path / 'train.csv'}:3"]
    assert [row.get("label") for row in rows] == y.tolist() + [None] * 5
    expect_top(rows, np.concatenate([project.probs(x)] * 2), 2)
    assert summary["accuracy"]["labelled"] == 5


def test_batches_do_not_change_results(gray, cli, tmp_path):
    """The same classes in the same order, and the same probabilities to float32 rounding:
    a batch of 1 goes through BLAS's GEMV (a matrix-vector product, 5x faster at batch 1)
    and a batch of 64 through GEMM, whose sums run in another order (measured: 3e-7
    relative, a few float32 ulps)."""
    np.save(tmp_path / "x.npy", gray.images)
    one = records(gray.run(cli, tmp_path / "x.npy", "--json", "--batch-size", "1").out)[0]
    many = records(gray.run(cli, tmp_path / "x.npy", "--json", "--batch-size", "64").out)[0]
    assert len(one) == len(many) == len(gray.images)
    for a, b in zip(one, many):
        assert a["input"] == b["input"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([t["prob"] for t in a["top"]],
                                   [t["prob"] for t in b["top"]], rtol=1e-6, atol=0)


def test_table_with_class_names(gray, cli, tmp_path):
    np.savez(tmp_path / "x.npz", data=gray.images[:2], label=gray.labels[:2])
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\nthree\n")
    r = gray.run(cli, tmp_path / "x.npz", "--labels", tmp_path / "classes.txt", "--top-k", "2")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["input", "label", "top", "1", "(prob)", "top", "2", "(prob)"]
    probs = gray.probs(gray.images[:2])
    names = ["zero", "one", "two", "three"]
    for i, (line, p, label) in enumerate(zip(lines[2:4], probs, gray.labels)):
        best = np.argsort(-p)[:2]
        assert line.split() == [f"{tmp_path / 'x.npz'}[{i}]", names[label], names[best[0]],
                                f"{p[best[0]]:.4f}", names[best[1]], f"{p[best[1]]:.4f}"]
    assert lines[4].startswith("accuracy: top-1 ")
    assert lines[5].startswith("2 samples in ")


def test_csv_output_file(gray, cli, tmp_path):
    np.save(tmp_path / "x.npy", gray.images[:3])
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    out = tmp_path / "out.csv"
    r = gray.run(cli, tmp_path / "x.npy", "-o", out, "--top-k", "2", "--labels",
                 tmp_path / "classes.txt")
    assert r.code == 0, r.err
    assert r.out.startswith(f"wrote {out} (3 rows)")
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["input", "class_1", "name_1", "prob_1", "class_2", "name_2", "prob_2"]
    probs = gray.probs(gray.images[:3])
    for row, p in zip(table[1:], probs):
        best = np.argsort(-p)[:2]
        assert row[1] == str(best[0]) and row[2] == "abcd"[best[0]]
        assert float(row[3]) == pytest.approx(float(p[best[0]]), rel=1e-7)


def test_scores_when_the_net_gives_no_probabilities(tmp_path, cli):
    text = GRAY_NET.replace("type: SoftmaxLoss", "type: SVMLoss")
    project = Project(tmp_path, text=text)
    np.save(tmp_path / "x.npy", project.images[:2])
    r = project.run(cli, tmp_path / "x.npy", "--json", "--top-k", "1")
    rows, _ = records(r.out)
    assert set(rows[0]["top"][0]) == {"class", "score"}


def test_bad_inputs_fail_alone(gray, cli, tmp_path):
    np.save(tmp_path / "good.npy", gray.images[:2])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    np.save(tmp_path / "shape.npy", np.zeros((2, 3, 3)))
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "out.csv"
    r = gray.run(cli, tmp_path / "broken.png", tmp_path / "good.npy", tmp_path / "shape.npy",
                 tmp_path / "cols.csv", tmp_path / "missing.npy", "-o", out)
    assert r.code == 2
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {tmp_path / 'missing.npy'}: no such file or folder",
        f"error: {tmp_path / 'shape.npy'}: samples of shape (2, 3, 3): the net cannot take them: "
        + errors[1].split("the net cannot take them: ", 1)[1],
        f"error: {tmp_path / 'cols.csv'}:1: 2 feature columns (no label column \"label\"), but "
        f"net input data takes 20 values per sample (1, 5, 4)",
        f"error: {tmp_path / 'broken.png'}: not an image Pillow can read "
        + errors[3].split("Pillow can read ", 1)[1]]
    assert "4 input(s) failed; the results of the others were written" in r.err
    with open(out, newline="") as f:
        assert len(list(csv.reader(f))) == 3  # header and the two good samples


@pytest.mark.parametrize("rows,message", [
    ("1,2,3\n4,5\n", "x.csv:3: 2 cells, the header has 3 columns"),
    ("1,2,3\n4,five,6\n", "x.csv:3: column \"b\": 'five' is not a number"),
    ("1,2,3\n\n4,5, inf\n", "x.csv:4: column \"c\": 'inf' is NaN or infinite"),
    ("", "x.csv: a header row but no data rows"),
])
def test_a_bad_csv_row_names_its_line_and_column(gray, cli, tmp_path, rows, message):
    """Input CSVs are read by the training data's reader: the same checks, the same messages,
    before the column count is compared with the net's input."""
    (tmp_path / "x.csv").write_text("a,b,c\n" + rows)
    r = gray.run(cli, tmp_path / "x.csv")
    assert r.code == 2 and "Traceback" not in r.err
    assert f"error: {tmp_path / message}" in r.err, r.err


def test_bad_labels_in_an_input_file(gray, cli, tmp_path):
    np.savez(tmp_path / "x.npz", data=gray.images[:2], label=np.array([1, 7]))
    r = gray.run(cli, tmp_path / "x.npz")
    assert r.code == 2
    assert f"error: {tmp_path / 'x.npz'}: row 1: label 7 is not a class index in [0, 4)" in r.err


def test_option_errors(gray, cli, tmp_path):
    np.save(tmp_path / "x.npy", gray.images[:1])
    (tmp_path / "classes.txt").write_text("a\nb\n")
    r = gray.run(cli, tmp_path / "x.npy", "--labels", tmp_path / "classes.txt")
    assert r.code == 2 and r.err == (f"error: {tmp_path / 'classes.txt'}: 2 class names for "
                                     f"the 4 classes of output prob\n")
    r = gray.run(cli, tmp_path / "x.npy", "--json", "-o", tmp_path / "o.csv")
    assert r.code == 2 and r.err == "error: give --json or -o, not both\n"
    r = cli("predict", gray.net_path, tmp_path / "x.npy", "--weights", tmp_path / "none.st")
    assert r.code == 2 and str(tmp_path / "none.st") in r.err


def test_top_k_larger_than_the_classes(gray, cli, tmp_path):
    np.save(tmp_path / "x.npy", gray.images[:1])
    rows, summary = records(gray.run(cli, tmp_path / "x.npy", "--json", "--top-k", "9").out)
    assert len(rows[0]["top"]) == 4 and summary["top_k"] == 4


def test_progress_is_reported_per_batch(gray, tmp_path):
    from layerflow.predict import predict

    np.save(tmp_path / "x.npy", gray.images)
    calls = []
    result = predict(gray.net_path, gray.weights, [tmp_path / "x.npy"], batch_size=4,
                     progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 6), (6, 6)]
    assert result["samples"] == 6 and result["top_classes"].shape == (6, 4)


def test_images_without_pillow_name_the_extra(gray, cli, tmp_path, monkeypatch):
    PIL.fromarray(gray.images[0, 0]).save(tmp_path / "a.png")
    np.save(tmp_path / "x.npy", gray.images[:1])
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    r = gray.run(cli, tmp_path / "a.png", tmp_path / "x.npy", "--json")
    assert r.code == 2
    assert (f"error: {tmp_path / 'a.png'}: reading images needs Pillow: pip install "
            f"'layerflow[images]'") in r.err
    assert len(records(r.out)[0]) == 1  # the .npy still predicted

