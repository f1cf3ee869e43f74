"""Every lr policy against its closed form (Caffe's), missing keys, and plugin registration."""
from __future__ import annotations

import math

import numpy as np
import pytest

from layerflow import UserError, register_lr_policy, register_solver
from layerflow.solver import Solver

NET = """
name: tiny
layers:
  - {name: in, type: Input, top: [data, label], shape: [[4, 3], [4]]}
  - {name: ip, type: InnerProduct, bottom: data, num_output: 2}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
"""
MAX_ITER = 1000
CASES = {
    "fixed": ({}, lambda it: 1.0),
    "step": ({"gamma": 0.5, "stepsize": 100}, lambda it: 0.5 ** math.floor(it / 100)),
    "exp": ({"gamma": 0.995}, lambda it: 0.995 ** it),
    "inv": ({"gamma": 1e-3, "power": 0.75}, lambda it: (1 + 1e-3 * it) ** -0.75),
    "multistep": ({"gamma": 0.1, "stepvalue": [200, 500, 800]},
                  lambda it: 0.1 ** ((it >= 200) + (it >= 500) + (it >= 800))),
    "poly": ({"power": 2.0}, lambda it: (1 - it / MAX_ITER) ** 2.0),
    "sigmoid": ({"gamma": -0.01, "stepsize": 400},
                lambda it: 1 / (1 + math.exp(0.01 * (it - 400)))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_policy_matches_closed_form(make_solver, name):
    keys, closed = CASES[name]
    solver = make_solver(NET, base_lr=0.2, lr_policy=name, max_iter=MAX_ITER, **keys)
    for it in [0, 1, 99, 100, 101, 199, 200, 201, 499, 500, 777, 800, 999]:
        assert solver.learning_rate(it) == pytest.approx(0.2 * closed(it), rel=1e-12), it


def test_multistep_steps_exactly_at_stepvalues(make_solver):
    solver = make_solver(NET, base_lr=1.0, lr_policy="multistep", gamma=0.5,
                         stepvalue=[3, 5], max_iter=10)
    assert [solver.learning_rate(i) for i in range(7)] == [1, 1, 1, .5, .5, .25, .25]


def test_learning_rate_follows_the_iteration(make_solver):
    solver = make_solver(NET, base_lr=1.0, lr_policy="step", gamma=0.1, stepsize=2,
                         max_iter=10)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(5):
        seen.append(solver.learning_rate())
        solver.net.feed({"data": rng.normal(size=(4, 3)), "label": np.array([0, 1, 0, 1.])})
        solver.iteration()
    assert seen == pytest.approx([1, 1, .1, .1, .01])


MISSING = [("step", {"stepsize": 10}, "gamma"), ("step", {"gamma": 0.1}, "stepsize"),
           ("exp", {}, "gamma"), ("inv", {"gamma": 0.1}, "power"),
           ("inv", {"power": 0.75}, "gamma"), ("multistep", {"gamma": 0.1}, "stepvalue"),
           ("multistep", {"stepvalue": [5]}, "gamma"), ("poly", {}, "power"),
           ("sigmoid", {"gamma": 0.1}, "stepsize"), ("sigmoid", {"stepsize": 5}, "gamma")]


@pytest.mark.parametrize("name,keys,missing", MISSING)
def test_missing_parameter_is_a_user_error_naming_it(make_solver, name, keys, missing):
    with pytest.raises(UserError) as err:
        make_solver(NET, lr_policy=name, **keys)
    msg = str(err.value)
    assert f"`{missing}`" in msg and name in msg and "solver.yaml:" in msg


def test_multistep_needs_increasing_stepvalues(make_solver):
    with pytest.raises(UserError, match=r"stepvalue\[1\].*increase"):
        make_solver(NET, lr_policy="multistep", gamma=0.1, stepvalue=[500, 200])


def test_unknown_policy_lists_the_known_ones(make_solver):
    with pytest.raises(UserError, match=r'unknown lr_policy type "stpe".*did you mean "step"'):
        make_solver(NET, lr_policy="stpe")


def test_unknown_solver_type_names_the_key(make_solver):
    with pytest.raises(UserError, match=r'solver.yaml:\d+:\d+: type: unknown solver type "Adma"'):
        make_solver(NET, type="Adma")


# -- plugins: a solver type and an lr policy registered from outside the package ---------

@register_lr_policy("test_halving")
def halving(spec, it):
    """lr = base_lr / 2^iter."""
    return 0.5 ** it


@register_solver("TestSignSGD")
class SignSGD(Solver):
    """W -= rate * sign(g): a plugin solver using the simple `update(i, param, rate)` hook."""

    def update(self, i, param, rate):
        param.data -= rate * np.sign(param.grad)


def test_plugin_solver_and_policy_are_used_from_yaml(make_solver):
    solver = make_solver(NET.replace("name: tiny", "name: tiny\ndtype: float64"),
                         type="TestSignSGD", lr_policy="test_halving", base_lr=0.25,
                         weight_decay=0.1)
    assert isinstance(solver, SignSGD)
    assert solver.learning_rate(3) == 0.25 / 8
    weight = solver.net.params["ip"]["weight"]
    w0 = weight.data.copy()
    solver.net.feed({"data": np.arange(12.0).reshape(4, 3) / 10,
                     "label": np.array([0, 1, 0, 1.])})
    solver.net.run_forward()
    solver.net.backward()
    g = weight.grad + 0.1 * w0  # the base class normalizes and regularizes before update()
    solver.iteration()
    np.testing.assert_allclose(weight.data, w0 - 0.25 * np.sign(g))
