import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.hinge_loss import HingeLoss
from layerflow.layers.svm_loss import SVMLoss
from layerflow.registry import LAYERS

N, C = 4, 3


def reference(x, label, norm):
    """Caffe's one-vs-all hinge with plain loops: every class k is a binary problem with the
    target +1 (k == y) or -1; the scores are flattened from axis 1."""
    rows = x.reshape(x.shape[0], -1)
    total = 0.0
    for row, y in zip(rows, label.reshape(-1).astype(int)):
        for k, v in enumerate(row):
            delta = 1.0 if k == y else -1.0
            t = max(0.0, 1.0 - delta * v)
            total += t * t if norm == "L2" else t
    return total / len(rows)


def scores(rng, label, shape, gap=0.05):
    """Scores whose hinge arguments 1 - delta x are at least `gap` from the kink at 0, about
    half of them active: the arguments are drawn first, then the scores."""
    t = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 1.5, size=shape)
    delta = -np.ones(shape)
    delta.reshape(shape[0], -1)[np.arange(shape[0]), label.astype(int)] = 1.0
    return (1.0 - t) / delta


def test_registered():
    assert LAYERS.get("HingeLoss") is HingeLoss and HingeLoss.is_loss


@pytest.mark.parametrize("norm, want", [("L1", (1.5 + 4.2) / 2), ("L2", (2.25 + 5.94) / 2)])
def test_hand_computed(lh, norm, want):
    x = np.array([[2.0, 0.5, -3.0],    # y = 0: terms 0 (1 - 2 < 0), 1.5, 0 (1 - 3 < 0)
                  [0.5, -0.5, 0.2]])   # y = 1: terms 1.5, 1.5, 1.2
    label = np.array([0.0, 1.0])
    layer, tops = lh.make_layer(HingeLoss, [(2, 3), (2,)], norm=norm)
    (loss,) = layer.forward([x, label])
    assert tops == [()]
    np.testing.assert_allclose(loss, want, rtol=1e-15)
    (dx, dlabel) = layer.backward([np.array(2.0)])
    terms = np.array([[0.0, 1.5, 0.0], [1.5, 1.5, 1.2]])
    sign = np.array([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])  # d(1 -+ x)/dx
    g = (terms > 0) if norm == "L1" else 2 * terms
    np.testing.assert_allclose(dx, 2.0 * sign * g / 2, rtol=1e-15)
    assert dlabel is None


def test_is_not_the_multiclass_svm(lh):
    x = np.array([[2.0, 0.5, -3.0]])
    hinge, _ = lh.make_layer(HingeLoss, [(1, 3), (1,)])
    svm, _ = lh.make_layer(SVMLoss, [(1, 3), (1,)])
    assert hinge.forward([x, np.array([0.0])])[0] == 1.5  # class 1's own hinge is active
    assert svm.forward([x, np.array([0.0])])[0] == 0.0   # class 0 wins by more than 1


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape, label_shape", [((N, C), (N,)), ((N, C), (N, 1)),
                                                ((N, C, 1, 1), (N,)), ((N, 2, 3), (N, 1))])
def test_forward_matches_reference(lh, rng, norm, shape, label_shape):
    layer, _ = lh.make_layer(HingeLoss, [shape, label_shape], norm=norm)
    x = 2 * rng.standard_normal(shape)
    label = rng.integers(0, int(np.prod(shape[1:])), size=label_shape).astype(np.float64)
    np.testing.assert_allclose(layer.forward([x, label])[0], reference(x, label, norm),
                               rtol=1e-14)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(N, C), (N, 2, 2)])
def test_gradients(rng, norm, shape):
    label = rng.integers(0, int(np.prod(shape[1:])), size=N).astype(np.float64)
    res = gradcheck(HingeLoss, [scores(rng, label, shape), label], {"norm": norm},
                    check_bottoms=[0])
    assert [e.name for e in res.entries] == ["bottom[0]"]
    assert res.entries[0].checked == int(np.prod(shape))


def test_nan_score_gives_nan_loss(lh):
    layer, _ = lh.make_layer(HingeLoss, [(1, 3), (1,)])
    assert np.isnan(layer.forward([np.array([[0.0, np.nan, 0.0]]), np.array([0.0])])[0])


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(HingeLoss, [(N, C), (N,)], propagate_down=[False, False])
    layer.forward([rng.standard_normal((N, C)), np.zeros(N)])
    assert layer.backward([np.array(1.0)]) == [None, None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(HingeLoss, [(N, C), (N,)], norm="L2")
    fresh, _ = lh.make_layer(HingeLoss, [(6, 5), (6,)], norm="L2")
    assert layer.reshape([(6, 5), (6,)]) == [()]
    x, label = rng.standard_normal((6, 5)), rng.integers(0, 5, size=6).astype(np.float64)
    np.testing.assert_array_equal(layer.forward([x, label])[0], fresh.forward([x, label])[0])
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0],
                                  fresh.backward([np.array(1.0)])[0])


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_float32_matches_float64(lh, rng, norm):
    label = rng.integers(0, C, size=N).astype(np.float64)
    lh.assert_float32_matches(HingeLoss, [rng.standard_normal((N, C)), label], norm=norm)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_config_roundtrip(lh, norm):
    lh.assert_roundtrip(HingeLoss.Params(norm=norm))


@pytest.mark.parametrize("p", [{"norm": "L3"}, {"margin": 1.0}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError, match=next(iter(p))):
        HingeLoss.Params(**p)


@pytest.mark.parametrize("labels", [(N + 1,), (N, C), (1, N)])
def test_wrong_label_shape_is_a_user_error(lh, labels):
    with pytest.raises(UserError, match=r"layer hinge \(HingeLoss\): labels must be "
                                        rf"\({N},\) or \({N}, 1\)"):
        lh.make_layer(HingeLoss, [(N, C), labels], name="hinge")


def test_one_axis_scores_are_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer hinge \(HingeLoss\): scores must be \(N, C\) "
                                        r"or \(N, C, \.\.\.\), got shape \(4,\)"):
        lh.make_layer(HingeLoss, [(N,), (N,)], name="hinge")


def test_bad_label_is_a_user_error(lh, rng):
    layer, _ = lh.make_layer(HingeLoss, [(N, C), (N,)], name="hinge")
    with pytest.raises(UserError, match=r"layer hinge .*label 0\.5 at batch index 1"):
        layer.forward([rng.standard_normal((N, C)), np.array([0.0, 0.5, 1.0, 2.0])])
