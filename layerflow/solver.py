"""The Solver: turns gradients into param updates, Caffe's pipeline and nothing else.

One iteration (Caffe's order): zero the param grads -> `iter_size` x forward/backward ->
clip the global gradient norm -> per param: normalize by iter_size, regularize (weight decay),
compute and apply the update of the solver type. The training loop around it (tests,
display, snapshots, signals) is the Trainer's.

A solver type subclasses `Solver`, is registered with `@register_solver`, and implements
`history_shapes` (its per-param buffers) and `update(i, param, rate)`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from numba import njit

from .config import SolverConfig, load_yaml, parse_net, parse_solver
from .errors import UserError
from .layer import Param
from .net import Net
from .registry import LR_POLICIES, SOLVERS


@njit(cache=True, fastmath=True)
def sum_of_squares(g):
    s = 0.0
    for i in range(g.size):
        s += g[i] * g[i]
    return s


@njit(cache=True)
def regularize(w, g, decay, l1):
    """g += decay * w (L2) or decay * sign(w) (L1). w, g: flat arrays."""
    d = g.dtype.type(decay)
    if l1:
        for i in range(g.size):
            g[i] += d * np.sign(w[i])
    else:
        for i in range(g.size):
            g[i] += d * w[i]


class Solver:
    """Base of all solver types. Build one with `Solver.from_yaml(path)`.

    Attributes: `net` (the train net), `test_nets` (test-phase nets sharing its params),
    `iter` (iterations done), `params` (the distinct learnable Params), `history` (per param,
    the solver type's buffers), `spec` (the validated solver.yaml), `seed`.
    """

    def __init__(self, cfg: SolverConfig, *, plugins: list[str] | None = None,
                 net_overrides=None):
        self.cfg = cfg
        self.spec = spec = cfg.spec
        self.seed = spec.random_seed if spec.random_seed >= 0 else time.time_ns() % (2 ** 31)
        self.lr_policy = LR_POLICIES.get(spec.lr_policy)
        self.lr_policy.check(cfg)
        net_src = load_yaml(cfg.net_path)
        if net_overrides:
            net_overrides(net_src)
        self.net_config = parse_net(net_src, plugins)
        self.net = Net(self.net_config, "train", seed=self.seed)
        self.test_nets: list[Net] = []
        if spec.test_interval > 0 or spec.test_iter > 0:
            if not any(not c.spec.include or any(r.phase == "test" for r in c.spec.include)
                       for c in self.net_config.layers):
                raise UserError(f"{cfg.source.file}: test_interval/test_iter are set but the "
                                f"net has no layers in the test phase")
            self.test_nets.append(Net(self.net_config, "test", seed=self.seed,
                                      share_params_with=self.net))
        self.iter = 0
        self.params: list[Param] = self.net.learnable_params()
        self.history: list[list[np.ndarray]] = [
            [np.zeros(s, p.data.dtype) for s in self.history_shapes(p)] for p in self.params]
        self.last_loss = float("nan")

    @classmethod
    def from_yaml(cls, path: str | Path, *, plugins: list[str] | None = None,
                  overrides=None) -> "Solver":
        """Read solver.yaml (and its net), build the solver of its `type`.

        `overrides` is a callable applied to the solver's and the net's Source before
        validation (see layerflow.overrides).
        """
        from .plugins import load_plugin

        for plugin in plugins or []:
            load_plugin(plugin, Path.cwd(), context="--plugin")
        src = load_yaml(path)
        net_hook = None
        if overrides is not None:
            overrides.apply_solver(src)
            net_hook = overrides.apply_net
        cfg = parse_solver(src)
        try:
            solver_cls = SOLVERS.get(cfg.spec.type)
        except UserError as err:
            raise UserError(f"{src.locate(('type',))}: type: {err}") from None
        return solver_cls(cfg, plugins=None, net_overrides=net_hook)

    # -- the solver type's part --------------------------------------------------------
    def history_shapes(self, param: Param) -> list[tuple[int, ...]]:
        """Shapes of the buffers this solver keeps per param (momentum, squared grads...)."""
        return []

    def update(self, i: int, param: Param, rate: float) -> None:
        """Apply the update to `param.data` from `param.grad` (already regularized)."""
        raise NotImplementedError

    # -- the pipeline ------------------------------------------------------------------
    def learning_rate(self, it: int | None = None) -> float:
        return self.spec.base_lr * self.lr_policy(self.spec, self.iter if it is None else it)

    def step(self, n: int = 1) -> float:
        """Run `n` iterations; returns the loss of the last one."""
        for _ in range(n):
            self.iteration()
        return self.last_loss

    def iteration(self) -> float:
        net, spec = self.net, self.spec
        net.clear_param_diffs()
        loss = 0.0
        for _ in range(spec.iter_size):
            loss += net.run_forward()
            net.backward(accumulate=True)
        loss /= spec.iter_size
        self.last_loss = loss
        self.apply_update()
        self.iter += 1
        return loss

    def apply_update(self) -> None:
        rate = self.learning_rate()
        spec = self.spec
        scale = 1.0 / spec.iter_size
        if spec.clip_gradients >= 0:
            norm = np.sqrt(sum(sum_of_squares(p.grad.reshape(-1)) for p in self.params)) * scale
            if norm > spec.clip_gradients:
                scale *= spec.clip_gradients / norm
        l1 = spec.regularization_type == "L1"
        for i, p in enumerate(self.params):
            g = p.grad.reshape(-1)
            if scale != 1.0:
                g *= g.dtype.type(scale)
            decay = spec.weight_decay * p.decay_mult
            if decay:
                regularize(p.data.reshape(-1), g, decay, l1)
            self.update(i, p, rate * p.lr_mult)

    # -- state for snapshots -------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Everything a resume needs besides the weights, as named arrays."""
        out = {"iter": np.array(self.iter, np.int64), "seed": np.array(self.seed, np.int64)}
        for p, bufs in zip(self.params, self.history):
            for k, buf in enumerate(bufs):
                out[f"history.{p.owner}.{k}"] = buf
        for lname, st in self.net.layer_states().items():
            for key, arr in st.items():
                out[f"layer.{lname}.{key}"] = np.asarray(arr)
        return out

    def load_state(self, state: dict[str, np.ndarray], source: str) -> None:
        for p, bufs in zip(self.params, self.history):
            for k, buf in enumerate(bufs):
                key = f"history.{p.owner}.{k}"
                if key not in state or state[key].shape != buf.shape:
                    raise UserError(f"{source}: solver state has no history {key} of shape "
                                    f"{buf.shape} (written by another solver type or net?)")
                buf[...] = state[key]
        layer_states: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in state.items():
            if key.startswith("layer."):
                lname, _, name = key[len("layer."):].partition(".")
                layer_states.setdefault(lname, {})[name] = arr
        for layer in self.net.layers:
            if layer.name in layer_states:
                layer.load_state(layer_states[layer.name])
        self.iter = int(np.asarray(state["iter"]).reshape(-1)[0])
        self.seed = int(np.asarray(state["seed"]).reshape(-1)[0])

    def fingerprint(self) -> str:
        """What a snapshot must match to be resumed by this solver: type and param shapes."""
        return json.dumps({"solver": self.spec.type,
                           "params": [[p.owner, list(p.shape)] for p in self.params]})
