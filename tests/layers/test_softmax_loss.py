import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.softmax_loss import SoftmaxLoss
from layerflow.registry import LAYERS

N, C = 6, 4
IGNORE = [None, -1]
MODES = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def reference(x, label, ignore=None, axis=1, mode="VALID"):
    """Caffe's SoftmaxWithLoss in plain numpy: -log softmax(x)[y] over the counted positions
    (class axis moved last), divided by the normalizer of `mode` (at least 1)."""
    axis %= x.ndim
    rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    total, valid = 0.0, 0
    for row, y in zip(rows, label.reshape(-1)):
        if ignore is not None and y == ignore:
            continue
        m = row.max()
        total += m + np.log(np.exp(row - m).sum()) - row[int(y)]
        valid += 1
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1:]))
    return total / max({"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer,
                        "NONE": 1}[mode], 1)


def labels_for(rng, ignore, dtype=np.float64, shape=(N,), classes=C):
    label = rng.integers(0, classes, size=shape).astype(dtype)
    if ignore is not None:
        label.reshape(-1)[[1, 4]] = ignore
    return label


def test_registered():
    assert LAYERS.get("SoftmaxLoss") is SoftmaxLoss and SoftmaxLoss.is_loss


@pytest.mark.parametrize("ignore", IGNORE)
@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
@pytest.mark.parametrize("label_dtype", [np.float64, np.int64])
def test_forward_matches_reference(lh, rng, ignore, label_shape, label_dtype):
    layer, tops = lh.make_layer(SoftmaxLoss, [(N, C), label_shape], ignore_label=ignore)
    x = 3 * rng.standard_normal((N, C))
    label = labels_for(rng, ignore, label_dtype).reshape(label_shape)
    (loss,) = layer.forward([x, label])
    assert tops == [()] and loss.shape == ()
    np.testing.assert_allclose(loss, reference(x, label, ignore), rtol=1e-13)


def test_hand_computed_normalizations(lh):
    # p = softmax([0, ln 3]) = [1/4, 3/4]: -log p = [ln 4, ln(4/3)]; sample 2 is ignored
    x = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)], [5.0, 1.0]])
    label = np.array([0.0, 1.0, -1.0])
    total = np.log(4.0) + np.log(4.0 / 3.0)
    for mode, divisor in [("VALID", 2), ("FULL", 3), ("BATCH_SIZE", 3), ("NONE", 1)]:
        layer, _ = lh.make_layer(SoftmaxLoss, [(3, 2), (3,)], ignore_label=-1,
                                 normalization=mode)
        np.testing.assert_allclose(layer.forward([x, label])[0], total / divisor, rtol=1e-15)
        (dx, _) = layer.backward([np.array(1.0)])
        expect = np.array([[0.25 - 1, 0.75], [0.25, 0.75 - 1], [0.0, 0.0]]) / divisor
        np.testing.assert_allclose(dx, expect, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("p, mode", [
    ({}, "VALID"),
    ({"normalize": True}, "VALID"),
    ({"normalize": False}, "BATCH_SIZE"),
    ({"normalization": "FULL", "normalize": False}, "FULL"),  # normalization wins, as Caffe
    ({"normalization": "NONE"}, "NONE"),
])
def test_normalization_default_and_legacy_normalize(lh, rng, p, mode):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], ignore_label=-1, **p)
    x = rng.standard_normal((N, C))
    label = labels_for(rng, -1)
    (loss,) = layer.forward([x, label])
    np.testing.assert_allclose(loss, reference(x, label, -1, mode=mode), rtol=1e-13)


@pytest.mark.parametrize("shape, axis, label_shape", [
    ((2, 3, 2, 2), 1, (2, 2, 2)),
    ((2, 3, 2, 2), 1, (2, 1, 2, 2)),
    ((2, 2, 3), -1, (2, 2)),
    ((2, 2, 3), 2, (2, 2, 1)),
    ((3, 2), 0, (2,)),
    ((2, 3, 1, 1), 1, (2,)),  # global-pooled scores, labels (N,) as Caffe nets feed them
])
@pytest.mark.parametrize("mode", MODES)
def test_axis_forward_matches_reference(lh, rng, shape, axis, label_shape, mode):
    c = shape[axis]
    layer, tops = lh.make_layer(SoftmaxLoss, [shape, label_shape], axis=axis, ignore_label=-1,
                                normalization=mode)
    x = 2 * rng.standard_normal(shape)
    label = rng.integers(0, c, size=label_shape).astype(np.float64)
    label.reshape(-1)[1] = -1
    (loss,) = layer.forward([x, label])
    assert tops == [()]
    np.testing.assert_allclose(loss, reference(x, label, -1, axis, mode), rtol=1e-13)


def test_per_pixel_equals_one_softmax_per_pixel(lh, rng):
    """N x C x H x W scores with axis 1 are the (N H W) x C problem with the classes last."""
    x = rng.standard_normal((2, 3, 2, 2))
    label = rng.integers(0, 3, size=(2, 2, 2)).astype(np.float64)
    layer, _ = lh.make_layer(SoftmaxLoss, [x.shape, label.shape])
    flat, _ = lh.make_layer(SoftmaxLoss, [(8, 3), (8,)])
    x2 = np.ascontiguousarray(np.moveaxis(x, 1, -1).reshape(8, 3))
    np.testing.assert_allclose(layer.forward([x, label])[0],
                               flat.forward([x2, label.reshape(-1)])[0], rtol=1e-14)
    dx = layer.backward([np.array(1.0)])[0]
    dx2 = flat.backward([np.array(1.0)])[0]
    np.testing.assert_allclose(np.moveaxis(dx, 1, -1).reshape(8, 3), dx2, rtol=1e-14)


def test_large_scores_stay_finite(lh):
    layer, _ = lh.make_layer(SoftmaxLoss, [(2, 3), (2,)], dtype=np.float32)
    x = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 5000.0]], np.float32)
    (loss,) = layer.forward([x, np.array([0.0, 0.0], np.float32)])
    np.testing.assert_allclose(loss, 5000.0 / 2, rtol=1e-6)


@pytest.mark.parametrize("ignore", IGNORE)
def test_gradients(rng, ignore):
    x = 2 * rng.standard_normal((N, C))
    res = gradcheck(SoftmaxLoss, [x, labels_for(rng, ignore)], {"ignore_label": ignore},
                    check_bottoms=[0])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == N * C


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [1, -1])
def test_gradients_per_pixel_and_normalization(rng, mode, axis):
    shape = (2, 3, 2, 2) if axis == 1 else (2, 2, 3)
    label_shape = (2, 2, 2) if axis == 1 else (2, 2)
    label = rng.integers(0, 3, size=label_shape).astype(np.float64)
    label.reshape(-1)[0] = 7
    res = gradcheck(SoftmaxLoss, [2 * rng.standard_normal(shape), label],
                    {"ignore_label": 7, "normalization": mode, "axis": axis}, check_bottoms=[0])
    assert res.entries[0].checked == int(np.prod(shape))


def test_ignored_rows_get_no_gradient_and_loss_weight_scales(lh, rng):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], propagate_down=[True, False],
                             ignore_label=-1)
    x = rng.standard_normal((N, C))
    label = labels_for(rng, -1)
    layer.forward([x, label])
    dx1, dlabel = (np.copy(d) if d is not None else None for d in layer.backward([np.array(1.0)]))
    assert dlabel is None
    np.testing.assert_array_equal(dx1[[1, 4]], 0.0)
    (dx3, _) = layer.backward([np.array(3.0)])
    np.testing.assert_allclose(dx3, 3 * dx1, rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_all_ignored_gives_zero(lh, rng, mode):
    layer, _ = lh.make_layer(SoftmaxLoss, [(2, C), (2,)], ignore_label=7, normalization=mode)
    (loss,) = layer.forward([rng.standard_normal((2, C)), np.array([7.0, 7.0])])
    assert loss == 0.0
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0], 0.0)


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], propagate_down=[False, False])
    layer.forward([rng.standard_normal((N, C)), labels_for(rng, None)])
    assert layer.backward([np.array(1.0)]) == [None, None]


@pytest.mark.parametrize("shapes, new", [
    ([(N, C), (N,)], [(3, C), (3,)]),
    ([(2, 3, 2, 2), (2, 2, 2)], [(3, 3, 1, 4), (3, 1, 4)]),  # batch and image size
])
def test_reshape_equals_fresh_layer(lh, rng, shapes, new):
    layer, _ = lh.make_layer(SoftmaxLoss, shapes, ignore_label=-1, normalization="FULL")
    fresh, _ = lh.make_layer(SoftmaxLoss, new, ignore_label=-1, normalization="FULL")
    assert layer.reshape(new) == [()]
    x = rng.standard_normal(new[0])
    label = rng.integers(0, 3, size=new[1]).astype(np.float64)
    label.reshape(-1)[0] = -1
    np.testing.assert_array_equal(layer.forward([x, label])[0], fresh.forward([x, label])[0])
    np.testing.assert_array_equal(layer.backward([np.array(1.3)])[0],
                                  fresh.backward([np.array(1.3)])[0])


@pytest.mark.parametrize("ignore", IGNORE)
def test_float32_matches_float64(lh, rng, ignore):
    lh.assert_float32_matches(SoftmaxLoss, [rng.standard_normal((N, C)), labels_for(rng, ignore)],
                              ignore_label=ignore)


def test_float32_matches_float64_per_pixel(lh, rng):
    lh.assert_float32_matches(SoftmaxLoss, [rng.standard_normal((2, 3, 2, 2)),
                                            labels_for(rng, -1, shape=(2, 2, 2), classes=3)],
                              ignore_label=-1, normalization="BATCH_SIZE")


@pytest.mark.parametrize("p", [{"ignore_label": None}, {"ignore_label": -1},
                               {"normalization": "FULL", "axis": -1}, {"normalize": False}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(SoftmaxLoss.Params(**p))


@pytest.mark.parametrize("p", [{"ignore": -1}, {"normalization": "MEAN"},
                               {"normalization": "valid"}, {"axis": 1.5}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError, match=next(iter(p))):
        SoftmaxLoss.Params(**p)


@pytest.mark.parametrize("bad", [4.0, -1.0, 1.5, np.nan])
def test_bad_label_is_a_user_error(lh, rng, bad):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], name="loss_cls")
    label = labels_for(rng, None)
    label[3] = bad
    with pytest.raises(UserError) as err:
        layer.forward([rng.standard_normal((N, C)), label])
    msg = str(err.value)
    assert "loss_cls" in msg and f"label {bad!r}" in msg and "batch index 3" in msg


def test_ignore_label_is_not_a_bad_label(lh, rng):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], name="loss_cls", ignore_label=-1)
    layer.forward([rng.standard_normal((N, C)), labels_for(rng, -1)])  # no error
    label = labels_for(rng, -1)
    label[0] = -2
    with pytest.raises(UserError, match=r"loss_cls .*label -2\.0"):
        layer.forward([rng.standard_normal((N, C)), label])


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("shapes", [[(N, C), (N + 1,)], [(N, C), (N, 2)], [(N, C), (1, N)]])
def test_wrong_label_shape_is_a_user_error(lh, shapes):
    with pytest.raises(UserError, match=rf"layer loss_cls \(SoftmaxLoss\): labels must be "
                                        rf"\({N},\) or \({N}, 1\).*got shape "
                                        rf"{re_shape(shapes[1])}"):
        lh.make_layer(SoftmaxLoss, shapes, name="loss_cls")


@pytest.mark.parametrize("labels", [(2, 2), (2, 3, 2, 2), (2, 2, 2, 1, 3), (8,), (2, 2, 1, 2)])
def test_wrong_per_pixel_label_shape_is_a_user_error(lh, labels):
    with pytest.raises(UserError, match=r"layer loss_cls \(SoftmaxLoss\): labels must be "
                                        r"\(2, 2, 2\) or \(2, 1, 2, 2\) to match scores "
                                        r"\(2, 3, 2, 2\) \(classes: axis 1\), got shape "
                                        + re_shape(labels)):
        lh.make_layer(SoftmaxLoss, [(2, 3, 2, 2), labels], name="loss_cls")


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range_is_a_user_error(lh, axis):
    with pytest.raises(UserError, match=rf"layer loss_cls \(SoftmaxLoss\): axis: {axis} is out "
                                        rf"of range for bottom shape \(2, 3\)"):
        lh.make_layer(SoftmaxLoss, [(2, 3), (2,)], name="loss_cls", axis=axis)


def test_rejected_reshape_names_the_shapes(lh):
    layer, _ = lh.make_layer(SoftmaxLoss, [(2, 3, 2, 2), (2, 2, 2)], name="loss_cls")
    with pytest.raises(UserError, match=r"loss_cls .*\(3, 3, 4, 4\).*got shape \(3, 4, 5\)"):
        layer.reshape([(3, 3, 4, 4), (3, 4, 5)])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_give_a_non_finite_loss_not_an_exception(bad):
    """The divergence guard finds the first layer whose top went non-finite: the loss must
    carry the NaN or inf forward rather than raise or hide it."""
    from layerflow.layers.softmax_loss import softmax_loss_forward

    for dtype in (np.float32, np.float64):
        rows = np.array([[1.0, 2.0, 3.0], [0.5, bad, -1.0]], dtype)
        label = np.array([0.0, 1.0], dtype)
        # (N, C) scores, and the same two positions along a contiguous inner axis
        for x in (rows.reshape(2, 3, 1), np.ascontiguousarray(rows.T).reshape(1, 3, 2)):
            prob = np.zeros_like(x)
            loss, count = softmax_loss_forward(x, label, -5, prob)
            assert count == 2 and not np.isfinite(loss)
            # position 0 (prob[0, :, 0] in both layouts) is untouched by the bad one
            assert np.isfinite(prob[0, :, 0]).all()
