import textwrap

import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.infogain_loss import InfogainLoss
from layerflow.layers.softmax_loss import SoftmaxLoss
from layerflow.registry import LAYERS

N, C = 5, 3
MODES = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def softmax(rows):
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(x, label, h, ignore=None, axis=1, mode="VALID"):
    """-sum_l H[y, l] log(max(p_l, 1e-20)) over the counted positions (classes moved last),
    over Caffe's normalizer for `mode` (at least 1)."""
    axis %= x.ndim
    p = softmax(np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]))
    h = np.asarray(h).reshape(x.shape[axis], x.shape[axis])
    total, valid = 0.0, 0
    for row, y in zip(p, label.reshape(-1)):
        if ignore is not None and y == ignore:
            continue
        total -= (h[int(y)] * np.log(np.maximum(row, 1e-20))).sum()
        valid += 1
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1:]))
    return total / max({"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer,
                        "NONE": 1}[mode], 1)


def infogain(rng, c=C):
    return rng.uniform(0.0, 2.0, size=(c, c))


def test_registered():
    assert LAYERS.get("InfogainLoss") is InfogainLoss and InfogainLoss.is_loss


def test_hand_computed(lh):
    # softmax([0, ln 3]) = [1/4, 3/4]
    x = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    h = np.array([[1.0, 0.5], [0.2, 2.0]])
    layer, tops = lh.make_layer(InfogainLoss, [(2, 2), (2,), (2, 2)])
    (loss,) = layer.forward([x, np.array([0.0, 1.0]), h])
    assert tops == [()]
    lp = np.log([0.25, 0.75])
    want = (-(1.0 * lp[0] + 0.5 * lp[1]) - (0.2 * lp[0] + 2.0 * lp[1])) / 2
    np.testing.assert_allclose(loss, want, rtol=1e-15)
    dx, dlabel, dh = layer.backward([np.array(1.0)])
    p = np.array([0.25, 0.75])
    want_dx = np.array([p * 1.5 - h[0], p * 2.2 - h[1]]) / 2  # p * rowsum(H[y]) - H[y]
    np.testing.assert_allclose(dx, want_dx, rtol=1e-14)
    assert dlabel is None and dh is None


def test_identity_h_is_softmax_loss(lh, rng):
    x, label = 2 * rng.standard_normal((N, C)), rng.integers(0, C, size=N).astype(np.float64)
    layer, _ = lh.make_layer(InfogainLoss, [(N, C), (N,), (C, C)])
    plain, _ = lh.make_layer(SoftmaxLoss, [(N, C), (N,)])
    np.testing.assert_allclose(layer.forward([x, label, np.eye(C)])[0],
                               plain.forward([x, label])[0], rtol=1e-13)
    np.testing.assert_allclose(layer.backward([np.array(1.0)])[0],
                               plain.backward([np.array(1.0)])[0], rtol=1e-13, atol=1e-16)


def test_log_is_clipped_at_1e_20(lh):
    x = np.array([[0.0, -100.0]])  # p_1 = e^-100 / (1 + e^-100) < 1e-20
    h = np.array([[0.0, 1.0], [0.0, 0.0]])
    layer, _ = lh.make_layer(InfogainLoss, [(1, 2), (1,), (2, 2)])
    (loss,) = layer.forward([x, np.array([0.0]), h])
    np.testing.assert_allclose(loss, -np.log(1e-20), rtol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [None, 2])
@pytest.mark.parametrize("h_shape", [(C, C), (1, 1, C, C)])
def test_forward_matches_reference(lh, rng, mode, ignore, h_shape):
    layer, _ = lh.make_layer(InfogainLoss, [(N, C), (N,), h_shape], normalization=mode,
                             ignore_label=ignore)
    x, h = 3 * rng.standard_normal((N, C)), infogain(rng).reshape(h_shape)
    label = rng.integers(0, C, size=N).astype(np.float64)
    label[1] = 2
    np.testing.assert_allclose(layer.forward([x, label, h])[0],
                               reference(x, label, h, ignore, mode=mode), rtol=1e-13)


@pytest.mark.parametrize("shape, axis, label_shape", [((2, 3, 2, 2), 1, (2, 2, 2)),
                                                      ((2, 3, 2, 2), 1, (2, 1, 2, 2)),
                                                      ((2, 2, 3), -1, (2, 2))])
@pytest.mark.parametrize("mode", ["VALID", "FULL"])
def test_axis_matches_reference(lh, rng, shape, axis, label_shape, mode):
    layer, _ = lh.make_layer(InfogainLoss, [shape, label_shape, (3, 3)], axis=axis,
                             normalization=mode, ignore_label=-1)
    x, h = rng.standard_normal(shape), infogain(rng)
    label = rng.integers(0, 3, size=label_shape).astype(np.float64)
    label.reshape(-1)[0] = -1
    np.testing.assert_allclose(layer.forward([x, label, h])[0],
                               reference(x, label, h, -1, axis, mode), rtol=1e-13)


def test_default_normalization_is_valid(lh, rng):
    layer, _ = lh.make_layer(InfogainLoss, [(N, C), (N,), (C, C)], ignore_label=0)
    x, h = rng.standard_normal((N, C)), infogain(rng)
    label = np.array([0.0, 1.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(layer.forward([x, label, h])[0],
                               reference(x, label, h, 0, mode="VALID"), rtol=1e-13)
    assert reference(x, label, h, 0, mode="VALID") != reference(x, label, h, 0, mode="FULL")


@pytest.mark.parametrize("mode", MODES)
def test_gradients_with_h_bottom(rng, mode):
    label = rng.integers(0, C, size=N).astype(np.float64)
    label[0] = -1
    res = gradcheck(InfogainLoss, [2 * rng.standard_normal((N, C)), label, infogain(rng)],
                    {"normalization": mode, "ignore_label": -1}, check_bottoms=[0])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.entries[0].checked == N * C


def test_gradients_per_pixel_from_source(rng, tmp_path):
    np.save(tmp_path / "h.npy", infogain(rng))
    label = rng.integers(0, C, size=(2, 2, 2)).astype(np.float64)
    res = gradcheck(InfogainLoss, [rng.standard_normal((2, C, 2, 2)), label],
                    {"source": str(tmp_path / "h.npy")}, check_bottoms=[0])
    assert res.entries[0].checked == 2 * C * 4


def test_source_relative_to_the_net_yaml(rng, tmp_path):
    h = infogain(rng)
    np.save(tmp_path / "H.npy", h)
    (tmp_path / "net.yaml").write_text(textwrap.dedent("""
        name: ig
        dtype: float64
        layers:
          - {name: data, type: Input, shape: [[5, 3], [5]], top: [x, label]}
          - {name: loss, type: InfogainLoss, bottom: [x, label], source: H.npy}
        """))
    net = lf.Net.from_yaml(tmp_path / "net.yaml")
    x, label = rng.standard_normal((N, C)), rng.integers(0, C, size=N).astype(np.float64)
    net.forward({"x": x, "label": label})
    np.testing.assert_allclose(net.loss, reference(x, label, h), rtol=1e-13)


@pytest.mark.parametrize("h_shape", [(C, C), (1, 1, C, C)])
def test_source_shapes(lh, rng, tmp_path, h_shape):
    h = infogain(rng)
    np.save(tmp_path / "h.npy", h.reshape(h_shape).astype(np.float32))
    layer, _ = lh.make_layer(InfogainLoss, [(N, C), (N,)], source=str(tmp_path / "h.npy"))
    x, label = rng.standard_normal((N, C)), rng.integers(0, C, size=N).astype(np.float64)
    np.testing.assert_allclose(layer.forward([x, label])[0],
                               reference(x, label, h.astype(np.float32)), rtol=1e-13)
    assert layer.backward([np.array(1.0)])[1:] == [None]


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(InfogainLoss, [(N, C), (N,), (C, C)],
                             propagate_down=[False, False, False])
    layer.forward([rng.standard_normal((N, C)), np.zeros(N), infogain(rng)])
    assert layer.backward([np.array(1.0)]) == [None, None, None]


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(InfogainLoss, [(2, C, 2, 2), (2, 2, 2), (C, C)])
    new = [(3, C, 1, 3), (3, 1, 3), (C, C)]
    fresh, _ = lh.make_layer(InfogainLoss, new)
    assert layer.reshape(new) == [()]
    x, h = rng.standard_normal(new[0]), infogain(rng)
    label = rng.integers(0, C, size=new[1]).astype(np.float64)
    np.testing.assert_array_equal(layer.forward([x, label, h])[0],
                                  fresh.forward([x, label, h])[0])
    np.testing.assert_array_equal(layer.backward([np.array(1.0)])[0],
                                  fresh.backward([np.array(1.0)])[0])


@pytest.mark.parametrize("mode", ["VALID", "NONE"])
def test_float32_matches_float64(lh, rng, mode):
    label = rng.integers(0, C, size=N).astype(np.float64)
    lh.assert_float32_matches(InfogainLoss, [rng.standard_normal((N, C)), label, infogain(rng)],
                              normalization=mode)


@pytest.mark.parametrize("p", [{}, {"source": "h.npy", "axis": 2, "ignore_label": 255,
                                    "normalization": "BATCH_SIZE"}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(InfogainLoss.Params(**p))


@pytest.mark.parametrize("p", [{"normalize": True}, {"normalization": "SUM"}, {"H": "h.npy"}])
def test_bad_params_rejected(p):
    """Caffe aborts on the legacy `normalize` key for this layer: here it is no key of it."""
    with pytest.raises(ValidationError, match=next(iter(p))):
        InfogainLoss.Params(**p)


def test_missing_h_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): source: the infogain "
                                        r"matrix H is missing"):
        lh.make_layer(InfogainLoss, [(N, C), (N,)], name="ig")


def test_h_given_twice_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): source: H is given twice"):
        lh.make_layer(InfogainLoss, [(N, C), (N,), (C, C)], name="ig", source="h.npy")


def test_unreadable_source_is_a_user_error(lh, tmp_path):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): source: cannot read "
                                        r".*nope\.npy"):
        lh.make_layer(InfogainLoss, [(N, C), (N,)], name="ig", source=str(tmp_path / "nope.npy"))
    (tmp_path / "h.binaryproto").write_bytes(b"\x00")
    with pytest.raises(UserError, match=r"source: .*h\.binaryproto' is not a \.npy file"):
        lh.make_layer(InfogainLoss, [(N, C), (N,)], name="ig",
                      source=str(tmp_path / "h.binaryproto"))


@pytest.mark.parametrize("h_shape", [(C, C + 1), (C * C,), (2, C, C)])
def test_h_not_square_is_a_user_error(lh, rng, tmp_path, h_shape):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): H \(bottom gain\) must be "
                                        r"a C x C matrix"):
        lh.make_layer(InfogainLoss, [(N, C), (N,), h_shape], name="ig",
                      bottom_names=["x", "y", "gain"])
    np.save(tmp_path / "h.npy", np.ones(h_shape))
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): H in .*h\.npy' must be a "
                                        r"C x C matrix"):
        lh.make_layer(InfogainLoss, [(N, C), (N,)], name="ig", source=str(tmp_path / "h.npy"))


def test_h_of_another_class_count_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): H is 4 x 4 but the scores "
                                        r"\(5, 3\) have 3 classes on axis 1"):
        lh.make_layer(InfogainLoss, [(N, C), (N,), (4, 4)], name="ig")


def test_wrong_label_shape_is_a_user_error(lh):
    with pytest.raises(UserError, match=r"layer ig \(InfogainLoss\): labels must be \(2, 2, 2\) "
                                        r"or \(2, 1, 2, 2\)"):
        lh.make_layer(InfogainLoss, [(2, C, 2, 2), (2,), (C, C)], name="ig")
