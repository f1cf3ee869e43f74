import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.softmax_loss import SoftmaxLoss
from layerflow.registry import LAYERS

N, C = 6, 4
IGNORE = [None, -1]


def reference(x, label, ignore):
    """Mean over counted samples of -log softmax(x)[y], with a log-sum-exp (plain numpy)."""
    loss, count = 0.0, 0
    for row, y in zip(x, label.reshape(-1)):
        if ignore is not None and y == ignore:
            continue
        m = row.max()
        loss += m + np.log(np.exp(row - m).sum()) - row[int(y)]
        count += 1
    return loss / max(count, 1)


def labels_for(rng, ignore, dtype=np.float64):
    label = rng.integers(0, C, size=N).astype(dtype)
    if ignore is not None:
        label[[1, 4]] = ignore
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


def test_all_ignored_gives_zero(lh, rng):
    layer, _ = lh.make_layer(SoftmaxLoss, [(2, C), (2,)], ignore_label=7)
    (loss,) = layer.forward([rng.standard_normal((2, C)), np.array([7.0, 7.0])])
    assert loss == 0.0
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0], 0.0)


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)], propagate_down=[False, False])
    layer.forward([rng.standard_normal((N, C)), labels_for(rng, None)])
    assert layer.backward([np.array(1.0)]) == [None, None]


@pytest.mark.parametrize("ignore", IGNORE)
def test_float32_matches_float64(lh, rng, ignore):
    lh.assert_float32_matches(SoftmaxLoss, [rng.standard_normal((N, C)), labels_for(rng, ignore)],
                              ignore_label=ignore)


@pytest.mark.parametrize("ignore", IGNORE)
def test_config_roundtrip(lh, ignore):
    lh.assert_roundtrip(SoftmaxLoss.Params(ignore_label=ignore))
    with pytest.raises(ValidationError):
        SoftmaxLoss.Params(ignore=ignore)


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


@pytest.mark.parametrize("shapes", [[(N, C), (N + 1,)], [(N, C), (N, 2)], [(N, C), (1, N)]])
def test_wrong_label_shape_is_a_user_error(lh, shapes):
    with pytest.raises(UserError, match=rf"layer loss_cls .*labels must be \({N},\).*"
                                        rf"got shape {re_shape(shapes[1])}"):
        lh.make_layer(SoftmaxLoss, shapes, name="loss_cls")


def test_scores_must_be_2d(lh):
    with pytest.raises(UserError, match=r"layer loss_cls .*\(N, C\).*\(2, 3, 4\)"):
        lh.make_layer(SoftmaxLoss, [(2, 3, 4), (2,)], name="loss_cls")


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_give_a_non_finite_loss_not_an_exception(bad):
    """The divergence guard finds the first layer whose top went non-finite: the loss must
    carry the NaN or inf forward rather than raise or hide it."""
    from layerflow.layers.softmax_loss import softmax_loss_forward

    for dtype in (np.float32, np.float64):
        x = np.array([[1.0, 2.0, 3.0], [0.5, bad, -1.0]], dtype)
        prob = np.zeros_like(x)
        loss, count = softmax_loss_forward(x, np.array([0.0, 1.0], dtype), -5, prob)
        assert count == 2 and not np.isfinite(loss)
        assert np.isfinite(prob[0]).all()  # the healthy row is untouched by the bad one
