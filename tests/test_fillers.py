"""Fillers against Caffe's definitions: fan_in = count / shape[0], fan_out = count / shape[1];
xavier is uniform in +-sqrt(3 / n), msra gaussian with std sqrt(2 / n); bilinear,
positive_unitball and sparse gaussian as filler.hpp defines them."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import FillerSpec, UserError, fill

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


@pytest.mark.parametrize("norm, n", [("FAN_IN", 8 * 3 * 5), ("FAN_OUT", 50 * 3 * 5),
                                     ("AVERAGE", (8 * 3 * 5 + 50 * 3 * 5) / 2)])
def test_fans_of_a_conv_weight(norm, n):
    """Conv weight (O, C/G, kh, kw): fan_in = C/G kh kw, fan_out = O kh kw (Caffe's counts)."""
    out = draw(shape=(50, 8, 3, 5), type="xavier", variance_norm=norm)
    a = np.sqrt(3.0 / n)
    assert out.max() <= a and out.max() > 0.99 * a and out.min() < -0.99 * a


def test_fan_out_of_a_1d_blob_is_its_count():
    out = draw(shape=(3000,), type="xavier", variance_norm="FAN_OUT")  # Caffe: fan_out = count
    a = np.sqrt(3.0 / 3000)
    assert out.max() <= a and out.max() > 0.99 * a


def caffe_bilinear(shape):
    """BilinearFiller's loop, element by element: x = i % K, y = (i / K) % K."""
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    flat = np.empty(int(np.prod(shape)))
    for i in range(flat.size):
        x, y = i % k, (i // k) % k
        flat[i] = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
    return flat.reshape(shape)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_bilinear_matches_caffes_loop(k):
    shape = (3, 2, k, k)
    out = draw(shape=shape, type="bilinear", dtype=np.float32)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_allclose(out, caffe_bilinear(shape), rtol=1e-6)


def test_bilinear_closed_forms():
    # factor 2: kernel 4, f = 2, c = 0.75 -> 1D taps 1/4, 3/4, 3/4, 1/4
    t = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(draw(shape=(1, 1, 4, 4), type="bilinear")[0, 0], np.outer(t, t))
    # factor 3: kernel 5, f = 3, c = 2/3 -> 1/3, 2/3, 1, 2/3, 1/3
    t = np.array([1, 2, 3, 2, 1]) / 3.0
    np.testing.assert_allclose(draw(shape=(2, 1, 5, 5), type="bilinear")[1, 0], np.outer(t, t))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 1, 2, 2, 2)])
def test_bilinear_needs_a_square_4d_kernel(shape):
    with pytest.raises(UserError, match="bilinear.*" + re.escape(str(shape))):
        draw(shape=shape, type="bilinear")


def test_positive_unitball_rows_are_positive_and_sum_to_one():
    out = draw(shape=(20, 3, 4, 5), type="positive_unitball")
    assert out.min() > 0 and out.max() < 1
    np.testing.assert_allclose(out.reshape(20, -1).sum(axis=1), np.ones(20), rtol=1e-12)
    # U(0, 1) draws from the same generator, each row divided by its sum
    u = np.random.default_rng(0).uniform(0.0, 1.0, size=(20, 60))
    np.testing.assert_allclose(out.reshape(20, 60), u / u.sum(axis=1, keepdims=True),
                               rtol=1e-12)


@pytest.mark.parametrize("sparse", [0, 30, 120])
def test_sparse_gaussian_keeps_sparse_over_shape0(sparse):
    out = draw(shape=(400, 250), type="gaussian", std=2.0, sparse=sparse)
    keep = sparse / 400
    kept = out != 0
    assert abs(kept.mean() - keep) < 4 * np.sqrt(keep * (1 - keep) / out.size) + 1e-12
    if sparse:
        assert abs(out[kept].std() - 2.0) < 0.05 * 2.0


def test_sparse_is_for_gaussian_only_and_at_most_shape0():
    with pytest.raises(ValidationError, match="sparse applies to type gaussian only"):
        FillerSpec(type="xavier", sparse=3)
    with pytest.raises(ValidationError):
        FillerSpec(type="gaussian", sparse=-2)
    with pytest.raises(UserError, match=r"sparse 5 is more than the 4 rows"):
        draw(shape=(4, 10), type="gaussian", sparse=5)
