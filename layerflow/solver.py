"""The Solver: turns gradients into param updates, Caffe's pipeline and nothing else.

One iteration (Caffe's `Step` + `ApplyUpdate`): zero the param grads -> `iter_size` x
forward/backward -> check the loss is finite -> lr = base_lr * policy(iter) -> clip: when the
global L2 norm of the accumulated gradients exceeds `clip_gradients`, scale them by
clip_gradients / norm (Caffe clips before normalizing) -> per param: normalize by 1/iter_size,
regularize (g += weight_decay * decay_mult * w for L2, * sign(w) for L1), update with
rate = lr * lr_mult -> iter += 1.

A solver type subclasses `Solver`, is registered with `@register_solver`, and implements
`history_shapes(param)` (its per-param buffers, saved in snapshots) and either
`update(i, param, rate)` (param.grad arrives normalized and regularized) or, as the built-in
types do, `update_param(i, w, g, history, rate, scale, decay, l1)`: one fused Numba kernel over
flat arrays doing normalize, regularize and update in a single pass.

Divergence: a non-finite loss stops the solver before the update (the params stay as they
were) with a `DivergenceError` naming the first layer whose top is not finite; the params are
scanned only when asked (`check_params`, which the Trainer calls at display and snapshot time).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from numba import njit

from .config import SolverConfig, load_yaml, parse_net, parse_solver
from .errors import DivergenceError, UserError
from .layer import Param
from .net import Net, in_phase
from .registry import LR_POLICIES, SOLVERS


@njit(cache=True, fastmath={"reassoc", "contract"})
def sum_of_squares(g):
    """sum_i g[i]^2 of a flat array, accumulated in float64."""
    s = 0.0
    for i in range(g.size):
        s += g[i] * g[i]
    return s


@njit(cache=True)
def all_finite(x):
    """True when no entry of the flat array x is NaN or infinite."""
    for i in range(x.size):
        if not np.isfinite(x[i]):
            return False
    return True


@njit(cache=True)
def regularize(w, g, scale, decay, l1):
    """g = scale * g + decay * w (L2) or + decay * sign(w) (L1). w, g: flat arrays."""
    s = g.dtype.type(scale)
    d = g.dtype.type(decay)
    if l1:
        for i in range(g.size):
            g[i] = s * g[i] + d * np.sign(w[i])
    else:
        for i in range(g.size):
            g[i] = s * g[i] + d * w[i]


class _Slot:
    """Flat views of one param's data, grad and history, made once (no per-step reshape)."""

    __slots__ = ("param", "data", "grad", "w", "g", "h")

    def __init__(self, param: Param, history: list[np.ndarray]):
        self.param, self.data, self.grad = param, param.data, param.grad
        self.w, self.g = param.data.reshape(-1), param.grad.reshape(-1)
        self.h = [b.reshape(-1) for b in history]


class Solver:
    """Base of all solver types. Build one with `Solver.from_yaml(path)`.

    Attributes: `net` (the train net), `test_nets` (test-phase nets sharing its params),
    `iter` (iterations done), `params` (the distinct learnable Params), `history` (per param,
    the solver type's buffers), `spec` (the validated solver.yaml), `seed`, `last_loss`.
    """

    def __init__(self, cfg: SolverConfig, *, plugins: list[str] | None = None,
                 net_overrides=None):
        self.cfg = cfg
        self.spec = spec = cfg.spec
        self.seed = spec.random_seed if spec.random_seed >= 0 else time.time_ns() % (2 ** 31)
        try:
            self.lr_policy = LR_POLICIES.get(spec.lr_policy)
        except UserError as err:
            raise UserError(f"{cfg.source.locate(('lr_policy',))}: lr_policy: {err}") from None
        check = getattr(self.lr_policy, "check", None)
        if check is not None:
            check(cfg)
        self.check_spec(cfg)
        net_src = load_yaml(cfg.net_path)
        if net_overrides:
            net_overrides(net_src)
        self.net_config = parse_net(net_src, plugins)
        self.net = Net(self.net_config, "train", seed=self.seed)
        self.test_nets: list[Net] = []
        if spec.test_interval > 0 or spec.test_iter > 0:
            if not any(in_phase(c, "test") for c in self.net_config.layers):
                raise UserError(f"{cfg.source.file}: test_interval/test_iter are set but the "
                                f"net has no layers in the test phase")
            self.test_nets.append(Net(self.net_config, "test", seed=self.seed,
                                      share_params_with=self.net))
        self.iter = 0
        self.params: list[Param] = self.net.learnable_params()
        self.history: list[list[np.ndarray]] = [
            [np.zeros(s, p.data.dtype) for s in self.history_shapes(p)] for p in self.params]
        self.last_loss = float("nan")
        self._slots: list[_Slot] = []

    @classmethod
    def from_yaml(cls, path: str | Path, *, plugins: list[str] | None = None,
                  overrides=None) -> "Solver":
        """Read solver.yaml (and its net), build the solver of its `type`.

        `overrides` (a layerflow.overrides.Overrides) edits the solver's and the net's Source
        before validation, so its errors name the `--set` argument.
        """
        from .plugins import load_plugins

        load_plugins(plugins)
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
    def check_spec(self, cfg: SolverConfig) -> None:
        """Reject solver keys this type cannot use (a UserError naming the key)."""

    def history_shapes(self, param: Param) -> list[tuple[int, ...]]:
        """Shapes of the buffers this solver keeps per param (momentum, squared grads...)."""
        return []

    def update(self, i: int, param: Param, rate: float) -> None:
        """Apply the update to `param.data` from `param.grad` (normalized, regularized)."""
        raise NotImplementedError

    def update_param(self, i: int, w: np.ndarray, g: np.ndarray, history: list[np.ndarray],
                     rate: float, scale: float, decay: float, l1: bool) -> None:
        """Normalize (g *= scale), regularize (decay, L1 or L2) and update one param.

        w, g, history: flat views of the param's data, grad and buffers. The default runs
        the `regularize` kernel, then `update`; built-in types override it with one kernel.
        """
        regularize(w, g, scale, decay, l1)
        self.update(i, self.params[i], rate)

    # -- the pipeline ------------------------------------------------------------------
    def learning_rate(self, it: int | None = None) -> float:
        return self.spec.base_lr * self.lr_policy(self.spec, self.iter if it is None else it)

    def step(self, n: int = 1) -> float:
        """Run `n` iterations; returns the loss of the last one."""
        for _ in range(n):
            self.iteration()
        return self.last_loss

    def iteration(self) -> float:
        """One training iteration; a non-finite loss raises DivergenceError before updating."""
        net, iter_size = self.net, self.spec.iter_size
        for s in self.slots():
            s.g.fill(0)
        loss = 0.0
        try:
            for _ in range(iter_size):
                loss += net.run_forward()
                net.backward(accumulate=True)
        except ArithmeticError as exc:  # a kernel dividing by a zero born of inf/NaN values
            self.last_loss = float("nan")
            raise self.divergence(f"{type(exc).__name__} ({exc}) in forward/backward") from None
        if iter_size > 1:
            loss /= iter_size
        self.last_loss = loss
        if not math.isfinite(loss):
            raise self.divergence(f"the loss is {loss}")
        self.apply_update()
        self.iter += 1
        return loss

    def slots(self) -> list[_Slot]:
        """Flat views of every param, rebuilt only if a param's arrays were replaced."""
        slots = self._slots
        if len(slots) != len(self.params) or any(
                s.data is not s.param.data or s.grad is not s.param.grad for s in slots):
            self._slots = slots = [_Slot(p, h) for p, h in zip(self.params, self.history)]
        return slots

    def apply_update(self) -> None:
        spec = self.spec
        rate = self.learning_rate()
        slots = self.slots()
        scale = 1.0 / spec.iter_size
        if spec.clip_gradients >= 0:
            norm = math.sqrt(sum(sum_of_squares(s.g) for s in slots))
            if norm > spec.clip_gradients:
                scale *= spec.clip_gradients / norm
        l1 = spec.regularization_type == "L1"
        weight_decay = spec.weight_decay
        for i, s in enumerate(slots):
            p = s.param
            self.update_param(i, s.w, s.g, s.h, rate * p.lr_mult, scale,
                              weight_decay * p.decay_mult, l1)

    # -- divergence ----------------------------------------------------------------------
    def check_params(self) -> None:
        """Raise DivergenceError if a param holds a NaN or an infinity (a full scan)."""
        for s in self.slots():
            if not all_finite(s.w):
                raise self.divergence(f"param {s.param.owner} is not finite")

    def divergence(self, what: str) -> DivergenceError:
        """The error for a non-finite loss or param: where it shows first, and what to try."""
        where = ""
        try:
            found = self.net.find_nonfinite()
        except Exception as exc:  # the diagnosis must never hide the divergence itself
            found, where = None, f" (could not re-run forward: {type(exc).__name__}: {exc})"
        if found is not None:
            layer, top = found
            where = (f"; the first layer whose output is not finite is {layer} "
                     f"(top \"{top}\")")
        bad = [s.param.owner for s in self.slots() if not all_finite(s.w)]
        if bad and not what.startswith("param "):
            where += f"; non-finite params: {', '.join(bad[:5])}"
        spec = self.spec
        tips = [f"a lower base_lr (now {spec.base_lr:g})"]
        tips.append("clip_gradients (e.g. 10)" if spec.clip_gradients < 0 else
                    f"a lower clip_gradients (now {spec.clip_gradients:g})")
        return DivergenceError(f"training diverged at iteration {self.iter}: {what}{where}; "
                               f"try {' or '.join(tips)}")

    # -- state for snapshots -------------------------------------------------------------
    def nets(self) -> list[tuple[str, Net]]:
        """(key prefix, net) of the train net and the test nets, as named in snapshots."""
        return [("", self.net)] + [(f"test{j}.", n) for j, n in enumerate(self.test_nets)]

    def state(self) -> dict[str, np.ndarray]:
        """Everything a resume needs besides the weights, as named arrays.

        iter, seed, every history buffer, the layers' own state (data cursors) and the
        state of every layer's random generator, for the train net and the test nets, and
        the lr policy's state when it has one (the built-in policies are closed forms of iter).
        """
        out = {"iter": np.array(self.iter, np.int64), "seed": np.array(self.seed, np.int64)}
        for p, bufs in zip(self.params, self.history):
            for k, buf in enumerate(bufs):
                out[f"history.{p.owner}.{k}"] = buf
        for prefix, net in self.nets():
            for lname, st in net.layer_states().items():
                for key, arr in st.items():
                    out[f"{prefix}layer.{lname}.{key}"] = np.asarray(arr)
            for layer in net.layers:
                if isinstance(layer.rng, np.random.Generator):
                    text = json.dumps(layer.rng.bit_generator.state)
                    out[f"{prefix}rng.{layer.name}"] = np.frombuffer(text.encode(), np.uint8)
        policy_state = getattr(self.lr_policy, "state", None)
        if policy_state is not None:
            for key, arr in policy_state().items():
                out[f"lr_policy.{key}"] = np.asarray(arr)
        return out

    def load_state(self, state: dict[str, np.ndarray], source: str) -> None:
        for p, bufs in zip(self.params, self.history):
            for k, buf in enumerate(bufs):
                key = f"history.{p.owner}.{k}"
                if key not in state or state[key].shape != buf.shape:
                    raise UserError(f"{source}: solver state has no history {key} of shape "
                                    f"{buf.shape} (written by another solver type or net?)")
                buf[...] = state[key]
        for prefix, net in self.nets():
            layer_states: dict[str, dict[str, np.ndarray]] = {}
            head = f"{prefix}layer."
            for key, arr in state.items():
                if key.startswith(head):
                    lname, _, name = key[len(head):].partition(".")
                    layer_states.setdefault(lname, {})[name] = arr
            for layer in net.layers:
                if layer.state():
                    if layer.name not in layer_states:
                        if prefix:  # a test net added since the snapshot: starts fresh
                            continue
                        raise UserError(f"{source}: the snapshot has no state for layer "
                                        f"{layer.name} ({net.phase} net); written by a "
                                        f"different net?")
                    layer.load_state(layer_states[layer.name])
                rng = state.get(f"{prefix}rng.{layer.name}")
                if rng is not None and isinstance(layer.rng, np.random.Generator):
                    try:
                        layer.rng.bit_generator.state = json.loads(rng.tobytes().decode())
                    except (ValueError, TypeError, KeyError) as exc:
                        raise UserError(f"{source}: bad random state of layer {layer.name}: "
                                        f"{exc}") from None
        load_policy = getattr(self.lr_policy, "load_state", None)
        if load_policy is not None:
            load_policy({k[len("lr_policy."):]: v for k, v in state.items()
                         if k.startswith("lr_policy.")})
        self.iter = int(np.asarray(state["iter"]).reshape(-1)[0])
        self.seed = int(np.asarray(state["seed"]).reshape(-1)[0])

    def fingerprint(self) -> str:
        """What a snapshot must match to be resumed by this solver: type and param shapes."""
        return json.dumps({"solver": self.spec.type,
                           "params": [[p.owner, list(p.shape)] for p in self.params]})
