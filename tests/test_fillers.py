"""Fillers against Caffe's definitions: fan_in = count / shape[0], fan_out = count / shape[1];
xavier is uniform in +-sqrt(3 / n), msra gaussian with std sqrt(2 / n)."""
from __future__ import annotations

import numpy as np
import pytest

from layerflow import FillerSpec, fill

SHAPE = (400, 250)  # fan_in 250, fan_out 400: 100k draws, so moments are tight


def draw(shape=SHAPE, dtype=np.float64, seed=0, **spec):
    return fill(FillerSpec(**spec), shape, dtype, np.random.default_rng(seed))


def test_constant_fills_the_value():
    out = draw(type="constant", value=0.25, dtype=np.float32)
    assert out.dtype == np.float32 and out.shape == SHAPE and np.all(out == np.float32(0.25))


def test_default_is_constant_zero():
    assert np.all(fill(FillerSpec(), (3, 4), np.float32, np.random.default_rng(0)) == 0)


def test_uniform_stays_in_its_bounds_with_the_right_moments():
    out = draw(type="uniform", min=-2.0, max=3.0)
    assert out.min() >= -2.0 and out.max() < 3.0
    assert abs(out.mean() - 0.5) < 0.03
    assert abs(out.var() - 25.0 / 12.0) < 0.05


def test_gaussian_mean_and_std():
    out = draw(type="gaussian", mean=1.5, std=0.2)
    assert abs(out.mean() - 1.5) < 0.005 and abs(out.std() - 0.2) < 0.005


@pytest.mark.parametrize("norm, n", [("FAN_IN", 250), ("FAN_OUT", 400), ("AVERAGE", 325)])
def test_xavier_is_uniform_in_sqrt_3_over_n(norm, n):
    out = draw(type="xavier", variance_norm=norm)
    a = np.sqrt(3.0 / n)
    assert out.min() >= -a and out.max() <= a
    assert out.max() > 0.99 * a and out.min() < -0.99 * a  # uniform reaches its bounds
    assert abs(out.var() - 1.0 / n) < 0.03 / n  # var of U(-a, a) = a^2 / 3 = 1 / n


@pytest.mark.parametrize("norm, n", [("FAN_IN", 250), ("FAN_OUT", 400), ("AVERAGE", 325)])
def test_msra_is_gaussian_with_std_sqrt_2_over_n(norm, n):
    out = draw(type="msra", variance_norm=norm)
    assert abs(out.mean()) < 0.02 * np.sqrt(2.0 / n)  # standard error: std / 316
    assert abs(out.std() - np.sqrt(2.0 / n)) < 0.01 * np.sqrt(2.0 / n)


def test_fan_of_a_4d_weight_counts_the_trailing_axes():
    out = draw(shape=(50, 8, 5, 5), type="xavier")  # fan_in = 8 * 5 * 5 = 200
    assert out.max() <= np.sqrt(3.0 / 200) and out.max() > 0.99 * np.sqrt(3.0 / 200)


def test_same_rng_same_values_and_dtype_follows_the_request():
    a = draw(type="gaussian", seed=7, dtype=np.float32)
    b = draw(type="gaussian", seed=7, dtype=np.float32)
    c = draw(type="gaussian", seed=8, dtype=np.float32)
    assert a.dtype == np.float32 and a.flags.c_contiguous
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_unknown_filler_type_is_rejected():
    with pytest.raises(ValueError, match="type"):
        FillerSpec(type="bilinear_typo")


def test_inner_product_weight_uses_its_fan_in():
    import layerflow as lf

    net = lf.Net.from_string("""
layers:
  - {name: in, type: Input, shape: [4, 300]}
  - {name: ip, type: InnerProduct, num_output: 200, bias_filler: {type: constant, value: 0.5}}
""", dtype="float64")
    w = net.params["ip"]["weight"].data
    a = np.sqrt(3.0 / 300)  # xavier by default, fan_in = K = 300
    assert w.shape == (200, 300) and w.max() <= a and w.max() > 0.99 * a
    assert np.all(net.params["ip"]["bias"].data == 0.5)
