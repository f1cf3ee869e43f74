import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import check_layer, gradcheck
from layerflow.layers.batch_norm import BatchNorm
from layerflow.registry import LAYERS
from layerflow.solver import Solver

SHAPES = [(5, 3), (4, 3, 5), (2, 3, 3, 4)]
IDS = ["NC", "NCL", "NCHW"]
STATS = ("mean", "variance", "scale_factor")


def make(shape, phase="train", dtype=np.float64, seed=0, **params):
    """A BatchNorm built for `shape` in `phase` (lh.make_layer builds train-phase layers)."""
    layer = BatchNorm("bn", BatchNorm.Params(**params), phase=phase, dtype=dtype,
                      rng=np.random.default_rng(seed), bottom_names=["x"], top_names=["y"])
    layer.build([shape])
    layer.propagate_down = [True]
    return layer


def batch_stats(x):
    """Per-channel mean and biased variance over every axis but 1 (plain numpy)."""
    axes = (0,) + tuple(range(2, x.ndim))
    mu = x.mean(axis=axes)
    var = ((x - channel(mu, x.ndim)) ** 2).mean(axis=axes)
    return mu, var


def channel(v, ndim):
    """A (C,) vector shaped to broadcast along axis 1 of an ndim array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def normalize(x, mu, var, eps):
    return (x - channel(mu, x.ndim)) / np.sqrt(channel(var, x.ndim) + eps)


def set_stats(layer, rng):
    """Nonzero stored sums, as after some training: scale_factor 2.5."""
    c = layer.params["mean"].shape[0]
    layer.params["mean"].data[...] = rng.normal(size=c)
    layer.params["variance"].data[...] = rng.uniform(0.5, 3.0, size=c)
    layer.params["scale_factor"].data[...] = 2.5


def test_registered():
    assert LAYERS.get("BatchNorm") is BatchNorm


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_params_are_caffe_blobs_never_learned(shape):
    layer = make(shape)
    assert list(layer.params) == list(STATS)
    c = shape[1]
    assert [layer.params[n].shape for n in STATS] == [(c,), (c,), (1,)]
    for p in layer.params.values():
        assert not p.data.any()
        assert p.lr_mult == 0 and p.decay_mult == 0


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_train_forward_normalizes_with_batch_statistics(rng, shape):
    layer = make(shape)
    assert not layer.use_global
    x = 3.0 + 2.0 * rng.standard_normal(shape)
    (y,) = layer.forward([x])
    mu, var = batch_stats(x)
    np.testing.assert_allclose(y, normalize(x, mu, var, 1e-5), rtol=1e-12, atol=1e-13)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-13)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_running_sums_follow_caffe_over_several_batches(rng, shape):
    maf = 0.9
    layer = make(shape, moving_average_fraction=maf)
    m = shape[0] * int(np.prod(shape[2:]))
    c = shape[1]
    sf, mean, variance = 0.0, np.zeros(c), np.zeros(c)
    for it in range(4):
        x = rng.normal(loc=it, scale=1 + it, size=shape)
        layer.forward([x])
        mu, var = batch_stats(x)
        sf = maf * sf + 1
        mean = maf * mean + mu
        variance = maf * variance + m / (m - 1) * var  # stored unbiased
        np.testing.assert_allclose(layer.params["scale_factor"].data, [sf], rtol=1e-15)
        np.testing.assert_allclose(layer.params["mean"].data, mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.params["variance"].data, variance, rtol=1e-12)


def test_one_value_per_channel_uses_correction_1(rng):
    layer = make((1, 4))  # m = 1: variance 0, Caffe's factor m/(m-1) becomes 1
    x = rng.normal(size=(1, 4))
    (y,) = layer.forward([x])
    np.testing.assert_array_equal(y, np.zeros((1, 4)))
    np.testing.assert_array_equal(layer.params["mean"].data, x[0])
    np.testing.assert_array_equal(layer.params["variance"].data, np.zeros(4))


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_train_then_test_uses_the_stored_statistics(rng, shape):
    train = make(shape, moving_average_fraction=0.8)
    for it in range(3):
        train.forward([rng.normal(loc=1.0, scale=2.0, size=shape)])
    test = make(shape, phase="test")
    assert test.use_global
    for name in STATS:
        test.params[name].data[...] = train.params[name].data
    x = rng.normal(size=shape)
    (y,) = test.forward([x])
    sf = train.params["scale_factor"].data[0]
    mean = train.params["mean"].data / sf
    var = train.params["variance"].data / sf
    np.testing.assert_allclose(y, normalize(x, mean, var, 1e-5), rtol=1e-12, atol=1e-13)
    # the test phase reads the statistics and never changes them
    before = {n: test.params[n].data.copy() for n in STATS}
    test.forward([rng.normal(size=shape)])
    for n in STATS:
        np.testing.assert_array_equal(test.params[n].data, before[n])


def test_global_stats_with_scale_factor_zero_use_mean_and_variance_zero(rng):
    layer = make((3, 2, 4), phase="test", eps=1e-3)
    layer.params["mean"].data[...] = [5.0, -5.0]  # ignored: scale_factor is 0
    layer.params["variance"].data[...] = [9.0, 9.0]
    x = rng.normal(size=(3, 2, 4))
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, x / np.sqrt(1e-3), rtol=1e-14)


@pytest.mark.parametrize("phase,flag,glob", [("train", None, False), ("test", None, True),
                                             ("train", True, True), ("test", False, False)])
def test_use_global_stats_default_follows_the_phase(rng, phase, flag, glob):
    params = {} if flag is None else {"use_global_stats": flag}
    layer = make((4, 3, 2), phase=phase, **params)
    set_stats(layer, rng)
    assert layer.use_global is glob
    before = layer.params["mean"].data.copy()
    x = rng.normal(size=(4, 3, 2))
    (y,) = layer.forward([x])
    if glob:
        want = normalize(x, before / 2.5, layer.params["variance"].data / 2.5, 1e-5)
        np.testing.assert_array_equal(layer.params["mean"].data, before)
    else:  # batch statistics, and the sums are updated whatever the phase (Caffe)
        want = normalize(x, *batch_stats(x), 1e-5)
        assert not np.array_equal(layer.params["mean"].data, before)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_train_backward_matches_closed_form(rng, shape):
    layer = make(shape)
    x = rng.normal(size=shape)
    (y,) = layer.forward([x])
    dout = rng.normal(size=shape)
    (dx,) = layer.backward([dout])
    axes = (0,) + tuple(range(2, x.ndim))
    _, var = batch_stats(x)
    mean_dout = dout.mean(axis=axes, keepdims=True)
    mean_douty = (dout * y).mean(axis=axes, keepdims=True)
    want = (dout - mean_dout - mean_douty * y) / np.sqrt(channel(var, x.ndim) + 1e-5)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gradients_train_mode(rng, shape):
    res = gradcheck(BatchNorm, [rng.normal(size=shape)], {"eps": 1e-3}, step=1e-4)
    # the statistics are set by the layer, not learned: listed, not checked
    assert [e.name for e in res.entries] == ["bottom[0]"]
    assert res.no_gradient == [f"{name} (set by the layer, not learned)" for name in STATS]


@pytest.mark.parametrize("phase,params", [("test", {}), ("train", {"use_global_stats": True})],
                         ids=["test-phase", "train-global"])
def test_gradients_global_mode(rng, phase, params):
    layer = make((3, 2, 2, 3), phase=phase, **params)
    set_stats(layer, rng)
    x = rng.normal(size=(3, 2, 2, 3))
    res = check_layer(layer, [x], step=1e-4)
    assert res.ok and res.problems == []
    assert res["bottom[0]"].checked == 36 and res["bottom[0]"].error <= 1e-6, res
    # backward treats the stored statistics as constants (Caffe gives them no gradient),
    # although the output depends on them: gradcheck skips them as not learnable
    assert [e.name for e in res.entries] == ["bottom[0]"]
    layer.forward([x])
    layer.backward([np.ones_like(x)])
    for name in STATS:
        assert not layer.params[name].learnable and not layer.params[name].grad.any()


def test_global_backward_is_a_scale(rng):
    layer = make((2, 3, 4), phase="test")
    set_stats(layer, rng)
    layer.forward([rng.normal(size=(2, 3, 4))])
    dout = rng.normal(size=(2, 3, 4))
    (dx,) = layer.backward([dout])
    var = layer.params["variance"].data / 2.5
    np.testing.assert_allclose(dx, dout / np.sqrt(channel(var, 3) + 1e-5), rtol=1e-14)


def test_propagate_down_false(rng):
    layer = make((2, 3))
    layer.propagate_down = [False]
    layer.forward([rng.normal(size=(2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]


@pytest.mark.parametrize("phase", ["train", "test"])
def test_reshape_to_another_batch_and_size_matches_a_fresh_layer(rng, phase):
    layer = make((2, 3, 4, 5), phase=phase)
    set_stats(layer, rng)
    layer.forward([rng.normal(size=(2, 3, 4, 5))])
    new = (5, 3, 2, 3)
    assert layer.reshape([new]) == [new]
    fresh = make(new, phase=phase)
    for n in STATS:
        fresh.params[n].data[...] = layer.params[n].data
    x, dout = rng.normal(size=new), rng.normal(size=new)
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])
    np.testing.assert_array_equal(layer.backward([dout])[0], fresh.backward([dout])[0])
    for n in STATS:
        np.testing.assert_array_equal(layer.params[n].data, fresh.params[n].data)


@pytest.mark.parametrize("phase", ["train", "test"])
def test_float32_matches_float64(rng, phase):
    shape = (4, 3, 2, 3)
    l64, l32 = make(shape, phase, np.float64), make(shape, phase, np.float32)
    set_stats(l64, rng)
    for n in STATS:
        l32.params[n].data[...] = l64.params[n].data
    for _ in range(2):
        x, dout = rng.normal(size=shape), rng.normal(size=shape)
        y32, y64 = l32.forward([x.astype(np.float32)])[0], l64.forward([x])[0]
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
        dx32 = l32.backward([dout.astype(np.float32)])[0]
        np.testing.assert_allclose(dx32, l64.backward([dout])[0], rtol=1e-4, atol=1e-5)
        for n in STATS:
            np.testing.assert_allclose(l32.params[n].data, l64.params[n].data, rtol=1e-5)


@pytest.mark.parametrize("p", [{}, {"use_global_stats": True}, {"use_global_stats": False},
                               {"moving_average_fraction": 0.9, "eps": 1e-3}])
def test_config_roundtrip(lh, p):
    lh.assert_roundtrip(BatchNorm.Params(**p))


@pytest.mark.parametrize("p", [{"eps": 0.0}, {"eps": -1e-5}, {"use_globalstats": True}])
def test_bad_params_rejected(p):
    with pytest.raises(ValidationError):
        BatchNorm.Params(**p)


def test_bottom_without_channels_is_rejected():
    with pytest.raises(UserError, match=r"layer bn \(BatchNorm\): bottom shape \(6,\) has no "
                                        r"channel axis"):
        make((6,))


def test_channel_change_names_layer_and_shapes(rng):
    layer = make((2, 3, 4))
    with pytest.raises(UserError) as err:
        layer.reshape([(2, 5, 4)])
    msg = str(err.value)
    assert "layer bn (BatchNorm)" in msg and "(2, 5, 4)" in msg and "3 channels" in msg


NET = """
name: bn
dtype: float64
layers:
  - {name: data, type: Input, top: [x, label], shape: [[6, 3, 2], [6]]}
  - {name: bn, type: BatchNorm, bottom: x, top: xn, moving_average_fraction: 0.5,
     param: [{lr_mult: 1, decay_mult: 1}, {lr_mult: 1}, {lr_mult: 2}]}
  - {name: ip, type: InnerProduct, bottom: xn, num_output: 2,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, label], include: {phase: train}}
"""


def test_solver_never_updates_the_statistics_and_the_test_net_reads_them(tmp_path, rng):
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(
        "net: net.yaml\nbase_lr: 0.5\nmomentum: 0.9\nweight_decay: 0.1\nmax_iter: 3\n"
        "random_seed: 1\n")
    solver = Solver.from_yaml(tmp_path / "solver.yaml")
    stats = solver.net.params["bn"]
    # lr_mult / decay_mult from the YAML are overridden: Caffe's rule for these blobs
    assert all(stats[n].lr_mult == 0 and stats[n].decay_mult == 0 for n in STATS)
    xs = [rng.normal(size=(6, 3, 2)) for _ in range(3)]
    label = rng.integers(0, 2, size=6).astype(float)
    sf, mean, variance = 0.0, np.zeros(3), np.zeros(3)
    for x in xs:
        solver.net.feed({"x": x, "label": label})
        solver.iteration()
        mu, var = batch_stats(x)
        sf, mean, variance = 0.5 * sf + 1, 0.5 * mean + mu, 0.5 * variance + 12 / 11 * var
    np.testing.assert_allclose(stats["scale_factor"].data, [sf], rtol=1e-15)
    np.testing.assert_allclose(stats["mean"].data, mean, rtol=1e-12)
    np.testing.assert_allclose(stats["variance"].data, variance, rtol=1e-12)

    from layerflow.net import Net
    test_net = Net(solver.net.config, "test", share_params_with=solver.net)
    assert test_net.params["bn"]["mean"] is stats["mean"]
    x = rng.normal(size=(6, 3, 2))
    test_net.forward({"x": x, "label": label})
    np.testing.assert_allclose(test_net.blobs["xn"].data,
                               normalize(x, mean / sf, variance / sf, 1e-5), rtol=1e-12)
