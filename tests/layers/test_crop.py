import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.crop import Crop
from layerflow.registry import LAYERS

# (bottom 0 shape, bottom 1 shape, params, the crop as index ranges per axis)
CASES = [((2, 3, 6, 7), (5, 1, 4, 4), {}, [(0, 2), (0, 3), (0, 4), (0, 4)]),
         ((2, 3, 6, 7), (2, 3, 4, 4), {"offset": [1]}, [(0, 2), (0, 3), (1, 5), (1, 5)]),
         ((2, 3, 6, 7), (1, 1, 3, 2), {"offset": [2, 4]}, [(0, 2), (0, 3), (2, 5), (4, 6)]),
         ((2, 3, 6, 7), (1, 2, 6, 3), {"axis": 1, "offset": [1, 0, 3]},
          [(0, 2), (1, 3), (0, 6), (3, 6)]),
         ((2, 3, 6, 7), (9, 9, 9, 5), {"axis": -1, "offset": [2]},
          [(0, 2), (0, 3), (0, 6), (2, 7)]),
         ((4, 6), (2, 3), {"axis": 0, "offset": [1]}, [(1, 3), (1, 4)])]
IDS = ["no-offset", "one-offset", "offset-per-axis", "axis1", "axis-1", "axis0"]


def crop_of(x, ranges):
    """x[lo0:hi0, lo1:hi1, ...] written out with plain index ranges."""
    return x[tuple(slice(lo, hi) for lo, hi in ranges)]


def test_registered():
    assert LAYERS.get("Crop") is Crop


@pytest.mark.parametrize("s0,s1,p,ranges", CASES, ids=IDS)
def test_forward_and_backward(lh, rng, s0, s1, p, ranges):
    layer, tops = lh.make_layer(Crop, [s0, s1], **p)
    top = tuple(hi - lo for lo, hi in ranges)
    assert tops == [top]
    x, ref = rng.standard_normal(s0), rng.standard_normal(s1)
    (y,) = layer.forward([x, ref])
    np.testing.assert_array_equal(y, crop_of(x, ranges))
    assert y.flags.c_contiguous
    dout = rng.standard_normal(top)
    dx, dref = layer.backward([dout])
    assert dref is None  # bottom[1] gives only its shape
    want = np.zeros(s0)
    crop_of(want, ranges)[...] = dout
    np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("s0,s1,p,ranges", CASES, ids=IDS)
def test_gradients(rng, s0, s1, p, ranges):
    res = gradcheck(Crop, [rng.standard_normal(s0), rng.standard_normal(s1)], p)
    assert [e.name for e in res.entries] == ["bottom[0]"]
    assert res.no_gradient == ["bottom[1]"]


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Crop, [(1, 1, 4, 4), (1, 1, 2, 2)], propagate_down=[False, False])
    layer.forward([rng.standard_normal((1, 1, 4, 4)), np.zeros((1, 1, 2, 2))])
    assert layer.backward([np.ones((1, 1, 2, 2))]) == [None, None]


def test_backward_clears_what_a_previous_window_wrote(lh, rng):
    layer, _ = lh.make_layer(Crop, [(1, 1, 5, 5), (1, 1, 2, 2)], offset=[3])
    layer.forward([rng.standard_normal((1, 1, 5, 5)), np.zeros((1, 1, 2, 2))])
    layer.backward([np.ones((1, 1, 2, 2))])
    layer.reshape([(1, 1, 5, 5), (1, 1, 1, 1)])
    layer.forward([rng.standard_normal((1, 1, 5, 5)), np.zeros((1, 1, 1, 1))])
    dx, _ = layer.backward([np.full((1, 1, 1, 1), 2.0)])
    assert dx.sum() == 2.0 and dx[0, 0, 3, 3] == 2.0


def test_reshape_to_another_batch_and_size_matches_a_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Crop, [(2, 3, 6, 7), (2, 3, 4, 4)], offset=[1])
    new = [(5, 3, 9, 8), (5, 3, 6, 5)]
    assert layer.reshape(new) == [(5, 3, 6, 5)]
    fresh, _ = lh.make_layer(Crop, new, offset=[1])
    xs, dout = [rng.standard_normal(s) for s in new], rng.standard_normal((5, 3, 6, 5))
    np.testing.assert_array_equal(layer.forward(xs)[0], fresh.forward(xs)[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Crop, [rng.standard_normal((2, 3, 6, 7)),
                                     rng.standard_normal((2, 3, 4, 4))], offset=[1, 2])


@pytest.mark.parametrize("p", [{}, {"axis": 1, "offset": [0, 1, 2]}, {"offset": [3]}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Crop.Params(**p))


@pytest.mark.parametrize("p", [{"offset": [-1]}, {"offsets": [1]}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Crop.Params(**p)


@pytest.mark.parametrize("s1,p,axis,off,size,dim", [((2, 3, 7, 4), {}, 2, 0, 7, 6),
                                                    ((2, 3, 4, 4), {"offset": [3]}, 2, 3, 4, 6),
                                                    ((2, 3, 2, 5), {"offset": [0, 3]}, 3, 3,
                                                     5, 7)],
                         ids=["bigger", "offset", "offset-per-axis"])
def test_crop_past_the_bottom_names_layer_and_shapes(lh, s1, p, axis, off, size, dim):
    with pytest.raises(UserError) as err:
        lh.make_layer(Crop, [(2, 3, 6, 7), s1], name="crop", **p)
    msg = str(err.value)
    assert msg.startswith("layer crop (Crop): ")
    assert (f"axis {axis} (offset {off} + size {size} from bottom[1] {s1}) reaches past "
            f"bottom[0] (2, 3, 6, 7), whose axis {axis} has size {dim}") in msg


def test_crop_past_the_bottom_after_a_reshape(lh):
    layer, _ = lh.make_layer(Crop, [(2, 3, 6, 7), (2, 3, 4, 4)], name="crop", offset=[2])
    with pytest.raises(UserError, match=r"layer crop \(Crop\): the crop of axis 3"):
        layer.reshape([(2, 3, 6, 5), (2, 3, 4, 4)])


def test_rank_mismatch(lh):
    with pytest.raises(UserError, match=r"layer crop \(Crop\): bottom\[0\] \(2, 3, 6, 7\) and "
                                        r"bottom\[1\] \(3, 4, 4\) must have the same number"):
        lh.make_layer(Crop, [(2, 3, 6, 7), (3, 4, 4)], name="crop")


def test_wrong_number_of_offsets(lh):
    with pytest.raises(UserError, match=r"layer crop \(Crop\): offset: 3 values \[1, 1, 1\] for "
                                        r"the 2 cropped axes 2..3 of \(2, 3, 6, 7\)"):
        lh.make_layer(Crop, [(2, 3, 6, 7), (2, 3, 4, 4)], name="crop", offset=[1, 1, 1])


def test_axis_out_of_range(lh):
    with pytest.raises(UserError, match=r"layer crop \(Crop\): axis: 4 is out of range"):
        lh.make_layer(Crop, [(2, 3, 6, 7), (2, 3, 4, 4)], name="crop", axis=4)
