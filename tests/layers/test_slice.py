import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.slice import Slice
from layerflow.registry import LAYERS

# (bottom shape, params, number of tops, axis, where numpy splits)
CASES = [((2, 6, 3), {"slice_point": [1, 4]}, 3, 1, [1, 4]),
         ((2, 6, 3), {}, 3, 1, [2, 4]),
         ((4, 2, 5), {"axis": -1, "slice_point": [3]}, 2, 2, [3]),
         ((6, 2), {"axis": 0}, 2, 0, [3]),
         ((2, 3, 4), {"slice_dim": 2, "slice_point": [1, 2, 3]}, 4, 2, [1, 2, 3])]
IDS = ["points", "equal", "axis-1", "axis0-equal", "slice_dim"]


def tops(n):
    return [f"t{i}" for i in range(n)]


def test_registered():
    assert LAYERS.get("Slice") is Slice


@pytest.mark.parametrize("shape,p,n,axis,split", CASES, ids=IDS)
def test_forward_and_backward_match_numpy(lh, rng, shape, p, n, axis, split):
    layer, top_shapes = lh.make_layer(Slice, [shape], top_names=tops(n), **p)
    x = rng.standard_normal(shape)
    want = np.split(x, split, axis=axis)
    assert top_shapes == [w.shape for w in want]
    for y, w in zip(layer.forward([x]), want):
        np.testing.assert_array_equal(y, w)
        assert y.flags.c_contiguous
    douts = [rng.standard_normal(w.shape) for w in want]
    (dx,) = layer.backward(douts)
    np.testing.assert_array_equal(dx, np.concatenate(douts, axis=axis))


@pytest.mark.parametrize("shape,p,n,axis,split", CASES, ids=IDS)
def test_gradients(rng, shape, p, n, axis, split):
    res = gradcheck(Slice, [rng.standard_normal(shape)], p, top_names=tops(n))
    assert res["bottom[0]"].checked == int(np.prod(shape))


def test_one_top_shares_data_and_diff(lh, rng):
    layer, top_shapes = lh.make_layer(Slice, [(2, 3)], top_names=["t0"])
    x, dout = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert top_shapes == [(2, 3)]
    assert layer.forward([x])[0] is x
    assert layer.backward([dout])[0] is dout


def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng):
    p = {"slice_point": [2], "top_names": tops(2)}
    layer, _ = lh.make_layer(Slice, [(2, 5, 3)], **p)
    assert layer.reshape([(6, 5, 2)]) == [(6, 2, 2), (6, 3, 2)]
    fresh, _ = lh.make_layer(Slice, [(6, 5, 2)], **p)
    x = rng.standard_normal((6, 5, 2))
    douts = [rng.standard_normal((6, 2, 2)), rng.standard_normal((6, 3, 2))]
    for a, b in zip(layer.forward([x]), fresh.forward([x])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(layer.backward(douts)[0], fresh.backward(douts)[0])


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Slice, [(2, 4)], top_names=tops(2), propagate_down=[False])
    layer.forward([rng.standard_normal((2, 4))])
    assert layer.backward([np.ones((2, 2)), np.ones((2, 2))]) == [None]


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Slice, [rng.standard_normal((2, 4))], top_names=tops(2))


@pytest.mark.parametrize("p", [{}, {"slice_point": [1, 3]}, {"axis": -1},
                               {"slice_dim": 0, "slice_point": [2]}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Slice.Params(**p))


@pytest.mark.parametrize("p,msg", [({"slice_point": [3, 2]}, "strictly increasing"),
                                   ({"slice_point": [2, 2]}, "strictly increasing"),
                                   ({"slice_point": [0, 2]}, "strictly increasing and positive"),
                                   ({"axis": 1, "slice_dim": 1}, "not both"),
                                   ({"slice_dim": -1}, "greater than or equal to 0")])
def test_bad_params_rejected(p, msg):
    with pytest.raises(ValidationError, match=msg):
        Slice.Params(**p)


def test_wrong_number_of_points_names_layer_and_tops(lh):
    with pytest.raises(UserError, match=r"layer cut \(Slice\): slice_point: 1 points \[2\] for "
                                        r"3 tops"):
        lh.make_layer(Slice, [(2, 6)], name="cut", top_names=tops(3), slice_point=[2])


@pytest.mark.parametrize("points", [[2, 6], [7]])
def test_point_out_of_range_names_layer_points_and_shape(lh, points):
    with pytest.raises(UserError) as err:
        lh.make_layer(Slice, [(2, 6, 3)], name="cut", top_names=tops(len(points) + 1),
                      slice_point=points)
    msg = str(err.value)
    assert "layer cut (Slice)" in msg and str(points) in msg and "(2, 6, 3)" in msg
    assert "out of range" in msg


def test_unequal_split_names_layer_and_shape(lh):
    with pytest.raises(UserError, match=r"layer cut \(Slice\): axis 1 of bottom shape "
                                        r"\(2, 5\) has size 5, which 2 tops cannot share"):
        lh.make_layer(Slice, [(2, 5)], name="cut", top_names=tops(2))


def test_axis_out_of_range(lh):
    with pytest.raises(UserError, match=r"layer cut \(Slice\): slice_dim: 2 is out of range "
                                        r"for bottom shape \(2, 4\)"):
        lh.make_layer(Slice, [(2, 4)], name="cut", top_names=tops(2), slice_dim=2)
