import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.svm_loss import SVMLoss
from layerflow.registry import LAYERS

N, C = 5, 4
CONFIGS = [{}, {"norm": "L2"}, {"margin": 0.5}, {"margin": 2.0, "norm": "L2"}]
IDS = ["L1", "L2", "L1-m0.5", "L2-m2"]


def reference(x, label, margin, norm):
    """CS231n's multiclass SVM loss, written with plain loops."""
    total = 0.0
    for row, y in zip(x, label.reshape(-1).astype(int)):
        for j in range(len(row)):
            if j != y:
                t = max(0.0, row[j] - row[y] + margin)
                total += t * t if norm == "L2" else t
    return total / len(x)


def make_scores(rng, label, margin, gap=0.05):
    """Scores whose hinge arguments s_j - s_y + margin are all at least `gap` away from the
    kink at 0, about half of them active: the arguments are drawn first, then the scores."""
    x = np.empty((N, C))
    for i, y in enumerate(label.astype(int)):
        sy = rng.standard_normal()
        t = rng.choice([-1.0, 1.0], size=C) * rng.uniform(gap, 1.5, size=C)
        x[i] = t + sy - margin
        x[i, y] = sy
    return x


def test_registered():
    assert LAYERS.get("SVMLoss") is SVMLoss and SVMLoss.is_loss


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_forward_matches_reference(lh, rng, p, label_shape):
    layer, tops = lh.make_layer(SVMLoss, [(N, C), label_shape], **p)
    x = rng.standard_normal((N, C))
    label = rng.integers(0, C, size=N).astype(np.float64).reshape(label_shape)
    (loss,) = layer.forward([x, label])
    assert tops == [()] and loss.shape == ()
    np.testing.assert_allclose(loss, reference(x, label, p.get("margin", 1.0),
                                               p.get("norm", "L1")), rtol=1e-13)


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_gradients(rng, p):
    label = rng.integers(0, C, size=N).astype(np.float64)
    x = make_scores(rng, label, p.get("margin", 1.0))
    res = gradcheck(SVMLoss, [x, label], p, check_bottoms=[0])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == N * C


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gradient_closed_form_and_kink(lh, norm):
    # sample 0: class 1 is active (t = 1.5), class 2 sits exactly on the kink (t = 0),
    # class 3 is inactive (t = -0.5)
    x = np.array([[2.0, 2.5, 1.0, 0.5]])
    layer, _ = lh.make_layer(SVMLoss, [(1, 4), (1,)], norm=norm)
    (loss,) = layer.forward([x, np.array([0])])
    np.testing.assert_allclose(loss, 1.5 if norm == "L1" else 2.25)
    (dx, dlabel) = layer.backward([np.array(2.0)])
    active = 1.0 if norm == "L1" else 2 * 1.5
    np.testing.assert_allclose(dx, 2.0 * np.array([[-active, active, 0.0, 0.0]]))
    assert dlabel is None


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(SVMLoss, [(N, C), (N,)], propagate_down=[False, False])
    layer.forward([rng.standard_normal((N, C)), np.zeros(N)])
    assert layer.backward([np.array(1.0)]) == [None, None]


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_float32_matches_float64(lh, rng, p):
    label = rng.integers(0, C, size=N).astype(np.float64)
    lh.assert_float32_matches(SVMLoss, [rng.standard_normal((N, C)), label], **p)


@pytest.mark.parametrize("p", CONFIGS, ids=IDS)
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(SVMLoss.Params(**p))


@pytest.mark.parametrize("p", [{"norm": "L3"}, {"margin": -1.0}, {"delta": 1.0}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        SVMLoss.Params(**p)


@pytest.mark.parametrize("bad", [4.0, -1.0, 0.5])
def test_bad_label_is_a_user_error(lh, rng, bad):
    layer, _ = lh.make_layer(SVMLoss, [(N, C), (N,)], name="hinge")
    label = np.zeros(N)
    label[2] = bad
    with pytest.raises(UserError) as err:
        layer.forward([rng.standard_normal((N, C)), label])
    assert "hinge" in str(err.value) and f"label {bad!r}" in str(err.value)


@pytest.mark.parametrize("shapes", [[(N, C), (N + 1,)], [(N, C), (N, C)], [(N, C, 1), (N,)]])
def test_wrong_shapes_are_user_errors(lh, shapes):
    with pytest.raises(UserError, match=r"layer hinge \(SVMLoss\)"):
        lh.make_layer(SVMLoss, shapes, name="hinge")
