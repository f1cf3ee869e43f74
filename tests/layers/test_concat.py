import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.concat import Concat
from layerflow.registry import LAYERS

# (bottom shapes, params, axis the reference joins along)
CASES = [([(2, 3, 4), (2, 1, 4), (2, 2, 4)], {}, 1),
         ([(2, 3, 4), (5, 3, 4)], {"axis": 0}, 0),
         ([(2, 3, 4), (2, 3, 1), (2, 3, 2)], {"axis": -1}, 2),
         ([(2, 3, 4), (2, 3, 2)], {"concat_dim": 2}, 2),
         ([(4, 2), (4, 5)], {}, 1)]
IDS = ["axis1-three", "axis0", "axis-1", "concat_dim", "2d"]


def test_registered():
    assert LAYERS.get("Concat") is Concat


@pytest.mark.parametrize("shapes,p,axis", CASES, ids=IDS)
def test_forward_and_backward_match_numpy(lh, rng, shapes, p, axis):
    layer, tops = lh.make_layer(Concat, shapes, **p)
    xs = [rng.standard_normal(s) for s in shapes]
    want = np.concatenate(xs, axis=axis)
    assert tops == [want.shape]
    np.testing.assert_array_equal(layer.forward(xs)[0], want)
    dout = rng.standard_normal(want.shape)
    pieces = np.split(dout, np.cumsum([s[axis] for s in shapes])[:-1], axis=axis)
    for dx, piece in zip(layer.backward([dout]), pieces):
        np.testing.assert_array_equal(dx, piece)
        assert dx.flags.c_contiguous


@pytest.mark.parametrize("shapes,p,axis", CASES, ids=IDS)
def test_gradients(rng, shapes, p, axis):
    res = gradcheck(Concat, [rng.standard_normal(s) for s in shapes], p)
    assert [e.name for e in res.entries] == [f"bottom[{i}]" for i in range(len(shapes))]


def test_one_bottom_shares_data_and_diff(lh, rng):
    layer, tops = lh.make_layer(Concat, [(2, 3)])
    x, dout = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert tops == [(2, 3)]
    assert layer.forward([x])[0] is x
    assert layer.backward([dout])[0] is dout


def test_propagate_down_per_bottom(lh, rng):
    shapes = [(2, 1, 3), (2, 2, 3), (2, 3, 3)]
    layer, _ = lh.make_layer(Concat, shapes, propagate_down=[False, True, False])
    layer.forward([rng.standard_normal(s) for s in shapes])
    dxs = layer.backward([rng.standard_normal((2, 6, 3))])
    assert dxs[0] is None and dxs[2] is None and dxs[1].shape == (2, 2, 3)


def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Concat, [(2, 3, 4), (2, 1, 4)])
    new = [(5, 3, 6), (5, 1, 6)]
    assert layer.reshape(new) == [(5, 4, 6)]
    fresh, _ = lh.make_layer(Concat, new)
    xs, dout = [rng.standard_normal(s) for s in new], rng.standard_normal((5, 4, 6))
    np.testing.assert_array_equal(layer.forward(xs)[0], fresh.forward(xs)[0])
    for a, b in zip(layer.backward([dout]), fresh.backward([dout])):
        np.testing.assert_array_equal(a, b)


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Concat, [rng.standard_normal((2, 3)), rng.standard_normal((2, 4))])


@pytest.mark.parametrize("p", [{}, {"axis": -2}, {"concat_dim": 0}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Concat.Params(**p))


@pytest.mark.parametrize("p", [{"axis": 1, "concat_dim": 1}, {"concat_dim": -1},
                               {"dim": 1}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Concat.Params(**p)


def test_axis_and_concat_dim_together_in_a_net_names_the_layer():
    with pytest.raises(UserError) as err:
        lf.Net.from_string("""
name: c
layers:
  - {name: data, type: Input, top: [a, b], shape: [[2, 3], [2, 3]]}
  - {name: join, type: Concat, bottom: [a, b], axis: 1, concat_dim: 1}
""")
    msg = str(err.value)
    assert "join" in msg and "give axis or concat_dim, not both" in msg


def test_shape_mismatch_names_layer_bottoms_and_shapes(lh):
    with pytest.raises(UserError) as err:
        lh.make_layer(Concat, [(2, 3, 4), (2, 5, 4), (3, 1, 4)], name="join",
                      bottom_names=["conv_a", "conv_b", "conv_c"])
    msg = str(err.value)
    assert "layer join (Concat)" in msg and "except at axis 1" in msg
    for part in ["conv_a (2, 3, 4)", "conv_b (2, 5, 4)", "conv_c (3, 1, 4)"]:
        assert part in msg


def test_rank_mismatch(lh):
    with pytest.raises(UserError, match=r"layer join \(Concat\).*b0 \(2, 3\), b1 \(2, 3, 1\)"):
        lh.make_layer(Concat, [(2, 3), (2, 3, 1)], name="join")


@pytest.mark.parametrize("p,key", [({"axis": 3}, "axis: 3"), ({"axis": -4}, "axis: -4"),
                                   ({"concat_dim": 3}, "concat_dim: 3")])
def test_axis_out_of_range(lh, p, key):
    with pytest.raises(UserError, match=rf"layer join \(Concat\): {key} is out of range for "
                                        rf"bottoms of 3 axes: b0 \(2, 3, 4\)"):
        lh.make_layer(Concat, [(2, 3, 4), (2, 3, 4)], name="join", **p)
