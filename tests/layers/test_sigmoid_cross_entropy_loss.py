import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.sigmoid_cross_entropy_loss import SigmoidCrossEntropyLoss as SCE
from layerflow.registry import LAYERS

SHAPE = (3, 2, 2)
MODES = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def reference(x, t, ignore=None):
    """(sum, count) of -[t log s(x) + (1 - t) log(1 - s(x))] with log s(x) = -log(1 + e^-x)
    (logaddexp), over the elements whose int-truncated target is not `ignore`."""
    x = np.asarray(x, np.float64).reshape(-1)
    t = np.asarray(t, np.float64).reshape(-1)
    keep = np.ones(x.size, bool) if ignore is None else np.trunc(t) != ignore
    per = t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x)
    return per[keep].sum(), int(keep.sum())


def expected(x, t, ignore=None, mode="BATCH_SIZE"):
    """The loss: the reference sum over Caffe's normalizer for `mode` (at least 1)."""
    total, valid = reference(x, t, ignore)
    n = {"FULL": np.size(x), "VALID": valid, "BATCH_SIZE": np.shape(x)[0], "NONE": 1}[mode]
    return total / max(n, 1)


def targets(rng, shape, ignore=None):
    t = rng.uniform(0, 1, size=shape)
    t.reshape(-1)[::3] = rng.integers(0, 2, size=t.reshape(-1)[::3].size)  # some hard 0/1
    if ignore is not None:
        t.reshape(-1)[[1, 5]] = ignore
    return t


def test_registered():
    assert LAYERS.get("SigmoidCrossEntropyLoss") is SCE and SCE.is_loss


def test_hand_computed(lh):
    # s(0) = 1/2: each element costs log 2 whatever its target; s(ln 3) = 3/4
    layer, tops = lh.make_layer(SCE, [(2, 2), (2, 2)])
    x = np.array([[0.0, 0.0], [np.log(3.0), np.log(3.0)]])
    t = np.array([[1.0, 0.5], [1.0, 0.0]])
    (loss,) = layer.forward([x, t])
    assert tops == [()]
    want = (2 * np.log(2) - np.log(0.75) - np.log(0.25)) / 2  # BATCH_SIZE: N = 2
    np.testing.assert_allclose(loss, want, rtol=1e-15)
    (dx, dt) = layer.backward([np.array(1.0)])
    np.testing.assert_allclose(dx, (np.array([[0.5, 0.5], [0.75, 0.75]]) - t) / 2, rtol=1e-15)
    assert dt is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [None, -1])
def test_forward_matches_reference(lh, rng, mode, ignore):
    layer, _ = lh.make_layer(SCE, [SHAPE, SHAPE], normalization=mode, ignore_label=ignore)
    x = 3 * rng.standard_normal(SHAPE)
    t = targets(rng, SHAPE, ignore)
    np.testing.assert_allclose(layer.forward([x, t])[0], expected(x, t, ignore, mode),
                               rtol=1e-13)


@pytest.mark.parametrize("p, mode", [({}, "BATCH_SIZE"), ({"normalize": True}, "VALID"),
                                     ({"normalize": False}, "BATCH_SIZE"),
                                     ({"normalization": "FULL", "normalize": True}, "FULL")])
def test_default_is_batch_size_and_legacy_normalize(lh, rng, p, mode):
    layer, _ = lh.make_layer(SCE, [SHAPE, SHAPE], ignore_label=-1, **p)
    x, t = rng.standard_normal(SHAPE), targets(rng, SHAPE, -1)
    np.testing.assert_allclose(layer.forward([x, t])[0], expected(x, t, -1, mode), rtol=1e-13)


def test_ignore_compares_the_int_truncated_target(lh):
    """Caffe casts the target to int: with ignore_label 0, targets in (-1, 1) are ignored."""
    layer, _ = lh.make_layer(SCE, [(1, 4), (1, 4)], ignore_label=0, normalization="VALID")
    x = np.array([[0.3, -0.2, 1.0, 2.0]])
    t = np.array([[0.5, -0.5, 1.0, 0.0]])
    (loss,) = layer.forward([x, t])
    np.testing.assert_allclose(loss, np.logaddexp(0, -1.0), rtol=1e-15)  # only element 2
    (dx, _) = layer.backward([np.array(1.0)])
    np.testing.assert_allclose(dx, [[0, 0, 1 / (1 + np.exp(-1.0)) - 1.0, 0]], rtol=1e-15)


def test_all_ignored_gives_zero(lh, rng):
    layer, _ = lh.make_layer(SCE, [(2, 2), (2, 2)], ignore_label=-1, normalization="VALID")
    (loss,) = layer.forward([rng.standard_normal((2, 2)), -np.ones((2, 2))])
    assert loss == 0.0
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0], 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_gradients(rng, mode):
    x = 2 * rng.standard_normal(SHAPE)
    res = gradcheck(SCE, [x, targets(rng, SHAPE, -1)], {"normalization": mode,
                                                        "ignore_label": -1}, check_bottoms=[0])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_do_not_overflow(lh, dtype):
    x = np.array([[-1e4, -200.0, -90.0, -20.0, 0.0, 20.0, 90.0, 200.0, 1e4]], dtype)
    for t in (np.zeros_like(x), np.ones_like(x)):
        layer, _ = lh.make_layer(SCE, [x.shape, x.shape], dtype=dtype, normalization="NONE")
        (loss,) = layer.forward([x, t])
        (dx,) = layer.backward([np.array(1.0, dtype)])[:1]
        assert np.isfinite(loss) and np.isfinite(dx).all()
        np.testing.assert_allclose(loss, expected(x, t, mode="NONE"), rtol=1e-6)
        e = np.exp(-np.abs(x.astype(np.float64)))
        sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        # dx = s(x) - t is a difference of numbers in [0, 1]: good to an absolute eps
        np.testing.assert_allclose(dx, sig - t, rtol=1e-6, atol=np.finfo(dtype).eps)


@pytest.mark.parametrize("shapes", [[(4, 3), (4, 3, 1, 1)], [(2, 3, 2), (2, 6)]])
def test_equal_counts_with_other_shapes(lh, rng, shapes):
    layer, _ = lh.make_layer(SCE, shapes)
    x, t = rng.standard_normal(shapes[0]), rng.uniform(size=shapes[1])
    np.testing.assert_allclose(layer.forward([x, t])[0], expected(x, t), rtol=1e-13)


def test_int_targets(lh, rng):
    layer, _ = lh.make_layer(SCE, [(3, 4), (3, 4)], dtype=np.float32, ignore_label=-1)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = rng.integers(-1, 2, size=(3, 4))
    np.testing.assert_allclose(layer.forward([x, t])[0], expected(x, t, -1), rtol=1e-6)
    (dx, _) = layer.backward([np.array(1.0, np.float32)])
    assert dx.dtype == np.float32 and (dx[t == -1] == 0).all()


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(SCE, [SHAPE, SHAPE], propagate_down=[False, False])
    layer.forward([rng.standard_normal(SHAPE), targets(rng, SHAPE)])
    assert layer.backward([np.array(1.0)]) == [None, None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(SCE, [SHAPE, SHAPE], normalization="FULL", ignore_label=-1)
    new = (5, 1, 3)
    fresh, _ = lh.make_layer(SCE, [new, new], normalization="FULL", ignore_label=-1)
    assert layer.reshape([new, new]) == [()]
    x, t = rng.standard_normal(new), targets(rng, new, -1)
    np.testing.assert_array_equal(layer.forward([x, t])[0], fresh.forward([x, t])[0])
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0],
                                  fresh.backward([np.array(1.0)])[0])


@pytest.mark.parametrize("mode", MODES)
def test_float32_matches_float64(lh, rng, mode):
    lh.assert_float32_matches(SCE, [4 * rng.standard_normal(SHAPE), targets(rng, SHAPE, -1)],
                              normalization=mode, ignore_label=-1)


@pytest.mark.parametrize("p", [{}, {"normalization": "VALID", "ignore_label": 255},
                               {"normalize": True}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(SCE.Params(**p))


@pytest.mark.parametrize("p", [{"normalization": "MEAN"}, {"normalization": 1},
                               {"ignore": 0}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError, match=next(iter(p))):
        SCE.Params(**p)


@pytest.mark.parametrize("shapes", [[(4, 3), (4, 2)], [(4, 3), (3, 4)], [(4, 3), (12,)]])
def test_mismatched_shapes_are_user_errors(lh, shapes):
    x, t = (str(s).replace("(", r"\(").replace(")", r"\)") for s in shapes)
    with pytest.raises(UserError, match=rf"layer sce \(SigmoidCrossEntropyLoss\): targets must "
                                        rf"have the logits' batch size and count, got logits "
                                        rf"score {x} and targets gt {t}"):
        lh.make_layer(SCE, shapes, name="sce", bottom_names=["score", "gt"])
