import numpy as np
import pytest

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.euclidean_loss import EuclideanLoss
from layerflow.registry import LAYERS


def reference(a, b):
    """sum (a - b)^2 / (2 N), N = the first axis."""
    return float(((np.asarray(a) - np.asarray(b).reshape(np.shape(a))) ** 2).sum()) / (
        2 * np.shape(a)[0])


def test_registered():
    assert LAYERS.get("EuclideanLoss") is EuclideanLoss and EuclideanLoss.is_loss


def test_hand_computed(lh):
    layer, tops = lh.make_layer(EuclideanLoss, [(2, 2), (2, 2)])
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.0, 0.0], [0.0, 4.0]])
    (loss,) = layer.forward([a, b])
    assert tops == [()] and loss == (4 + 9) / 4
    da, db = layer.backward([np.array(2.0)])
    np.testing.assert_array_equal(da, 2.0 * (a - b) / 2)
    np.testing.assert_array_equal(db, -2.0 * (a - b) / 2)


@pytest.mark.parametrize("shapes", [[(4, 3), (4, 3)], [(2, 3, 2, 2), (2, 3, 2, 2)],
                                    [(4, 3), (4, 3, 1, 1)]])
def test_forward_matches_reference(lh, rng, shapes):
    layer, _ = lh.make_layer(EuclideanLoss, shapes)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    np.testing.assert_allclose(layer.forward([a, b])[0], reference(a, b), rtol=1e-14)


@pytest.mark.parametrize("shapes", [[(4, 3), (4, 3)], [(2, 3, 2), (2, 6)]])
def test_gradients_of_both_bottoms(rng, shapes):
    res = gradcheck(EuclideanLoss, [rng.standard_normal(s) for s in shapes])
    assert [e.name for e in res.entries] == ["bottom[0]", "bottom[1]"]
    assert [e.checked for e in res.entries] == [int(np.prod(s)) for s in shapes]


@pytest.mark.parametrize("down", [[True, False], [False, True], [False, False]])
def test_propagate_down(lh, rng, down):
    layer, _ = lh.make_layer(EuclideanLoss, [(3, 2), (3, 2)], propagate_down=down)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    layer.forward([a, b])
    diffs = layer.backward([np.array(1.0)])
    for d, p, sign in zip(diffs, down, (1, -1)):
        if p:
            np.testing.assert_allclose(d, sign * (a - b) / 3, rtol=1e-15)
        else:
            assert d is None


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(EuclideanLoss, [(2, 3), (2, 3)])
    fresh, _ = lh.make_layer(EuclideanLoss, [(5, 3), (5, 3)])
    assert layer.reshape([(5, 3), (5, 3)]) == [()]
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    np.testing.assert_array_equal(layer.forward([a, b])[0], fresh.forward([a, b])[0])
    for d1, d2 in zip(layer.backward([np.array(0.7)]), fresh.backward([np.array(0.7)])):
        np.testing.assert_array_equal(d1, d2)


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(EuclideanLoss, [rng.standard_normal((4, 6)),
                                              rng.standard_normal((4, 6))])


def test_config_roundtrip(lh):
    lh.assert_roundtrip(EuclideanLoss.Params())


@pytest.mark.parametrize("shapes", [[(4, 3), (5, 3)], [(4, 3), (4, 2)], [(4, 3), (3, 4)]])
def test_mismatched_shapes_are_user_errors(lh, shapes):
    a, b = (str(s).replace("(", r"\(").replace(")", r"\)") for s in shapes)
    with pytest.raises(UserError, match=rf"layer l2 \(EuclideanLoss\): bottoms must have the "
                                        rf"same batch size and count per sample, got pred {a} "
                                        rf"and target {b}"):
        lh.make_layer(EuclideanLoss, shapes, name="l2", bottom_names=["pred", "target"])
