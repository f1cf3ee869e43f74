import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.contrastive_loss import ContrastiveLoss
from layerflow.registry import LAYERS

N, C = 6, 3


def reference(a, b, y, margin=1.0, legacy=False):
    """1/(2N) sum [y d^2 + (1 - y) max(m - d, 0)^2] (legacy: max(m - d^2, 0)), y = int(y) != 0."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    total = 0.0
    for ai, bi, yi in zip(a, b, y.reshape(-1)):
        d2 = float(((ai - bi) ** 2).sum())
        if int(yi) != 0:
            total += d2
        elif legacy:
            total += max(margin - d2, 0.0)
        else:
            total += max(margin - np.sqrt(d2), 0.0) ** 2
    return total / (2 * len(a))


def pairs(rng, y, margin, legacy, gap=0.1):
    """Pairs whose distance (legacy: squared distance) is at least `gap` from the margin, so
    no finite difference crosses the hinge; about half of the dissimilar ones inside it."""
    a = rng.standard_normal((N, C))
    u = rng.standard_normal((N, C))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    target = margin + rng.choice([-1.0, 1.0], size=N) * rng.uniform(gap, margin - gap, size=N)
    dist = np.sqrt(target) if legacy else target
    return a, a - dist[:, None] * u


def labels(rng):
    y = rng.integers(0, 2, size=N).astype(np.float64)
    y[:2] = [1.0, 0.0]
    return y


def test_registered():
    assert LAYERS.get("ContrastiveLoss") is ContrastiveLoss and ContrastiveLoss.is_loss


@pytest.mark.parametrize("legacy, want", [(False, 1.25 / 6), (True, 1.75 / 6)])
def test_hand_computed(lh, legacy, want):
    a = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    y = np.array([1.0, 0.0, 0.0])  # similar d^2 = 1; dissimilar d = 0.5; dissimilar d = 5
    layer, tops = lh.make_layer(ContrastiveLoss, [(3, 2), (3, 2), (3,)], legacy_version=legacy)
    (loss,) = layer.forward([a, b, y])
    assert tops == [()]
    np.testing.assert_allclose(loss, want, rtol=1e-15)
    da, db, dy = layer.backward([np.array(1.0)])
    # similar: (a - b) / N; dissimilar inside the margin: -(m - d)/(d + 1e-4) (a - b) / N
    # (legacy: -(a - b) / N); beyond it: 0
    inside = -1.0 if legacy else -(1 - 0.5) / (0.5 + 1e-4)
    want_da = np.array([[-1.0, 0.0], [0.0, -0.5 * inside], [0.0, 0.0]]) / 3
    np.testing.assert_allclose(da, want_da, rtol=1e-15)
    np.testing.assert_allclose(db, -want_da, rtol=1e-15)
    assert dy is None


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("margin", [1.0, 2.5])
@pytest.mark.parametrize("shapes", [[(N, C), (N, C), (N,)],
                                    [(N, C, 1, 1), (N, C, 1, 1), (N, 1, 1, 1)],
                                    [(N, C), (N, C, 1, 1), (N, 1)]])
def test_forward_matches_reference(lh, rng, legacy, margin, shapes):
    layer, _ = lh.make_layer(ContrastiveLoss, shapes, margin=margin, legacy_version=legacy)
    a, b = pairs(rng, labels(rng), margin, legacy)
    a, b = a.reshape(shapes[0]), b.reshape(shapes[1])
    y = labels(rng).reshape(shapes[2])
    np.testing.assert_allclose(layer.forward([a, b, y])[0],
                               reference(a, b, y, margin, legacy), rtol=1e-14)


def test_similarity_is_int_cast(lh):
    """Caffe casts y to int: 0.5 is dissimilar, -1 and 2 are similar."""
    layer, _ = lh.make_layer(ContrastiveLoss, [(3, 1), (3, 1), (3,)], margin=5.0)
    a, b = np.array([[1.0], [1.0], [1.0]]), np.zeros((3, 1))
    (loss,) = layer.forward([a, b, np.array([0.5, -1.0, 2.0])])
    np.testing.assert_allclose(loss, (4.0 ** 2 + 1.0 + 1.0) / 6, rtol=1e-15)


@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_gradients_similar_pairs_and_legacy(rng, margin):
    y = labels(rng)
    a, b = pairs(rng, y, margin, True)
    res = gradcheck(ContrastiveLoss, [a, b, y], {"margin": margin, "legacy_version": True},
                    check_bottoms=[0, 1])
    assert [e.checked for e in res.entries] == [N * C, N * C]
    a, b = pairs(rng, y, margin, False)
    gradcheck(ContrastiveLoss, [a, b, np.ones(N)], {"margin": margin}, check_bottoms=[0, 1])


@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_gradients_current_version_are_caffes_damped_ones(lh, rng, margin):
    """Caffe divides by d + 1e-4, not d: for dissimilar pairs the analytic gradient is the
    exact one times d / (d + 1e-4). Checked against central differences of the forward, with
    that factor applied, at the usual float64 threshold."""
    y = labels(rng)
    a, b = pairs(rng, y, margin, False)
    layer, _ = lh.make_layer(ContrastiveLoss, [(N, C), (N, C), (N,)], margin=margin)
    layer.forward([a, b, y])
    da = layer.backward([np.array(1.0)])[0].copy()
    d = np.linalg.norm(a - b, axis=1)
    factor = np.where(y != 0, 1.0, d / (d + 1e-4))[:, None]
    numeric = np.zeros_like(a)
    step = 1e-3
    for idx in np.ndindex(a.shape):
        hi, lo = a.copy(), a.copy()
        hi[idx] += step
        lo[idx] -= step
        up = float(layer.forward([hi, b, y])[0])  # the top is one buffer: read it now
        numeric[idx] = (up - float(layer.forward([lo, b, y])[0])) / (2 * step)
    scale = np.maximum(np.maximum(np.abs(da), np.abs(numeric)), 1)
    assert (np.abs(da - factor * numeric) / scale).max() < 1e-6
    assert (np.abs(da - numeric) / scale).max() > 1e-5  # without the factor it would fail


def test_propagate_down(lh, rng):
    layer, _ = lh.make_layer(ContrastiveLoss, [(N, C), (N, C), (N,)],
                             propagate_down=[False, True, False])
    y = labels(rng)
    a, b = pairs(rng, y, 1.0, False)
    layer.forward([a, b, y])
    da, db, dy = layer.backward([np.array(1.0)])
    assert da is None and dy is None and db.shape == (N, C)


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(ContrastiveLoss, [(N, C), (N, C), (N,)], margin=2.0)
    new = [(3, C), (3, C), (3,)]
    fresh, _ = lh.make_layer(ContrastiveLoss, new, margin=2.0)
    assert layer.reshape(new) == [()]
    a, b = rng.standard_normal((3, C)), rng.standard_normal((3, C))
    y = np.array([1.0, 0.0, 0.0])
    np.testing.assert_array_equal(layer.forward([a, b, y])[0], fresh.forward([a, b, y])[0])
    for d1, d2 in zip(layer.backward([np.array(1.0)])[:2], fresh.backward([np.array(1.0)])[:2]):
        np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize("legacy", [False, True])
def test_float32_matches_float64(lh, rng, legacy):
    y = labels(rng)
    a, b = pairs(rng, y, 1.0, legacy)
    lh.assert_float32_matches(ContrastiveLoss, [a, b, y], legacy_version=legacy)


@pytest.mark.parametrize("p", [{}, {"margin": 2.0, "legacy_version": True}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(ContrastiveLoss.Params(**p))
    with pytest.raises(ValidationError):
        ContrastiveLoss.Params(legacy=True)


@pytest.mark.parametrize("shapes, match", [
    ([(N, C), (N, C + 1), (N,)], r"the pair must have the same \(N, C\), got fa \(6, 3\) and "
                                 r"fb \(6, 4\)"),
    ([(N, C), (N - 1, C), (N,)], r"the pair must have the same \(N, C\)"),
    ([(N, C, 2), (N, C, 2), (N,)], r"fa must be \(N, C\) or \(N, C, 1, 1\), got shape "
                                   r"\(6, 3, 2\)"),
    ([(N,), (N,), (N,)], r"fa must be \(N, C\)"),
    ([(N, C), (N, C), (N, 2)], r"the similarity sim must be \(6,\) or \(6, 1, 1, 1\), one per "
                               r"pair, got shape \(6, 2\)"),
    ([(N, C), (N, C), (N - 1,)], r"the similarity sim must be \(6,\)"),
])
def test_wrong_shapes_are_user_errors(lh, shapes, match):
    with pytest.raises(UserError, match=r"layer siam \(ContrastiveLoss\): " + match):
        lh.make_layer(ContrastiveLoss, shapes, name="siam", bottom_names=["fa", "fb", "sim"])


def test_nan_similarity_is_a_user_error(lh, rng):
    layer, _ = lh.make_layer(ContrastiveLoss, [(N, C), (N, C), (N,)], name="siam")
    y = labels(rng)
    y[4] = np.nan
    with pytest.raises(UserError, match=r"layer siam .*similarity nan at batch index 4"):
        layer.forward([rng.standard_normal((N, C)), rng.standard_normal((N, C)), y])
