import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import check_layer
from layerflow.layers.accuracy import Accuracy
from layerflow.registry import LAYERS

N, C = 8, 5


def reference(x, label, top_k, ignore):
    """Caffe's rule: a hit when fewer than top_k classes score strictly above the label."""
    hits, count = 0, 0
    for row, y in zip(x, label.reshape(-1)):
        if ignore is not None and y == ignore:
            continue
        hits += int(np.sum(row > row[int(y)]) < top_k)
        count += 1
    return hits / count if count else 0.0


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
    assert acc == pytest.approx(reference(x, label, top_k, ignore), abs=1e-15)


def test_known_values_and_ties(lh):
    layer, _ = lh.make_layer(Accuracy, [(4, 3), (4,)])
    x = np.array([[0.1, 0.7, 0.2],    # label 1: top-1 hit
                  [0.5, 0.5, 0.0],    # label 1 ties with class 0: nothing strictly higher, hit
                  [0.2, 0.3, 0.5],    # label 1: class 2 is higher, miss at top-1
                  [0.9, 0.05, 0.05]])  # label 2: class 0 higher, miss
    label = np.array([1, 1, 1, 2])
    assert layer.forward([x, label])[0] == 0.5
    layer2, _ = lh.make_layer(Accuracy, [(4, 3), (4,)], top_k=2)
    # top-2: row 2 is a hit now; row 3: one class (0) strictly above label 2 -> hit too
    assert layer2.forward([x, label])[0] == 1.0


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


def test_float32_matches_float64(lh, rng):
    label = rng.integers(0, C, size=N).astype(np.float64)
    lh.assert_float32_matches(Accuracy, [rng.standard_normal((N, C)), label], top_k=2)


@pytest.mark.parametrize("p", [{}, {"top_k": 3, "ignore_label": 0}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Accuracy.Params(**p))


@pytest.mark.parametrize("p", [{"top_k": 0}, {"topk": 1}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Accuracy.Params(**p)


def test_top_k_above_classes_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer acc .*top_k=6.*5 classes"):
        lh.make_layer(Accuracy, [(N, C), (N,)], name="acc", top_k=6)


@pytest.mark.parametrize("shapes", [[(N, C), (N - 1,)], [(N, C, 2), (N,)]])
def test_wrong_shapes_are_user_errors(lh, shapes):
    with pytest.raises(UserError, match=r"layer acc \(Accuracy\)"):
        lh.make_layer(Accuracy, shapes, name="acc")


def test_bad_label_is_a_user_error(lh, rng):
    layer, _ = lh.make_layer(Accuracy, [(N, C), (N,)], name="acc")
    label = np.zeros(N)
    label[5] = 9
    with pytest.raises(UserError, match=r"layer acc .*label 9\.0 at batch index 5"):
        layer.forward([rng.standard_normal((N, C)), label])
