import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import check_layer
from layerflow.layers.accuracy import Accuracy
from layerflow.registry import LAYERS

N, C = 8, 5


def reference(x, label, top_k, ignore, axis=1):
    """Caffe's rule (PR 5836): a hit when fewer than top_k OTHER classes score >= the label's
    score. Returns (accuracy, per-class accuracy)."""
    axis %= x.ndim
    c = x.shape[axis]
    rows = np.moveaxis(x, axis, -1).reshape(-1, c)
    hits, count = 0, 0
    class_hits, class_count = np.zeros(c), np.zeros(c)
    for row, y in zip(rows, label.reshape(-1)):
        if ignore is not None and y == ignore:
            continue
        y = int(y)
        rivals = sum(1 for j in range(c) if j != y and row[j] >= row[y])
        hit = rivals < top_k
        hits += hit
        count += 1
        class_hits[y] += hit
        class_count[y] += 1
    per_class = np.where(class_count > 0, class_hits / np.maximum(class_count, 1), 0.0)
    return (hits / count if count else 0.0), per_class


def test_registered():
    assert LAYERS.get("Accuracy") is Accuracy and not Accuracy.is_loss


@pytest.mark.parametrize("top_k", [1, 2, 5])
@pytest.mark.parametrize("ignore", [None, 3])
@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_forward_matches_reference(lh, rng, top_k, ignore, label_shape):
    layer, tops = lh.make_layer(Accuracy, [(N, C), label_shape], top_k=top_k,
                                ignore_label=ignore)
    x = rng.integers(0, 3, size=(N, C)).astype(np.float64)  # small integers: many ties
    label = rng.integers(0, C, size=N).astype(np.float64).reshape(label_shape)
    (acc,) = layer.forward([x, label])
    assert tops == [()] and acc.shape == ()
    assert acc == pytest.approx(reference(x, label, top_k, ignore)[0], abs=1e-15)


def test_all_scores_tied_count_against_the_label(lh):
    """The bug report: all-zero scores, 4 samples, 3 classes, labels [0, 1, 2, 1]. Every label
    has two other classes scoring >= it, so it is neither top-1 nor top-2 (the old rule,
    counting only strictly higher classes, gave 1.0 for both)."""
    x = np.zeros((4, 3))
    label = np.array([0.0, 1.0, 2.0, 1.0])
    for top_k in (1, 2):
        layer, _ = lh.make_layer(Accuracy, [(4, 3), (4,)], top_k=top_k)
        assert layer.forward([x, label])[0] == 0.0
    layer3, _ = lh.make_layer(Accuracy, [(4, 3), (4,)], top_k=3)
    assert layer3.forward([x, label])[0] == 1.0  # top-3 of 3 classes always holds the label


def test_partial_ties(lh):
    x = np.array([[0.1, 0.7, 0.2],    # label 1 wins outright: top-1 and top-2 hit
                  [0.5, 0.5, 0.0],    # label 1 tied with class 0 (1 rival): top-1 miss, top-2 hit
                  [0.2, 0.3, 0.3],    # label 1 tied with 2 and below nothing else: same
                  [0.4, 0.4, 0.4],    # label 2 tied with both others: misses top-1 and top-2
                  [0.9, 0.05, 0.05]])  # label 2 tied with 1, below 0: 2 rivals, misses both
    label = np.array([1, 1, 1, 2, 2])
    expect = {1: 1 / 5, 2: 3 / 5}
    for top_k, acc in expect.items():
        layer, _ = lh.make_layer(Accuracy, [(5, 3), (5,)], top_k=top_k)
        assert layer.forward([x, label])[0] == pytest.approx(acc, abs=1e-15)
        assert reference(x, label, top_k, None)[0] == pytest.approx(acc, abs=1e-15)


@pytest.mark.parametrize("top_k", [1, 2])
def test_per_class_second_top(lh, top_k):
    x = np.array([[0.1, 0.7, 0.2],
                  [0.5, 0.5, 0.0],
                  [0.2, 0.3, 0.5],
                  [0.9, 0.05, 0.05],
                  [0.8, 0.1, 0.1]])
    label = np.array([1.0, 1.0, 1.0, 0.0, -1.0])  # no sample of class 2; one ignored
    layer, tops = lh.make_layer(Accuracy, [(5, 3), (5,)], top_names=["acc", "per_class"],
                                top_k=top_k, ignore_label=-1)
    assert tops == [(), (3,)]
    acc, per_class = layer.forward([x, label])
    # class 1: rows 0, 1, 2 -> top-1 hits row 0 only; top-2 hits rows 0, 1, 2
    want = [1.0, 1 / 3, 0.0] if top_k == 1 else [1.0, 1.0, 0.0]
    np.testing.assert_allclose(per_class, want, rtol=1e-15)
    assert acc == pytest.approx((1 + 1) / 4 if top_k == 1 else 1.0, abs=1e-15)
    assert per_class.dtype == np.float64 and per_class.shape == (3,)


@pytest.mark.parametrize("shape, axis, label_shape", [
    ((2, 3, 2, 2), 1, (2, 2, 2)),
    ((2, 3, 2, 2), 1, (2, 1, 2, 2)),
    ((2, 2, 4), -1, (2, 2)),
    ((4, 3), 0, (3,)),
])
@pytest.mark.parametrize("top_k", [1, 2])
def test_axis_matches_reference(lh, rng, shape, axis, label_shape, top_k):
    c = shape[axis]
    layer, tops = lh.make_layer(Accuracy, [shape, label_shape], axis=axis, top_k=top_k,
                                ignore_label=0, top_names=["acc", "per_class"])
    assert tops == [(), (c,)]
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    label = rng.integers(0, c, size=label_shape).astype(np.float64)
    acc, per_class = layer.forward([x, label])
    want, want_per_class = reference(x, label, top_k, 0, axis)
    assert acc == pytest.approx(want, abs=1e-15)
    np.testing.assert_allclose(per_class, want_per_class, rtol=1e-15)


def test_ignored_samples_do_not_count(lh):
    layer, _ = lh.make_layer(Accuracy, [(3, 2), (3,)], ignore_label=-1)
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert layer.forward([x, np.array([0.0, -1.0, 0.0])])[0] == 0.5
    assert layer.forward([x, np.array([-1.0, -1.0, -1.0])])[0] == 0.0


def test_no_backward(lh, rng):
    layer, _ = lh.make_layer(Accuracy, [(N, C), (N,)])
    layer.forward([rng.standard_normal((N, C)), np.zeros(N)])
    assert layer.backward([np.array(1.0)]) == [None, None]
    res = check_layer(Accuracy, [rng.standard_normal((N, C)), np.zeros(N)])
    assert res.ok and res.entries == [] and res.no_gradient == ["bottom[0]", "bottom[1]"]


def test_reshape_equals_fresh_layer(lh, rng):
    names = ["acc", "per_class"]
    layer, _ = lh.make_layer(Accuracy, [(2, 3, 2, 2), (2, 2, 2)], top_names=names, top_k=2)
    new = [(3, 3, 1, 3), (3, 1, 3)]
    fresh, _ = lh.make_layer(Accuracy, new, top_names=names, top_k=2)
    assert layer.reshape(new) == [(), (3,)]
    x = rng.integers(0, 3, size=new[0]).astype(np.float64)
    label = rng.integers(0, 3, size=new[1]).astype(np.float64)
    for a, b in zip(layer.forward([x, label]), fresh.forward([x, label])):
        np.testing.assert_array_equal(a, b)


def test_float32_matches_float64(lh, rng):
    label = rng.integers(0, C, size=N).astype(np.float64)
    lh.assert_float32_matches(Accuracy, [rng.standard_normal((N, C)), label], top_k=2)


@pytest.mark.parametrize("p", [{}, {"top_k": 3, "ignore_label": 0}, {"axis": -1}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Accuracy.Params(**p))


@pytest.mark.parametrize("p", [{"top_k": 0}, {"topk": 1}, {"axis": "1x"}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Accuracy.Params(**p)


def test_top_k_above_classes_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer acc .*top_k=6.*5 classes"):
        lh.make_layer(Accuracy, [(N, C), (N,)], name="acc", top_k=6)
    with pytest.raises(UserError, match=r"layer acc .*top_k=4.*3 classes.*\(2, 3, 4\)"):
        lh.make_layer(Accuracy, [(2, 3, 4), (2, 4)], name="acc", top_k=4)


@pytest.mark.parametrize("shapes", [[(N, C), (N - 1,)], [(N, C, 2), (N,)], [(N, C), (C, N)]])
def test_wrong_shapes_are_user_errors(lh, shapes):
    with pytest.raises(UserError, match=r"layer acc \(Accuracy\): labels must be .*got shape"):
        lh.make_layer(Accuracy, shapes, name="acc")


def test_bad_axis_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer acc \(Accuracy\): axis: 3 is out of range"):
        lh.make_layer(Accuracy, [(N, C), (N,)], name="acc", axis=3)


def test_bad_label_is_a_user_error(lh, rng):
    layer, _ = lh.make_layer(Accuracy, [(N, C), (N,)], name="acc")
    label = np.zeros(N)
    label[5] = 9
    with pytest.raises(UserError, match=r"layer acc .*label 9\.0 at batch index 5"):
        layer.forward([rng.standard_normal((N, C)), label])
