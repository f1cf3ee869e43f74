import numpy as np
import pytest

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.multinomial_logistic_loss import MultinomialLogisticLoss
from layerflow.registry import LAYERS

N, C = 4, 3


def probabilities(rng, shape):
    """Rows of probabilities summing to 1, each at least 0.5 / (classes): far from the 1e-20
    clip, and not so small that finite differences of log p lose their accuracy."""
    p = rng.uniform(0.5, 1.0, size=shape)
    flat = p.reshape(shape[0], -1)
    return (flat / flat.sum(axis=1, keepdims=True)).reshape(shape)


def reference(p, label):
    rows = p.reshape(p.shape[0], -1)
    return -np.mean([np.log(max(row[int(y)], 1e-20)) for row, y in zip(rows, label.reshape(-1))])


def test_registered():
    assert LAYERS.get("MultinomialLogisticLoss") is MultinomialLogisticLoss
    assert MultinomialLogisticLoss.is_loss


def test_hand_computed(lh):
    layer, tops = lh.make_layer(MultinomialLogisticLoss, [(2, 3), (2,)])
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    (loss,) = layer.forward([p, np.array([1.0, 2.0])])
    assert tops == [()]
    np.testing.assert_allclose(loss, -(np.log(0.25) + np.log(0.8)) / 2, rtol=1e-15)
    (dp, dlabel) = layer.backward([np.array(3.0)])
    np.testing.assert_allclose(dp, [[0, -3 / (2 * 0.25), 0], [0, 0, -3 / (2 * 0.8)]],
                               rtol=1e-15)
    assert dlabel is None


def test_log_is_clipped_at_1e_20(lh):
    layer, _ = lh.make_layer(MultinomialLogisticLoss, [(2, 2), (2,)])
    p = np.array([[1.0, 0.0], [1.0, 1e-30]])
    (loss,) = layer.forward([p, np.array([1.0, 1.0])])
    np.testing.assert_allclose(loss, -np.log(1e-20), rtol=1e-15)
    (dp, _) = layer.backward([np.array(1.0)])  # Caffe's formula, also below the clip
    np.testing.assert_allclose(dp[:, 1], -1 / (2 * 1e-20), rtol=1e-15)


@pytest.mark.parametrize("shape, label_shape", [((N, C), (N,)), ((N, C), (N, 1)),
                                                ((N, C, 1, 1), (N, 1, 1, 1)),
                                                ((N, 2, 3), (N,))])  # classes: axes 1 on
def test_forward_matches_reference(lh, rng, shape, label_shape):
    layer, _ = lh.make_layer(MultinomialLogisticLoss, [shape, label_shape])
    p = probabilities(rng, shape)
    classes = int(np.prod(shape[1:]))
    label = rng.integers(0, classes, size=label_shape).astype(np.float64)
    np.testing.assert_allclose(layer.forward([p, label])[0], reference(p, label), rtol=1e-14)


@pytest.mark.parametrize("shape", [(N, C), (N, 2, 2)])
def test_gradients(rng, shape):
    label = rng.integers(0, int(np.prod(shape[1:])), size=N).astype(np.float64)
    # step 1e-4: for -log p the central difference's own relative error is h^2 / (3 p^2):
    # 2e-5 at step 1e-3 for p = 1/8, the smallest drawn here; at 1e-4, 2e-7
    res = gradcheck(MultinomialLogisticLoss, [probabilities(rng, shape), label],
                    check_bottoms=[0], step=1e-4)
    assert res.entries[0].checked == int(np.prod(shape))


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(MultinomialLogisticLoss, [(N, C), (N,)],
                             propagate_down=[False, False])
    layer.forward([probabilities(rng, (N, C)), np.zeros(N)])
    assert layer.backward([np.array(1.0)]) == [None, None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(MultinomialLogisticLoss, [(N, C), (N,)])
    fresh, _ = lh.make_layer(MultinomialLogisticLoss, [(6, C), (6,)])
    assert layer.reshape([(6, C), (6,)]) == [()]
    p, label = probabilities(rng, (6, C)), rng.integers(0, C, size=6).astype(np.float64)
    np.testing.assert_array_equal(layer.forward([p, label])[0], fresh.forward([p, label])[0])
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0],
                                  fresh.backward([np.array(1.0)])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(MultinomialLogisticLoss,
                              [probabilities(rng, (N, C)), rng.integers(0, C, N).astype(float)])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(MultinomialLogisticLoss.Params())


@pytest.mark.parametrize("labels", [(N, 2), (N + 1,), (1, N)])
def test_wrong_label_shape_is_a_user_error(lh, labels):
    with pytest.raises(UserError, match=r"layer nll \(MultinomialLogisticLoss\): labels must be "
                                        rf"\({N},\) or \({N}, 1\).*every axis from 1 on"):
        lh.make_layer(MultinomialLogisticLoss, [(N, C), labels], name="nll")


def test_bad_label_is_a_user_error(lh, rng):
    layer, _ = lh.make_layer(MultinomialLogisticLoss, [(N, C), (N,)], name="nll")
    with pytest.raises(UserError, match=r"layer nll .*label 3\.0 at batch index 2"):
        layer.forward([probabilities(rng, (N, C)), np.array([0.0, 1.0, 3.0, 2.0])])
