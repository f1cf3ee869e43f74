"""Tests of the Swish plugin, as a plugin author writes them: forward against numpy, gradients
with layerflow's checker, shapes, config round-trip, and the entry point. Run them after
installing the package: `pip install -e models/plugin_example && pytest models/plugin_example`.
"""
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import layerflow as lf
from layerflow.gradcheck import check_layer, gradcheck
from layerflow_swish import Swish, SwishParams, swish_forward

HERE = Path(__file__).resolve().parent.parent


def reference(x, beta):
    return x * expit(beta * x)


def make(shape, beta=1.0, dtype=np.float64):
    layer = Swish("swish", SwishParams(beta_filler={"type": "constant", "value": beta}),
                  dtype=dtype)
    tops = layer.build([shape])
    layer.propagate_down = [True]
    return layer, tops


@pytest.mark.parametrize("beta", [1.0, 0.3, -2.0])
def test_forward_matches_numpy(beta):
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    layer, _ = make(x.shape, beta)
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, reference(x, beta), rtol=1e-13, atol=1e-15)


def test_forward_float32_large_inputs_do_not_overflow():
    x = np.array([-1e4, -80.0, -1.0, 0.0, 1.0, 80.0, 1e4], np.float32)
    layer, _ = make(x.shape, 1.0, np.float32)
    (y,) = layer.forward([x])
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, reference(x.astype(np.float64), 1.0), rtol=1e-6, atol=1e-30)


def test_kernel_alone():
    x = np.linspace(-3, 3, 7)
    s, out = np.empty_like(x), np.empty_like(x)
    swish_forward(x, 2.0, s, out)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-2 * x)))
    np.testing.assert_allclose(out, x * s)


@pytest.mark.parametrize("beta", [1.0, 0.5, -1.5])
def test_gradients_of_bottom_and_beta(beta):
    x = np.random.default_rng(1).standard_normal((3, 4, 2)) * 2
    result = gradcheck(Swish, [x], {"beta_filler": {"type": "constant", "value": beta}})
    assert {e.name for e in result.entries} == {"bottom[0]", "beta"}
    assert all(e.checked == e_size for e, e_size in zip(result.entries, (24, 1)))


def test_gradient_of_beta_alone():
    """propagate_down False: only beta's gradient (its own kernel)."""
    x = np.random.default_rng(2).standard_normal((5, 3))
    result = check_layer(Swish, [x], {"beta_filler": {"type": "constant", "value": 0.8}},
                         check_bottoms=[])
    result.assert_ok()
    assert [e.name for e in result.entries] == ["beta"]


def test_float32_gradients_with_caffe_settings():
    layer, _ = make((6, 4), 1.0, np.float32)
    x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    check_layer(layer, [x], step=1e-2, threshold=1e-2).assert_ok()


def test_shapes_and_param():
    layer, tops = make((2, 3, 4, 5))
    assert tops == [(2, 3, 4, 5)]
    assert layer.params["beta"].shape == (1,)
    assert layer.params["beta"].data[0] == 1.0
    assert layer.flops([(2, 3, 4, 5)]) == 5 * 120


def test_config_round_trip():
    p = SwishParams(beta_filler={"type": "gaussian", "mean": 1.0, "std": 0.1})
    assert SwishParams.model_validate(p.model_dump()) == p
    assert SwishParams().beta_filler.value == 1.0
    with pytest.raises(Exception, match="bta"):
        SwishParams(bta=1.0)


def test_found_through_the_entry_point():
    from layerflow.registry import LAYERS

    assert LAYERS.get("Swish") is Swish
    assert "layerflow-swish" in LAYERS.origin_of("Swish")


def test_example_net_trains():
    net = lf.Net.from_yaml(HERE / "net.yaml", "train", seed=1)
    first = net.forward_backward()
    assert net.params["swish1"]["beta"].grad[0] != 0
    solver = lf.Solver.from_yaml(HERE / "solver.yaml")
    losses = [solver.iteration() for _ in range(150)]
    assert losses[-1] < 0.4 * first
