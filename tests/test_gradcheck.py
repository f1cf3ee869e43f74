"""The gradient checker catches wrong backwards and passes right ones.

The layers here are defined for the test only and never registered.
"""
import subprocess
import sys

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from layerflow import Layer
from layerflow.gradcheck import GradcheckResult, check_layer, gradcheck
from layerflow.layers.inner_product import InnerProduct
from layerflow.layers.relu import ReLU
from layerflow.layers.softmax_loss import SoftmaxLoss


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bug: str = Field("", description="which mistake to make in backward (tests only)")


class ScaledSquare(Layer):
    """y = w * x^2 + b: one bottom, params w (D,) and b (D,) over x (N, D). With `bug`:
    dx: dx = w * x (forgot the 2); one: dx off by 1e-4 at a single element;
    dw: dw wrong by 1%; overwrite: dw = instead of +=; loss_weight: ignores dout (0-d top)."""

    Params = ScaleParams

    def setup(self, bottom_shapes):
        n, d = bottom_shapes[0]
        self.add_param("w", (d,), None)
        self.params["w"].data[...] = np.linspace(0.5, 1.5, d)
        self.add_param("b", (d,), None)

    def reshape(self, bottom_shapes):
        n, d = bottom_shapes[0]
        self.dx = np.zeros((n, d))
        return [(n, d)]

    def forward(self, bottoms):
        self.x = bottoms[0]
        return [self.params["w"].data * self.x ** 2 + self.params["b"].data]

    def backward(self, top_diffs):
        dout, w, x, bug = top_diffs[0], self.params["w"], self.x, self.p.bug
        dw = (dout * x ** 2).sum(0) * (1.01 if bug == "dw" else 1.0)
        if bug == "overwrite":
            w.grad[...] = dw
        else:
            w.grad += dw
        self.params["b"].grad += dout.sum(0)
        self.dx[...] = dout * w.data * x * (1 if bug == "dx" else 2)
        if bug == "one":
            self.dx[1, 2] += 1e-4
        return [self.dx if self.propagate_down[0] else None]


class SumLoss(Layer):
    """loss = sum(x^2) / 2; with bug, backward ignores the loss weight (the top diff)."""

    Params = ScaleParams
    is_loss = True

    def reshape(self, bottom_shapes):
        return [()]

    def forward(self, bottoms):
        self.x = bottoms[0]
        return [np.array(0.5 * np.sum(self.x ** 2))]

    def backward(self, top_diffs):
        scale = 1.0 if self.p.bug else float(top_diffs[0])
        return [scale * self.x]


class Dropoutish(Layer):
    """y = x * mask * 2 with a fresh mask from self.rng on every forward."""

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.mask = self.rng.random(bottoms[0].shape) < 0.5
        return [bottoms[0] * self.mask * 2.0]

    def backward(self, top_diffs):
        return [top_diffs[0] * self.mask * 2.0]


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((3, 4))


def test_correct_layer_passes(x):
    res = gradcheck(ScaledSquare, [x])
    assert isinstance(res, GradcheckResult) and res.ok
    assert [e.name for e in res.entries] == ["bottom[0]", "w", "b"]
    assert [e.checked for e in res.entries] == [12, 4, 4]
    assert all(e.error <= 1e-8 for e in res.entries)
    worst = res["bottom[0]"]
    i, j = worst.index
    w = np.linspace(0.5, 1.5, 4)
    # the numeric derivative is the true one: d/dx sum(u * w x^2) = 2 u w x
    u = np.random.default_rng(1701).standard_normal((3, 4))
    assert worst.numeric == pytest.approx(2 * u[i, j] * w[j] * x[i, j], rel=1e-8)


@pytest.mark.parametrize("bug,name", [("dx", "bottom[0]"), ("one", "bottom[0]"), ("dw", "w")])
def test_wrong_backward_is_caught(x, bug, name):
    res = check_layer(ScaledSquare, [x], {"bug": bug})
    assert not res.ok
    failing = [e.name for e in res.entries if e.error > res.threshold]
    assert failing == [name]
    if bug == "one":
        e = res[name]
        assert e.index == (1, 2) and e.analytic - e.numeric == pytest.approx(1e-4, rel=1e-3)
        assert e.error == pytest.approx(1e-4 / max(abs(e.analytic), abs(e.numeric), 1))
    with pytest.raises(AssertionError) as err:
        res.assert_ok()
    assert name in str(err.value) and "FAIL" in str(err.value)
    with pytest.raises(AssertionError):
        gradcheck(ScaledSquare, [x], {"bug": bug})


def test_overwriting_param_grads_is_caught(x):
    res = check_layer(ScaledSquare, [x], {"bug": "overwrite"})
    assert not res.ok
    assert any("overwrites w.grad" in p for p in res.problems)
    assert "overwrites w.grad" in str(res)


def test_ignoring_the_loss_weight_is_caught(x):
    assert check_layer(SumLoss, [x]).ok
    res = check_layer(SumLoss, [x], {"bug": "x"})
    assert not res.ok and res["bottom[0]"].error > 1e-3


def test_kinks_are_skipped(x):
    x = x.copy()
    x[0, :2] = 0.0  # at ReLU's kink: analytic 0, numeric 0.5
    assert not check_layer(ReLU, [x]).ok
    res = gradcheck(ReLU, [x], kink=0.0, kink_range=0.01)
    assert res["bottom[0]"].skipped == 2 and res["bottom[0]"].checked == 10


def test_a_kink_declared_by_the_layer_class_is_honoured(x):
    class KinkedReLU(ReLU):
        kink = 0.0

    x = x.copy()
    x[1, 1] = 0.0
    assert gradcheck(KinkedReLU, [x])["bottom[0]"].skipped == 1


def test_random_layers_see_the_same_draws_every_pass(x):
    layer = Dropoutish("drop", rng=np.random.default_rng(5), dtype=np.float64)
    layer.build([x.shape])
    state = layer.rng.bit_generator.state
    res = gradcheck(layer, [x])
    assert res["bottom[0]"].checked == x.size
    assert layer.rng.bit_generator.state == state


def test_a_built_layer_is_left_as_found(x):
    layer = InnerProduct("fc", InnerProduct.Params(num_output=2), dtype=np.float64,
                         rng=np.random.default_rng(3))
    layer.bottom_names, layer.top_names = ["data"], ["fc"]
    layer.build([x.shape])
    layer.propagate_down = [False]
    (top,) = layer.forward([x])
    top_before = top.copy()
    weight = layer.params["weight"]
    weight.grad[...] = 7.0
    data_before = weight.data.copy()
    res = gradcheck(layer, [x])
    assert res.layer == "fc" and [e.name for e in res.entries] == ["bottom[0]", "weight", "bias"]
    np.testing.assert_array_equal(weight.data, data_before)
    np.testing.assert_array_equal(weight.grad, 7.0)
    np.testing.assert_array_equal(layer.top_view, top_before)
    assert layer.propagate_down == [False]


def test_float32_layer_with_float32_tolerances(x):
    layer = InnerProduct("fc", InnerProduct.Params(num_output=2), dtype=np.float32)
    layer.bottom_names, layer.top_names = ["data"], ["fc"]
    layer.build([x.shape])
    res = gradcheck(layer, [x], step=1e-2, threshold=1e-2)
    assert res.dtype == "float32"


def test_labels_have_no_gradient(x):
    label = np.array([0.0, 3.0, 1.0])
    res = gradcheck(SoftmaxLoss, [x, label])
    assert [e.name for e in res.entries] == ["bottom[0]"] and res.no_gradient == ["bottom[1]"]
    res = gradcheck(SoftmaxLoss, [x, label.astype(int)])  # integer labels are never perturbed
    assert res.no_gradient == []
    # asking explicitly for a bottom that has no gradient is a failure
    res = check_layer(SoftmaxLoss, [x, label], check_bottoms=[1])
    assert not res.ok and "backward returned None" in str(res)


def test_given_top_diffs_and_max_checks(x):
    res = gradcheck(ScaledSquare, [x], top_diffs=[np.ones_like(x)], max_checks=5)
    assert [e.checked for e in res.entries] == [5, 4, 4]
    with pytest.raises(ValueError, match="top_diffs"):
        check_layer(ScaledSquare, [x], top_diffs=[np.ones((2, 2))])


def test_table_lists_every_entry(x):
    text = str(check_layer(ScaledSquare, [x]))
    assert text.startswith("gradcheck of layer ScaledSquare (ScaledSquare), float64")
    assert ": OK" in text.splitlines()[0]
    for name in ["bottom[0]", "w", "b"]:
        assert any(line.split()[0] == name for line in text.splitlines()[2:])


def test_public_names_are_the_functions(x):
    import layerflow

    assert layerflow.gradcheck is gradcheck and layerflow.gradcheck(ScaledSquare, [x]).ok
    assert layerflow.check_layer is check_layer and layerflow.GradcheckResult is GradcheckResult


def test_lazy_exports_on_a_fresh_import():
    code = ("import layerflow as lf; from layerflow.layers.relu import ReLU; import numpy as np;"
            "lf.check_layer; lf.GradcheckResult; lf.gradcheck(ReLU, [np.ones((2, 2))])")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
