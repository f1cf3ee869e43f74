"""Transform: y = (x - mean) * scale, the Data layer's transform as a layer (deploy nets)."""
import numpy as np
import pytest

from layerflow import UserError
from layerflow.gradcheck import gradcheck
from layerflow.layers.transform import Transform
from layerflow.registry import LAYERS


def reference(x, mean, scale):
    """Loops over samples: every sample minus the mean, times scale."""
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        out[n] = (x[n] - mean) * scale
    return out


def test_registered():
    assert LAYERS.get("Transform") is Transform


def test_scale_only(lh, rng):
    layer, tops = lh.make_layer(Transform, [(3, 1, 2, 2)], scale=1 / 255)
    x = rng.integers(0, 256, (3, 1, 2, 2)).astype(np.float64)
    (y,) = layer.forward([x])
    assert tops == [(3, 1, 2, 2)]
    np.testing.assert_allclose(y, reference(x, 0.0, 1 / 255), rtol=1e-15)


def test_one_mean_value_per_channel(lh, rng):
    layer, _ = lh.make_layer(Transform, [(2, 3, 2, 2)], scale=0.5, mean_value=[10, 20, 30])
    x = rng.uniform(0, 255, (2, 3, 2, 2))
    (y,) = layer.forward([x])
    mean = np.array([10.0, 20.0, 30.0]).reshape(3, 1, 1) * np.ones((3, 2, 2))
    np.testing.assert_allclose(y, reference(x, mean, 0.5), rtol=1e-15)


def test_mean_file_with_caffe_leading_one(lh, rng, tmp_path):
    mean = rng.uniform(0, 100, (1, 2, 3))
    np.save(tmp_path / "mean.npy", mean)
    layer = Transform("t", Transform.Params(mean_file="mean.npy", scale=2.0),
                      dtype=np.float64, base_dir=tmp_path, bottom_names=["data"],
                      top_names=["data"])
    layer.build([(4, 2, 3)])
    x = rng.uniform(0, 255, (4, 2, 3))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, mean[0], 2.0), rtol=1e-15)


def test_reshape_to_another_batch_and_size_matches_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Transform, [(2, 3, 4)], scale=3.0, mean_value=[1, 2, 3])
    assert layer.reshape([(5, 3, 6)]) == [(5, 3, 6)]
    fresh, _ = lh.make_layer(Transform, [(5, 3, 6)], scale=3.0, mean_value=[1, 2, 3])
    x = rng.standard_normal((5, 3, 6))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])


def test_gradients(rng):
    gradcheck(Transform, [rng.standard_normal((3, 2, 2))], {"scale": 0.7, "mean_value": [1, -1]})


def test_backward_is_scale_times_dout(lh, rng):
    layer, _ = lh.make_layer(Transform, [(2, 3)], scale=0.25, mean_value=5)
    layer.forward([rng.standard_normal((2, 3))])
    dout = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(layer.backward([dout])[0], dout * 0.25)


def test_propagate_down_false(lh, rng):
    layer, _ = lh.make_layer(Transform, [(2, 3)], propagate_down=[False], scale=2.0)
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


def test_float32_matches_float64(lh, rng):
    lh.assert_float32_matches(Transform, [rng.uniform(0, 255, (4, 3, 2))], scale=1 / 255,
                              mean_value=[100.0, 120.0, 90.0])


@pytest.mark.parametrize("params", [{}, {"scale": 0.1, "mean_value": 3.0},
                                    {"mean_value": [1.0, 2.0]}, {"mean_file": "m.npy"},
                                    {"crop_size": 3, "mean_file": "m.binaryproto"}])
def test_config_roundtrip(lh, params):
    lh.assert_roundtrip(Transform.Params(**params))


def test_mean_value_count_must_match_channels(lh):
    with pytest.raises(UserError, match=r"layer layer \(Transform\): mean_value has 2 values, "
                                        r"but a sample of bottom b0 has shape \(3, 4\)"):
        lh.make_layer(Transform, [(2, 3, 4)], mean_value=[1, 2])


def test_mean_file_of_another_shape(tmp_path):
    np.save(tmp_path / "mean.npy", np.zeros((2, 2)))
    layer = Transform("t", Transform.Params(mean_file="mean.npy"), base_dir=tmp_path,
                      bottom_names=["data"], top_names=["data"])
    with pytest.raises(UserError, match=r"layer t \(Transform\): mean_file .*mean.npy has "
                                        r"shape \(2, 2\), but a sample of bottom data has "
                                        r"shape \(3,\)"):
        layer.build([(4, 3)])


def test_missing_mean_file_names_it(tmp_path):
    layer = Transform("t", Transform.Params(mean_file="nope.npy"), base_dir=tmp_path,
                      bottom_names=["data"], top_names=["data"])
    with pytest.raises(UserError, match=r"layer t \(Transform\): mean_file .*nope.npy"):
        layer.build([(4, 3)])


def test_mean_value_and_mean_file_exclusive():
    with pytest.raises(ValueError, match="mean_value or mean_file, not both"):
        Transform.Params(mean_value=1.0, mean_file="m.npy")


# ---- the centre crop (a Data layer's test-phase crop_size) --------------------------------------

def test_centre_crop_with_a_full_size_mean_file(rng, tmp_path):
    """Crop 3 of 5 x 6: window ((5-3)//2, (6-3)//2) = (1, 1); the mean file is full-size and
    read at the uncropped position, then the scale: Caffe's test-phase DataTransformer."""
    mean = rng.uniform(0, 100, (2, 5, 6))
    np.save(tmp_path / "mean.npy", mean)
    layer = Transform("t", Transform.Params(mean_file="mean.npy", scale=0.5, crop_size=3),
                      dtype=np.float64, base_dir=tmp_path, bottom_names=["data"],
                      top_names=["data"])
    assert layer.build([(4, 2, 5, 6)]) == [(4, 2, 3, 3)]
    x = rng.uniform(0, 255, (4, 2, 5, 6))
    (y,) = layer.forward([x])
    want = np.empty((4, 2, 3, 3))
    for n in range(4):
        for c in range(2):
            for i in range(3):
                for j in range(3):
                    want[n, c, i, j] = (x[n, c, i + 1, j + 1] - mean[c, i + 1, j + 1]) * 0.5
    np.testing.assert_allclose(y, want, rtol=1e-15)


def test_crop_gradients_and_backward_outside_the_window(lh, rng):
    gradcheck(Transform, [rng.standard_normal((2, 2, 4, 5))],
              {"scale": 0.7, "mean_value": [1, -1], "crop_size": 3})
    layer, tops = lh.make_layer(Transform, [(2, 1, 4, 5)], crop_size=2, scale=3.0)
    assert tops == [(2, 1, 2, 2)]
    layer.forward([rng.standard_normal((2, 1, 4, 5))])
    dx = layer.backward([np.ones((2, 1, 2, 2))])[0]
    want = np.zeros((2, 1, 4, 5))
    want[:, :, 1:3, 1:3] = 3.0  # window ((4-2)//2, (5-2)//2) = (1, 1)
    np.testing.assert_array_equal(dx, want)


def test_crop_follows_a_new_image_size(lh, rng):
    layer, _ = lh.make_layer(Transform, [(2, 3, 6, 6)], crop_size=4, mean_value=[1, 2, 3])
    assert layer.reshape([(1, 3, 9, 7)]) == [(1, 3, 4, 4)]
    fresh, _ = lh.make_layer(Transform, [(1, 3, 9, 7)], crop_size=4, mean_value=[1, 2, 3])
    x = rng.standard_normal((1, 3, 9, 7))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])


def test_crop_errors_name_the_layer(lh):
    with pytest.raises(UserError, match=r"layer layer \(Transform\): crop_size 5 is larger "
                                        r"than a sample of bottom b0 \(3 x 4 x 6\)"):
        lh.make_layer(Transform, [(2, 3, 4, 6)], crop_size=5)
    with pytest.raises(UserError, match=r"crop_size needs samples of shape \(C, H, W\), but "
                                        r"a sample of bottom b0 has shape \(6,\)"):
        lh.make_layer(Transform, [(2, 6)], crop_size=2)
    with pytest.raises(ValueError, match="mirror"):  # a deploy Transform never mirrors
        Transform.Params(mirror=True)
