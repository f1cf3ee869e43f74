import numpy as np
import pytest
from pydantic import ValidationError

import layerflow as lf
from layerflow import UserError
from layerflow.gradcheck import check_layer
from layerflow.layers.threshold import Threshold
from layerflow.registry import LAYERS


def test_registered():
    assert LAYERS.get("Threshold") is Threshold and not Threshold.has_backward


@pytest.mark.parametrize("t", [0.0, 0.5, -1.0])
def test_forward_is_strictly_greater(lh, rng, t):
    layer, tops = lh.make_layer(Threshold, [(3, 5)], threshold=t)
    x = rng.standard_normal((3, 5))
    x[0, :3] = t  # exactly at the threshold: 0 (strict >)
    (y,) = layer.forward([x])
    assert tops == [(3, 5)]
    np.testing.assert_array_equal(y, [[1.0 if v > t else 0.0 for v in row] for row in x])
    assert (y[0, :3] == 0).all()


def test_no_gradient(lh, rng):
    layer, _ = lh.make_layer(Threshold, [(2, 3)])
    layer.forward([rng.standard_normal((2, 3))])
    assert layer.backward([np.ones((2, 3))]) == [None]
    res = check_layer(Threshold, [rng.standard_normal((2, 3))])
    assert res.ok and res.entries == [] and res.no_gradient == ["bottom[0]"]


NET = """
name: t
force_backward: true
layers:
  - {name: data, type: Input, shape: [[2, 3]], top: x}
  - {name: ip, type: InnerProduct, num_output: 2, bottom: x}
  - {name: step, type: Threshold, bottom: ip}
  - {name: ip2, type: InnerProduct, num_output: 2, bottom: ip}
"""


def test_a_net_never_runs_its_backward():
    """Gradients reach `ip` from ip2 only: nothing flows back through the step function."""
    net = lf.Net.from_string(NET)
    net.forward({"x": np.ones((2, 3), np.float32)})
    net.backward({"step": np.ones((2, 2)), "ip2": np.zeros((2, 2))})
    assert not net.params["ip"]["weight"].grad.any()  # the step's diff was not used
    net.backward({"ip2": np.ones((2, 2))})
    assert net.params["ip"]["weight"].grad.any()


def test_loss_weight_on_it_is_an_error():
    with pytest.raises(UserError, match=r"\(step\): loss_weight on a Threshold layer, which has "
                                        r"no gradient"):
        lf.Net.from_string(NET.replace("bottom: ip}", "bottom: ip, loss_weight: 1}", 1))


def test_reshape_equals_fresh_layer(lh, rng):
    layer, _ = lh.make_layer(Threshold, [(2, 3)], threshold=0.2)
    fresh, _ = lh.make_layer(Threshold, [(4, 1, 2)], threshold=0.2)
    assert layer.reshape([(4, 1, 2)]) == [(4, 1, 2)]
    x = rng.standard_normal((4, 1, 2))
    np.testing.assert_array_equal(layer.forward([x])[0], fresh.forward([x])[0])


def test_float32_matches_float64(lh, rng):
    x = rng.standard_normal((4, 6))
    x[np.abs(x - 0.3) < 1e-6] = 1.0  # no input within float32 rounding of the threshold
    lh.assert_float32_matches(Threshold, [x], rel=0, threshold=0.3)


@pytest.mark.parametrize("t", [0.0, -2.5])
def test_config_roundtrip(lh, t):
    lh.assert_roundtrip(Threshold.Params(threshold=t))
    with pytest.raises(ValidationError):
        Threshold.Params(thresh=t)
