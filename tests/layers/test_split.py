import numpy as np
import pytest

import layerflow as lf
from layerflow import NoParams, UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.split import Split
from layerflow.registry import LAYERS


def tops(n):
    return [f"t{i}" for i in range(n)]


def test_registered():
    assert LAYERS.get("Split") is Split


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_top_is_the_bottom_and_backward_sums(lh, rng, n):
    layer, top_shapes = lh.make_layer(Split, [(2, 3, 4)], top_names=tops(n))
    assert top_shapes == [(2, 3, 4)] * n
    x = rng.standard_normal((2, 3, 4))
    ys = layer.forward([x])
    assert len(ys) == n and all(y is x for y in ys)  # shared, nothing copied
    douts = [rng.standard_normal((2, 3, 4)) for _ in range(n)]
    (dx,) = layer.backward(douts)
    np.testing.assert_allclose(dx, np.sum(douts, axis=0), rtol=1e-15)
    if n == 1:
        assert dx is douts[0]


@pytest.mark.parametrize("n", [1, 3])
def test_gradients(rng, n):
    res = gradcheck(Split, [rng.standard_normal((2, 3))], top_names=tops(n))
    assert res["bottom[0]"].checked == 6


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Split, [(2, 3)], top_names=tops(2), propagate_down=[False])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))] * 2) == [None]


def test_reshape_to_another_batch_matches_a_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Split, [(2, 3)], top_names=tops(2))
    assert layer.reshape([(5, 4)]) == [(5, 4)] * 2
    fresh, _ = lh.make_layer(Split, [(5, 4)], top_names=tops(2))
    x = rng.standard_normal((5, 4))
    douts = [rng.standard_normal((5, 4)) for _ in range(2)]
    for a, b in zip(layer.forward([x]), fresh.forward([x])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(layer.backward(douts)[0], fresh.backward(douts)[0])


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Split, [rng.standard_normal((2, 3))], top_names=tops(2))


def test_config_roundtrip(lh):
    assert Split.Params is NoParams
    lh.assert_roundtrip(Split.Params())


def test_in_place_is_rejected_as_in_caffe(lh):
    with pytest.raises(UserError, match=r"layer sp \(Split\): top 'x' is also its bottom"):
        lh.make_layer(Split, [(2, 3)], name="sp", bottom_names=["x"], top_names=["x", "y"])


VIEWS = """
name: views
dtype: float64
force_backward: true
layers:
  - {name: data, type: Input, top: [x, label], shape: [[3, 2, 2, 3], [3]]}
  - {name: split, type: Split, bottom: x, top: [x1, x2]}
  - {name: flat, type: Flatten, bottom: x1, top: xf}
  - {name: resh, type: Reshape, bottom: x2, top: xr, shape: [0, -1, 3]}
  - {name: ipa, type: InnerProduct, bottom: xf, num_output: 4,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: ipb, type: InnerProduct, bottom: xr, num_output: 4,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: ipc, type: InnerProduct, bottom: x, num_output: 4,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: sum, type: Eltwise, bottom: [ipa, ipb, ipc]}
  - {name: loss, type: SoftmaxLoss, bottom: [sum, label]}
"""


def test_view_tops_in_a_net_give_the_right_input_gradient(rng):
    """Split, Flatten and Reshape tops share the input's memory, and x also feeds a layer
    directly: the diff the net sums for x must still be d loss / d x."""
    net = lf.Net.from_string(VIEWS)
    label = np.array([0.0, 3.0, 1.0])
    for _ in range(2):  # a second batch through the same buffers
        x = rng.standard_normal((3, 2, 2, 3))
        net.forward({"x": x, "label": label})
        for blob in ("x1", "x2", "xf", "xr"):
            assert np.shares_memory(net.blobs[blob].data, net.blobs["x"].data)
        assert net.blobs["xr"].shape == (3, 4, 3)
        net.backward()
        dx = net.blobs["x"].diff.copy()
        numeric = np.zeros_like(x)
        step = 1e-5
        for idx in np.ndindex(x.shape):
            hi, lo = x.copy(), x.copy()
            hi[idx] += step
            lo[idx] -= step
            f_hi = net.forward({"x": hi, "label": label})["loss"]
            f_lo = net.forward({"x": lo, "label": label})["loss"]
            numeric[idx] = (f_hi - f_lo) / (2 * step)
        np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-9)
