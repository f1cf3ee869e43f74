import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.flatten import Flatten
from layerflow.registry import LAYERS

SHAPE = (2, 3, 4, 5)
# (params, top shape): Caffe's rule, dims before axis + [product axis..end_axis] + dims after
CASES = [({}, (2, 60)), ({"axis": 2}, (2, 3, 20)), ({"end_axis": 2}, (2, 12, 5)),
         ({"axis": 0}, (120,)), ({"axis": -2, "end_axis": -1}, (2, 3, 20)),
         ({"axis": 1, "end_axis": 1}, SHAPE), ({"axis": 0, "end_axis": -2}, (24, 5))]
IDS = ["default", "axis2", "end_axis2", "all", "negative", "one-axis", "axis0-end-2"]


def test_registered():
    assert LAYERS.get("Flatten") is Flatten


@pytest.mark.parametrize("p,top", CASES, ids=IDS)
def test_top_is_a_view_of_the_bottom_with_caffes_shape(lh, rng, p, top):
    layer, tops = lh.make_layer(Flatten, [SHAPE], **p)
    assert tops == [top]
    x = rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    assert y.shape == top and np.shares_memory(y, x)
    np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
    dout = rng.standard_normal(top)
    (dx,) = layer.backward([dout])
    assert dx.shape == SHAPE and np.shares_memory(dx, dout)
    np.testing.assert_array_equal(dx.reshape(-1), dout.reshape(-1))


@pytest.mark.parametrize("p,top", CASES[:3], ids=IDS[:3])
def test_gradients(rng, p, top):
    res = gradcheck(Flatten, [rng.standard_normal(SHAPE)], p)
    assert res["bottom[0]"].checked == 120


def test_non_contiguous_bottom_is_copied_into_the_right_order(lh, rng):
    layer, _ = lh.make_layer(Flatten, [(2, 3, 4)])
    x = rng.standard_normal((4, 3, 2)).transpose(2, 1, 0)  # a (2, 3, 4) view, not C order
    (y,) = layer.forward([x])
    np.testing.assert_array_equal(y, np.ascontiguousarray(x).reshape(2, 12))


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Flatten, [(2, 3)], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_reshape_to_another_batch_and_size_matches_a_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Flatten, [SHAPE], axis=1)
    new = (4, 3, 2, 2)
    assert layer.reshape([new]) == [(4, 12)]
    fresh, _ = lh.make_layer(Flatten, [new], axis=1)
    x, dout = rng.standard_normal(new), rng.standard_normal((4, 12))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Flatten, [rng.standard_normal(SHAPE)])


@pytest.mark.parametrize("p", [{}, {"axis": 2, "end_axis": -2}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Flatten.Params(**p))


def test_bad_params_rejected():
    with pytest.raises(ValidationError):
        Flatten.Params(start_axis=1)


def test_end_axis_before_axis_names_layer_and_shape(lh):
    with pytest.raises(UserError, match=r"layer flat \(Flatten\): end_axis 1 \(axis 1\) comes "
                                        r"before axis 2 \(axis 2\) for bottom shape "
                                        r"\(2, 3, 4, 5\)"):
        lh.make_layer(Flatten, [SHAPE], name="flat", axis=2, end_axis=1)


@pytest.mark.parametrize("p,key", [({"axis": 4}, "axis: 4"), ({"end_axis": -5}, "end_axis: -5")])
def test_axis_out_of_range(lh, p, key):
    with pytest.raises(UserError, match=rf"layer flat \(Flatten\): {key} is out of range for "
                                        rf"bottom shape \(2, 3, 4, 5\)"):
        lh.make_layer(Flatten, [SHAPE], name="flat", **p)


def test_in_place_is_rejected_as_in_caffe(lh):
    with pytest.raises(UserError, match=r"layer flat \(Flatten\): top 'x' is also its bottom"):
        lh.make_layer(Flatten, [SHAPE], name="flat", bottom_names=["x"], top_names=["x"])
