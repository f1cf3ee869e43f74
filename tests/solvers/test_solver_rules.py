"""Every solver type against an independent numpy transcription of Caffe's update rule.

The net is one InnerProduct + SoftmaxLoss in float64 whose gradient the test computes itself,
so both the gradient and the update are re-derived here: 12 steps, lr policy inv (the rate
changes every step), weight decay L1 and L2, per-param lr_mult/decay_mult (including Caffe's
common `lr_mult: 2, decay_mult: 0` on biases), and clip_gradients with iter_size 2 (Caffe
clips the accumulated gradient, before dividing by iter_size).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

N, K, M = 8, 5, 4
STEPS = 12
BASE = {"SGD": dict(base_lr=0.1, momentum=0.9),
        "Nesterov": dict(base_lr=0.1, momentum=0.9),
        "AdaGrad": dict(base_lr=0.1, delta=1e-8),
        "RMSProp": dict(base_lr=0.01, rms_decay=0.9, delta=1e-8),
        "AdaDelta": dict(base_lr=1.0, momentum=0.95, delta=1e-6),
        "Adam": dict(base_lr=0.01, momentum=0.9, momentum2=0.999, delta=1e-8)}
# (weight lr_mult, decay_mult), (bias lr_mult, decay_mult), clip_gradients, iter_size
MULTS = {"caffe-bias": ((1.0, 1.0), (2.0, 0.0), -1.0, 1),
         "mults-clip-itersize": ((0.5, 1.5), (2.0, 0.5), 0.3, 2)}

NET = """
name: lin
dtype: float64
layers:
  - {{name: in, type: Input, top: [data, label], shape: [[{n}, {k}], [{n}]]}}
  - {{name: ip, type: InnerProduct, bottom: data, num_output: {m},
     weight_filler: {{type: gaussian, std: 0.5}},
     bias_filler: {{type: uniform, min: -0.5, max: 0.5}},
     param: [{{lr_mult: {wl}, decay_mult: {wd}}}, {{lr_mult: {bl}, decay_mult: {bd}}}]}}
  - {{name: loss, type: SoftmaxLoss, bottom: [ip, label]}}
"""


def softmax_grads(W, b, X, y):
    """d(mean cross-entropy)/dW, /db for scores X W^T + b."""
    s = X @ W.T + b
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    d = p / len(y)
    return d.T @ X, d.sum(axis=0)


def reference_step(kind, hp, w, g, hist, rate, t):
    """Caffe's ComputeUpdateValue + Update for one param (g regularized); returns new w."""
    if kind == "SGD":
        hist[0] = hp["momentum"] * hist[0] + rate * g
        return w - hist[0]
    if kind == "Nesterov":
        old = hist[0].copy()
        hist[0] = hp["momentum"] * hist[0] + rate * g
        return w - ((1 + hp["momentum"]) * hist[0] - hp["momentum"] * old)
    if kind == "AdaGrad":
        hist[0] = hist[0] + g * g
        return w - rate * g / (np.sqrt(hist[0]) + hp["delta"])
    if kind == "RMSProp":
        rho = hp["rms_decay"]
        hist[0] = rho * hist[0] + (1 - rho) * g * g
        return w - rate * g / (np.sqrt(hist[0]) + hp["delta"])
    if kind == "AdaDelta":
        m, eps = hp["momentum"], hp["delta"]
        hist[0] = m * hist[0] + (1 - m) * g * g
        dx = g * np.sqrt((hist[1] + eps) / (hist[0] + eps))
        hist[1] = m * hist[1] + (1 - m) * dx * dx
        return w - rate * dx
    if kind == "Adam":
        b1, b2, eps = hp["momentum"], hp["momentum2"], hp["delta"]
        hist[0] = b1 * hist[0] + (1 - b1) * g
        hist[1] = b2 * hist[1] + (1 - b2) * g * g
        correction = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - rate * correction * hist[0] / (np.sqrt(hist[1]) + eps)
    raise AssertionError(kind)


@pytest.mark.parametrize("mults", sorted(MULTS))
@pytest.mark.parametrize("reg", ["L2", "L1"])
@pytest.mark.parametrize("kind", sorted(BASE))
def test_update_matches_numpy_transcription(make_solver, kind, reg, mults):
    (wl, wd), (bl, bd), clip, iter_size = MULTS[mults]
    hp = BASE[kind]
    gamma, power, weight_decay = 0.1, 0.75, 0.05
    solver = make_solver(NET.format(n=N, k=K, m=M, wl=wl, wd=wd, bl=bl, bd=bd), type=kind,
                         lr_policy="inv", gamma=gamma, power=power, weight_decay=weight_decay,
                         regularization_type=reg, clip_gradients=clip, iter_size=iter_size,
                         max_iter=STEPS, **hp)
    params = solver.net.params["ip"]
    W, b = params["weight"].data.copy(), params["bias"].data.copy()
    W0 = W.copy()
    n_hist = 2 if kind in ("AdaDelta", "Adam") else 1
    hist = {"w": [np.zeros_like(W) for _ in range(n_hist)],
            "b": [np.zeros_like(b) for _ in range(n_hist)]}
    rng = np.random.default_rng(7)
    clipped = 0
    for it in range(STEPS):
        X = rng.normal(size=(N, K))
        y = rng.integers(0, M, size=N)
        solver.net.feed({"data": X, "label": y.astype(np.float64)})
        solver.iteration()

        gW, gb = softmax_grads(W, b, X, y)
        gW, gb = iter_size * gW, iter_size * gb  # the same batch accumulated iter_size times
        scale = 1.0
        if clip >= 0:
            norm = math.sqrt((gW ** 2).sum() + (gb ** 2).sum())
            if norm > clip:
                scale, clipped = clip / norm, clipped + 1
        scale /= iter_size
        rate = hp["base_lr"] * (1 + gamma * it) ** (-power)
        reg_w = np.sign(W) if reg == "L1" else W
        reg_b = np.sign(b) if reg == "L1" else b
        gW = scale * gW + weight_decay * wd * reg_w
        gb = scale * gb + weight_decay * bd * reg_b
        W = reference_step(kind, hp, W, gW, hist["w"], rate * wl, it + 1)
        b = reference_step(kind, hp, b, gb, hist["b"], rate * bl, it + 1)

        np.testing.assert_allclose(params["weight"].data, W, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{kind} {reg} weight after step {it + 1}")
        np.testing.assert_allclose(params["bias"].data, b, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{kind} {reg} bias after step {it + 1}")
    assert solver.iter == STEPS
    assert len(solver.history) == n_hist
    for k in range(n_hist):
        np.testing.assert_allclose(solver.history_of(0)[k], hist["w"][k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(solver.history_of(1)[k], hist["b"][k], rtol=1e-9, atol=1e-12)
    if clip >= 0:
        assert clipped > 0, "the clipping case never clipped: lower the threshold"
    # the params moved for real
    assert np.abs(params["weight"].data - W0).max() > 1e-3


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp"])
def test_momentum_is_refused_where_caffe_refuses_it(make_solver, kind):
    from layerflow import UserError

    with pytest.raises(UserError, match="momentum"):
        make_solver(NET.format(n=N, k=K, m=M, wl=1, wd=1, bl=1, bd=1), type=kind, momentum=0.9)


def test_adam_refuses_beta1_of_one(make_solver):
    from layerflow import UserError

    with pytest.raises(UserError, match="momentum"):
        make_solver(NET.format(n=N, k=K, m=M, wl=1, wd=1, bl=1, bd=1), type="Adam",
                    momentum=1.0)


def test_lr_mult_zero_freezes_a_param(make_solver):
    solver = make_solver(NET.format(n=N, k=K, m=M, wl=0, wd=1, bl=1, bd=0), type="SGD",
                         base_lr=0.5, momentum=0.9, weight_decay=0.1)
    W0 = solver.net.params["ip"]["weight"].data.copy()
    b0 = solver.net.params["ip"]["bias"].data.copy()
    rng = np.random.default_rng(0)
    for _ in range(3):
        solver.net.feed({"data": rng.normal(size=(N, K)),
                         "label": rng.integers(0, M, size=N).astype(float)})
        solver.iteration()
    assert np.array_equal(solver.net.params["ip"]["weight"].data, W0)
    assert not np.array_equal(solver.net.params["ip"]["bias"].data, b0)
