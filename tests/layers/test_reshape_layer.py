import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.reshape import Reshape
from layerflow.registry import LAYERS

SHAPE = (2, 3, 4, 5)
# (params, top shape), worked out by hand from Caffe's rule: bottom axes [axis, axis+num_axes)
# replaced by `shape`, 0 copies the bottom dim at the same absolute position, one -1 inferred,
# a negative axis counts from after the last axis (start = ndim + axis + 1)
CASES = [({"shape": [0, -1]}, (2, 60)),
         ({"shape": [0, 0, 1, -1]}, (2, 3, 1, 20)),
         ({"shape": [-1]}, (120,)),
         ({"shape": [6, 20]}, (6, 20)),
         ({"shape": [6], "axis": 0, "num_axes": 2}, (6, 4, 5)),
         ({"shape": [-1], "axis": 1, "num_axes": 2}, (2, 12, 5)),
         ({"shape": [0, -1], "axis": 1}, (2, 3, 20)),      # 0 copies axis 1, not axis 0
         ({"shape": [1], "axis": 1, "num_axes": 0}, (2, 1, 3, 4, 5)),
         ({"shape": [1], "axis": -1, "num_axes": 0}, (2, 3, 4, 5, 1)),  # after the last axis
         ({"shape": [5, 1], "axis": -2}, (2, 3, 4, 5, 1)),  # -2: the last axis replaced
         ({"shape": [2, -1, 0], "axis": 1, "num_axes": 3}, (2, 2, 6, 5)),
         ({"shape": [], "axis": 2, "num_axes": 0}, SHAPE)]
IDS = ["flatten", "copy-insert", "all", "fixed", "merge-first", "merge-middle", "copy-at-axis",
       "insert", "append", "axis-2", "copy-last", "noop"]


def test_registered():
    assert LAYERS.get("Reshape") is Reshape


@pytest.mark.parametrize("p,top", CASES, ids=IDS)
def test_top_is_a_view_of_the_bottom_with_caffes_shape(lh, rng, p, top):
    layer, tops = lh.make_layer(Reshape, [SHAPE], **p)
    assert tops == [top]
    x = rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    assert y.shape == top and np.shares_memory(y, x)
    np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
    dout = rng.standard_normal(top)
    (dx,) = layer.backward([dout])
    assert dx.shape == SHAPE and np.shares_memory(dx, dout)
    np.testing.assert_array_equal(dx.reshape(-1), dout.reshape(-1))


@pytest.mark.parametrize("p,top", CASES[:2] + CASES[6:7], ids=IDS[:2] + IDS[6:7])
def test_gradients(rng, p, top):
    res = gradcheck(Reshape, [rng.standard_normal(SHAPE)], p)
    assert res["bottom[0]"].checked == 120


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Reshape, [(2, 3)], shape=[-1], propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones(6)]) == [None]


@pytest.mark.parametrize("p,new,top", [({"shape": [0, -1]}, (7, 3, 2, 2), (7, 12)),
                                       ({"shape": [-1, 60]}, (5, 3, 4, 5), (5, 60))])
def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng, p, new, top):
    layer, _ = lh.make_layer(Reshape, [SHAPE], **p)
    assert layer.reshape([new]) == [top]
    fresh, _ = lh.make_layer(Reshape, [new], **p)
    x, dout = rng.standard_normal(new), rng.standard_normal(top)
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Reshape, [rng.standard_normal(SHAPE)], shape=[0, -1])


@pytest.mark.parametrize("p", [{"shape": [0, -1]}, {"shape": [2, 3], "axis": -1,
                                                    "num_axes": 0}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Reshape.Params(**p))


@pytest.mark.parametrize("p,msg", [({"shape": [-1, 3, -1]}, "at most one -1"),
                                   ({"shape": [2, -2]}, "dims must be positive, 0"),
                                   ({"num_axes": -2}, "greater than or equal to -1")])
def test_bad_params_rejected(p, msg):
    with pytest.raises(ValidationError, match=msg):
        Reshape.Params(**p)


def test_two_inferred_dims_in_a_net_names_the_layer():
    with pytest.raises(UserError) as err:
        lf.Net.from_string("""
name: r
layers:
  - {name: data, type: Input, top: x, shape: [[2, 3, 4]]}
  - {name: flat, type: Reshape, shape: [-1, -1]}
""")
    msg = str(err.value)
    assert "flat" in msg and "shape" in msg and "at most one -1" in msg and "[-1, -1]" in msg


@pytest.mark.parametrize("p,what", [
    ({"shape": [7]}, r"the new shape \(7,\) has 7 values, the bottom 120"),
    ({"shape": [7, -1]}, r"the bottom's count 120 is not divisible by the product of the "
                         r"other dims \(7\)"),
    ({"shape": [0, 0, 0, 0, 0]}, r"shape\[4\] is 0 \(copy the bottom's dim\) but the bottom "
                                 r"has no axis 4"),
    ({"shape": [1], "axis": 5}, r"axis: 5 is out of range for 4 axes"),
    ({"shape": [1], "axis": -6}, r"axis: -6 is out of range for 4 axes"),
    ({"shape": [1], "axis": 2, "num_axes": 3}, r"num_axes: axis \+ num_axes = 5 reaches past"),
], ids=["count", "not-divisible", "copy-past-end", "axis", "negative-axis", "num_axes"])
def test_shape_errors_name_layer_and_shapes(lh, p, what):
    with pytest.raises(UserError, match=r"layer resh \(Reshape\): " + what) as err:
        lh.make_layer(Reshape, [SHAPE], name="resh", **p)
    assert "bottom shape (2, 3, 4, 5)" in str(err.value)


def test_count_change_on_reshape_is_rejected(lh):
    layer, _ = lh.make_layer(Reshape, [SHAPE], name="resh", shape=[2, 60])
    with pytest.raises(UserError, match=r"layer resh \(Reshape\): the new shape \(2, 60\) has "
                                        r"120 values, the bottom 240"):
        layer.reshape([(4, 3, 4, 5)])


def test_in_place_is_rejected_as_in_caffe(lh):
    with pytest.raises(UserError, match=r"layer resh \(Reshape\): top 'x' is also its bottom"):
        lh.make_layer(Reshape, [SHAPE], name="resh", shape=[-1], bottom_names=["x"],
                      top_names=["x"])
