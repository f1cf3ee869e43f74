"""What the solver relies on the net for: shared params, loss_weight on any top and several
losses, and iter_size accumulation (k passes of batch b == one pass of batch k*b)."""
from __future__ import annotations

import numpy as np
import pytest

from layerflow import UserError

from layerflow.solver import Solver
from solver_helpers import write_solver
from test_solver_rules import softmax_grads

SHARED = """
name: shared
dtype: float64
layers:
  - {name: in, type: Input, top: [a, b, label], shape: [[6, 3], [6, 3], [6]]}
  - {name: ipa, type: InnerProduct, bottom: a, num_output: 2,
     weight_filler: {type: gaussian, std: 0.3}, param: [{name: w}, {name: bias_a}]}
  - {name: ipb, type: InnerProduct, bottom: b, num_output: OUT_B,
     weight_filler: {type: gaussian, std: 0.3}, param: [{name: w}, {name: bias_b}]}
  - {name: sum, type: Eltwise, bottom: [ipa, ipb]}
  - {name: loss, type: SoftmaxLoss, bottom: [sum, label]}
"""


def test_shared_params_are_one_param_updated_once_with_summed_grads(make_solver):
    solver = make_solver(SHARED.replace("OUT_B", "2"), base_lr=0.1, momentum=0.0)
    ipa, ipb = solver.net.params["ipa"], solver.net.params["ipb"]
    assert ipa["weight"] is ipb["weight"]
    assert ipa["bias"] is not ipb["bias"]
    assert len(solver.params) == 3 and len(solver.history) == 1  # SGD: one momentum buffer
    assert solver.history[0].size == solver.buffer.size == 3 * 2 + 2 + 2  # w once, 2 biases
    W0, ba, bb = ipa["weight"].data.copy(), ipa["bias"].data.copy(), ipb["bias"].data.copy()
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    y = rng.integers(0, 2, size=6)
    solver.net.feed({"a": a, "b": b, "label": y.astype(float)})
    solver.iteration()
    # scores = a W^T + ba + b W^T + bb, so dW = d^T (a + b): both layers' contributions
    gW, gbias = softmax_grads(W0, ba + bb, a + b, y)
    np.testing.assert_allclose(ipa["weight"].grad, gW, rtol=1e-12)
    np.testing.assert_allclose(ipb["weight"].data, W0 - 0.1 * gW, rtol=1e-12)
    np.testing.assert_allclose(ipa["bias"].data, ba - 0.1 * gbias, rtol=1e-12)
    # the test net sees the same single param
    solver2 = make_solver(SHARED.replace("OUT_B", "2").replace(
        "- {name: loss", "- {name: acc, type: Accuracy, bottom: [sum, label], "
        "include: {phase: test}}\n  - {name: loss"), test_interval=5, test_iter=1)
    test_params = solver2.test_nets[0].params
    assert test_params["ipa"]["weight"] is solver2.net.params["ipb"]["weight"]


def test_shared_params_with_different_shapes_name_both_layers(make_solver):
    with pytest.raises(UserError) as err:
        make_solver(SHARED.replace("OUT_B", "3"))
    msg = str(err.value)
    assert "ipa" in msg and "ipb" in msg and "(2, 3)" in msg and "(3, 3)" in msg


LOSSES = """
name: losses
dtype: float64
layers:
  - {name: in, type: Input, top: [data, label], shape: [[5, 4], [5]]}
  - {name: ip, type: InnerProduct, bottom: data, num_output: 3, loss_weight: 0.5,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: ce1, type: SoftmaxLoss, bottom: [ip, label], loss_weight: 0.3}
  - {name: ce2, type: SoftmaxLoss, bottom: [ip, label]}
"""


def test_loss_weight_on_any_top_and_several_losses(make_solver):
    solver = make_solver(LOSSES, base_lr=0.05, momentum=0.9)
    p = solver.net.params["ip"]
    rng = np.random.default_rng(5)
    W, b = p["weight"].data.copy(), p["bias"].data.copy()
    V = [np.zeros_like(W), np.zeros_like(b)]
    for step in range(10):
        x = rng.normal(size=(5, 4))
        y = rng.integers(0, 3, size=5)
        solver.net.feed({"data": x, "label": y.astype(float)})
        loss = solver.iteration()
        s = x @ W.T + b
        z = s - s.max(1, keepdims=True)
        ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(5), y])
        assert loss == pytest.approx(1.3 * ce + 0.5 * s.sum(), rel=1e-12)
        gW, gb = softmax_grads(W, b, x, y)
        # d/ds of 0.5 * sum(s) is 0.5 everywhere: dW += 0.5 * 1^T x, db += 0.5 * N
        gW = 1.3 * gW + 0.5 * np.ones((3, 5)) @ x
        gb = 1.3 * gb + 0.5 * 5
        V = [0.9 * V[0] + 0.05 * gW, 0.9 * V[1] + 0.05 * gb]
        W, b = W - V[0], b - V[1]
        np.testing.assert_allclose(p["weight"].data, W, rtol=1e-11, err_msg=f"step {step}")
        np.testing.assert_allclose(p["bias"].data, b, rtol=1e-11, err_msg=f"step {step}")


DATA_NET = """
name: acc
dtype: float64
layers:
  - {{name: data, type: Data, top: [data, label], source: {src}, batch_size: {batch},
     shuffle: true}}
  - {{name: ip1, type: InnerProduct, bottom: data, num_output: 6}}
  - {{name: relu, type: ReLU, bottom: ip1, top: ip1}}
  - {{name: ip2, type: InnerProduct, num_output: 3}}
  - {{name: loss, type: SoftmaxLoss, bottom: [ip2, label]}}
"""


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_iter_size_k_batch_b_equals_batch_k_times_b(tmp_path, kind):
    rng = np.random.default_rng(0)
    src = tmp_path / "d.npz"
    np.savez(src, data=rng.normal(size=(36, 5)), label=rng.integers(0, 3, size=36))
    runs = {}
    for batch, iter_size in [(4, 3), (12, 1)]:
        folder = tmp_path / f"b{batch}"
        folder.mkdir()
        net = DATA_NET.format(src=src, batch=batch)
        solver = Solver.from_yaml(write_solver(folder, net, type=kind, base_lr=0.05,
                                               momentum=0.9, weight_decay=0.01,
                                               iter_size=iter_size))
        losses = [solver.iteration() for _ in range(8)]  # 8 x 12 samples: epochs wrap
        runs[batch] = (losses, {k: v.copy() for k, v in solver.net.state_dict().items()})
    np.testing.assert_allclose(runs[4][0], runs[12][0], rtol=1e-12)
    for key, value in runs[12][1].items():
        np.testing.assert_allclose(runs[4][1][key], value, rtol=1e-10, atol=1e-13,
                                   err_msg=key)
