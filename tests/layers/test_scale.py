import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import FillerSpec, UserError, fill
from layerflow.gradcheck import gradcheck
from layerflow.layers.scale import Scale
from layerflow.registry import LAYERS
from layerflow.snapshot import read_safetensors, save_weights

SHAPE = (2, 3, 4, 5)
GAUSS = {"type": "gaussian", "std": 1.0}
# one bottom: (params, shape of the learned scale)
ONE = [({}, (3,)), ({"num_axes": 2}, (3, 4)), ({"num_axes": -1}, (3, 4, 5)),
       ({"num_axes": 0}, ()), ({"axis": 0}, (2,)), ({"axis": -1}, (5,)),
       ({"axis": 2, "num_axes": -1}, (4, 5)), ({"axis": -2, "num_axes": 2}, (4, 5))]
ONE_IDS = ["default", "num_axes2", "all", "scalar", "axis0", "axis-1", "axis2-all", "axis-2"]
# two bottoms: (params, shape of bottom[1])
TWO = [({}, (3,)), ({}, (3, 4)), ({}, ()), ({"axis": 2}, (4, 5)), ({"axis": 0}, (2, 3)),
       ({"axis": -1}, (5,))]
TWO_IDS = ["C", "CH", "scalar", "axis2", "axis0", "axis-1"]


def reference(x, s, b, axis):
    """x * s (+ b), s covering axes axis .. axis+s.ndim-1 of x (numpy broadcasting)."""
    axis = 0 if s.ndim == 0 else axis % x.ndim
    lead, trail = (1,) * axis, (1,) * (x.ndim - axis - s.ndim)
    y = x * s.reshape(lead + s.shape + trail)
    if b is not None:
        y = y + b.reshape(lead + b.shape + trail)
    return y


def test_registered():
    assert LAYERS.get("Scale") is Scale


@pytest.mark.parametrize("p,w_shape", ONE, ids=ONE_IDS)
@pytest.mark.parametrize("bias", [False, True])
def test_one_bottom_forward_matches_reference(lh, rng, p, w_shape, bias):
    layer, tops = lh.make_layer(Scale, [SHAPE], filler=GAUSS, bias_term=bias,
                                bias_filler=GAUSS, **p)
    assert tops == [SHAPE]
    assert list(layer.params) == (["weight", "bias"] if bias else ["weight"])
    w = layer.params["weight"].data
    assert w.shape == w_shape
    b = layer.params["bias"].data if bias else None
    if bias:
        assert b.shape == w_shape
    x = rng.standard_normal(SHAPE)
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, w, b, p.get("axis", 1)), rtol=1e-14,
                               atol=1e-15)


@pytest.mark.parametrize("p,s_shape", TWO, ids=TWO_IDS)
@pytest.mark.parametrize("bias", [False, True])
def test_two_bottom_forward_matches_reference(lh, rng, p, s_shape, bias):
    layer, tops = lh.make_layer(Scale, [SHAPE, s_shape], bias_term=bias, bias_filler=GAUSS,
                                **p)
    assert tops == [SHAPE]
    assert list(layer.params) == (["bias"] if bias else [])  # no weight: bottom[1] scales
    b = layer.params["bias"].data if bias else None
    if bias:
        assert b.shape == s_shape
    x, s = rng.standard_normal(SHAPE), np.asarray(rng.standard_normal(s_shape))
    (y,) = layer.forward([x, s])
    np.testing.assert_allclose(y, reference(x, s, b, p.get("axis", 1)), rtol=1e-14,
                               atol=1e-15)


def test_default_fillers_are_identity_scale_and_zero_bias(lh, rng):
    layer, _ = lh.make_layer(Scale, [SHAPE], bias_term=True)
    np.testing.assert_array_equal(layer.params["weight"].data, np.ones(3))
    np.testing.assert_array_equal(layer.params["bias"].data, np.zeros(3))
    x = rng.standard_normal(SHAPE)
    np.testing.assert_array_equal(layer.forward([x])[0], x)
    # an explicit filler is taken as written: Caffe's constant filler defaults to value 0
    layer, _ = lh.make_layer(Scale, [SHAPE], filler={"type": "constant"})
    np.testing.assert_array_equal(layer.params["weight"].data, np.zeros(3))


@pytest.mark.parametrize("p,w_shape", ONE, ids=ONE_IDS)
def test_backward_matches_closed_form(lh, rng, p, w_shape):
    layer, _ = lh.make_layer(Scale, [SHAPE], filler=GAUSS, bias_term=True, **p)
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    w = layer.params["weight"].data
    layer.forward([x])
    (dx,) = layer.backward([dout])
    axis = 0 if len(w_shape) == 0 else p.get("axis", 1) % 4
    summed = tuple(range(axis)) + tuple(range(axis + len(w_shape), 4))
    np.testing.assert_allclose(dx, reference(dout, w, None, p.get("axis", 1)), rtol=1e-14)
    np.testing.assert_allclose(layer.params["weight"].grad, (dout * x).sum(axis=summed),
                               rtol=1e-12)
    np.testing.assert_allclose(layer.params["bias"].grad, dout.sum(axis=summed), rtol=1e-12)


@pytest.mark.parametrize("p,w_shape", ONE, ids=ONE_IDS)
@pytest.mark.parametrize("bias", [False, True])
def test_gradients_one_bottom(rng, p, w_shape, bias):
    x = rng.standard_normal(SHAPE)
    res = gradcheck(Scale, [x], {"filler": GAUSS, "bias_term": bias, "bias_filler": GAUSS, **p})
    names = ["bottom[0]", "weight"] + (["bias"] if bias else [])
    assert [e.name for e in res.entries] == names
    assert res["weight"].checked == int(np.prod(w_shape))


@pytest.mark.parametrize("p,s_shape", TWO, ids=TWO_IDS)
@pytest.mark.parametrize("bias", [False, True])
def test_gradients_two_bottoms(rng, p, s_shape, bias):
    x, s = rng.standard_normal(SHAPE), np.asarray(rng.standard_normal(s_shape))
    res = gradcheck(Scale, [x, s], {"bias_term": bias, "bias_filler": GAUSS, **p})
    assert [e.name for e in res.entries] == ["bottom[0]", "bottom[1]"] + (
        ["bias"] if bias else [])
    assert res["bottom[1]"].checked == s.size


@pytest.mark.parametrize("down", [[True, False], [False, True], [False, False]])
def test_two_bottoms_propagate_down_each(lh, rng, down):
    layer, _ = lh.make_layer(Scale, [SHAPE, (3,)], propagate_down=down, bias_term=True)
    x, s, dout = rng.standard_normal(SHAPE), rng.standard_normal(3), rng.standard_normal(SHAPE)
    layer.forward([x, s])
    dx, ds = layer.backward([dout])
    assert (dx is not None, ds is not None) == tuple(down)
    if down[1]:
        np.testing.assert_allclose(ds, (dout * x).sum(axis=(0, 2, 3)), rtol=1e-12)
    # the bias is a param: its gradient is added whatever propagate_down says
    np.testing.assert_allclose(layer.params["bias"].grad, dout.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_bottom_scale_diff_is_not_accumulated(lh, rng):
    layer, _ = lh.make_layer(Scale, [SHAPE, (3,)])
    x, s, dout = rng.standard_normal(SHAPE), rng.standard_normal(3), rng.standard_normal(SHAPE)
    layer.forward([x, s])
    first = layer.backward([dout])[1].copy()
    np.testing.assert_array_equal(layer.backward([dout])[1], first)


@pytest.mark.parametrize("two", [False, True])
def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng, two):
    shapes = lambda n: [(n, 3, 4, 5)] + ([(3,)] if two else [])  # noqa: E731
    layer, _ = lh.make_layer(Scale, shapes(2), filler=GAUSS, bias_term=True, bias_filler=GAUSS)
    assert layer.reshape(shapes(5)) == [(5, 3, 4, 5)]
    fresh, _ = lh.make_layer(Scale, shapes(5), filler=GAUSS, bias_term=True, bias_filler=GAUSS)
    for name, p in layer.params.items():
        fresh.params[name].data[...] = p.data
    bottoms = [rng.standard_normal(s) for s in shapes(5)]
    dout = rng.standard_normal((5, 3, 4, 5))
    np.testing.assert_array_equal(layer.forward(bottoms)[0], fresh.forward(bottoms)[0])
    for a, b in zip(layer.backward([dout]), fresh.backward([dout])):
        np.testing.assert_array_equal(a, b)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(p.grad, fresh.params[name].grad)


def test_spatial_size_change_is_allowed_when_the_scale_covers_channels_only(lh, rng):
    layer, _ = lh.make_layer(Scale, [SHAPE])
    assert layer.reshape([(2, 3, 7, 1)]) == [(2, 3, 7, 1)]


@pytest.mark.parametrize("bottoms,p", [([SHAPE], {"filler": GAUSS, "bias_term": True,
                                                  "bias_filler": GAUSS}),
                                       ([SHAPE, (4, 5)], {"axis": 2, "bias_term": True}),
                                       ([SHAPE], {"num_axes": 0, "filler": GAUSS})],
                         ids=["one", "two", "scalar"])
def test_float32_matches_float64(lh, rng, bottoms, p):
    lh.assert_float32_matches(Scale, [np.asarray(rng.standard_normal(s)) for s in bottoms], **p)


@pytest.mark.parametrize("p", [{}, {"axis": -1, "num_axes": -1}, {"bias_term": True},
                               {"filler": GAUSS, "bias_filler": {"type": "constant",
                                                                 "value": 0.5}}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(Scale.Params(**p))


@pytest.mark.parametrize("p", [{"num_axes": -2}, {"scale": 1.0}, {"bias_term": "maybe"}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        Scale.Params(**p)


def test_two_bottom_shape_mismatch_names_layer_and_shapes(lh):
    with pytest.raises(UserError) as err:
        lh.make_layer(Scale, [SHAPE, (4,)], name="sc")
    msg = str(err.value)
    assert "layer sc (Scale)" in msg and "(4,)" in msg and str(SHAPE) in msg and "(3,)" in msg


def test_two_bottom_scale_reaching_past_the_bottom(lh):
    with pytest.raises(UserError, match=r"layer sc \(Scale\): the scale of shape \(5, 1\) must "
                                        r"match bottom\[0\] \(2, 3, 4, 5\)"):
        lh.make_layer(Scale, [SHAPE, (5, 1)], name="sc", axis=3)


def test_num_axes_past_the_last_axis(lh):
    with pytest.raises(UserError, match=r"layer sc \(Scale\): num_axes: 3 axes from axis 2 "
                                        r"reach past bottom shape \(2, 3, 4, 5\)"):
        lh.make_layer(Scale, [SHAPE], name="sc", axis=2, num_axes=3)


def test_axis_out_of_range(lh):
    with pytest.raises(UserError, match=r"layer sc \(Scale\): axis: 4 is out of range for "
                                        r"bottom shape \(2, 3, 4, 5\)"):
        lh.make_layer(Scale, [SHAPE], name="sc", axis=4)


def test_learned_scale_fixes_the_covered_dims(lh):
    layer, _ = lh.make_layer(Scale, [SHAPE], name="sc", num_axes=-1)
    with pytest.raises(UserError) as err:
        layer.reshape([(2, 3, 6, 5)])  # the (3, 4, 5) scale cannot cover (3, 6, 5)
    msg = str(err.value)
    assert "layer sc (Scale)" in msg and "(3, 4, 5)" in msg and "(2, 3, 6, 5)" in msg


def test_scalar_param_is_0d_and_survives_a_weights_file(lh, tmp_path):
    """Caffe's num_axes 0 scale is a 0-axis blob: shape (), in memory and on disk."""
    assert fill(FillerSpec(type="constant", value=2.0), (), np.float32, None).shape == ()
    layer, _ = lh.make_layer(Scale, [SHAPE], num_axes=0, filler={"type": "constant",
                                                                 "value": 2.0})
    assert layer.params["weight"].data.shape == () and layer.params["weight"].grad.shape == ()
    path = tmp_path / "w.safetensors"
    save_weights(path, {"sc.weight": layer.params["weight"].data})
    arrays, _ = read_safetensors(path, "weights")
    assert arrays["sc.weight"].shape == () and float(arrays["sc.weight"]) == 2.0


def test_scalar_param_in_a_net_trains_and_reloads():
    import layerflow as lf
    cfg = """
name: s
dtype: float64
layers:
  - {name: data, type: Input, top: x, shape: [[2, 3]]}
  - {name: sc, type: Scale, num_axes: 0, filler: {type: constant, value: 3.0}}
"""
    net = lf.Net.from_string(cfg)
    assert net.params["sc"]["weight"].shape == ()
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(net.forward({"x": x})["sc"], 3.0 * x)
    net.backward({"sc": np.ones((2, 3))})
    assert float(net.params["sc"]["weight"].grad) == x.sum()
    other = lf.Net.from_string(cfg.replace("value: 3.0", "value: 1.0"))
    assert other.copy_from(net.state_dict()) == ["sc.weight"]
    assert float(other.params["sc"]["weight"].data) == 3.0
