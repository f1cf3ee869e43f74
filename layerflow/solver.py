"""The Solver: turns gradients into param updates, Caffe's pipeline and nothing else.

A solver is given built nets (`Solver(config, net, test_nets)`; `layerflow.builder` reads the
YAML files and builds them). One iteration (Caffe's `Step` + `ApplyUpdate`):

    zero the grad buffer -> iter_size x net.forward_backward (gradients accumulate)
    -> reduce_gradients()       in one process nothing; with N processes (`world`, see
                                layerflow.distributed) every process first learns how the
                                others did (a failure anywhere stops all), then one
                                Allreduce sums the grad buffer; the update scales by 1 / N
    -> the loss must be finite  (else DivergenceError, before anything is updated)
    -> apply_update():  lr = base_lr * policy(iter);
                        scale = 1 / iter_size, times clip_gradients / norm when the global L2
                        norm of the accumulated gradients exceeds clip_gradients (Caffe clips
                        before normalizing);
                        per param (segment of the buffer): g = scale g + decay_mult *
                        weight_decay * (w for L2 | sign(w) for L1), then the update rule with
                        rate = lr * lr_mult
    -> iter += 1

All params live in the train net's one contiguous buffer (`net.param_buffer`), so the norm and
the update are single passes over it; a solver's history (momentum...) is `num_history` flat
arrays of the same layout. A solver type subclasses `Solver`, is registered with
`@register_solver`, sets `num_history`, and implements either `update(i, param, rate)`
(param.grad arrives normalized and regularized; `self.history_of(i)` gives its buffers as
param-shaped views) or, as the built-in types do, `update_buffer(...)`: one Numba kernel over
the whole buffer doing normalize, regularize and update in a single pass.

Divergence: a non-finite loss stops the solver before the update (the params stay as they
were) with a `DivergenceError` naming the first layer whose top is not finite; the params are
scanned only when asked (`check_params`, which the Trainer calls at display and snapshot time).
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numba import njit

from .config import SolverConfig
from .distributed import World
from .errors import DivergenceError, UserError
from .net import Net


@njit(inline="always")
def regularized(g, w, scale, decay, l1):
    """scale * g + decay * w (L2) or scale * g + decay * sign(w) (L1): the normalized and
    regularized gradient of one weight (Caffe's Normalize + Regularize), inlined into every
    update kernel. Scalars of the array's dtype."""
    if l1:
        return scale * g + decay * np.sign(w)
    return scale * g + decay * w


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
def regularize(w, g, offsets, decays, scale, l1):
    """Per segment k: g = scale * g + decays[k] * (w | sign(w)), over the whole buffer."""
    t = g.dtype.type
    s = t(scale)
    for k in range(offsets.size - 1):
        d = t(decays[k])
        lo, hi = offsets[k], offsets[k + 1]
        # 0-based slices: Numba then sees plain contiguous loops and vectorises them
        ws, gs = w[lo:hi], g[lo:hi]
        for i in range(hi - lo):
            gs[i] = regularized(gs[i], ws[i], s, d, l1)


class Solver:
    """Base of all solver types. Build one from files with `Solver.from_yaml(path)`.

    Attributes: `net` (the train net), `test_nets` (test-phase nets sharing its params),
    `iter` (iterations done), `buffer` (the train net's ParamBuffer), `params` (its Params),
    `history` (`num_history` flat arrays of the buffer's layout), `spec` (the validated
    solver.yaml), `seed`, `last_loss`.
    """

    num_history: ClassVar[int] = 0

    def __init__(self, cfg: SolverConfig, net: Net, test_nets: list[Net] | None = None, *,
                 seed: int = 0):
        self.cfg = cfg
        self.spec = cfg.spec
        self.lr_policy = cfg.lr_policy
        self.check_spec(cfg)
        self.seed = seed
        self.net = net
        self.test_nets: list[Net] = list(test_nets or [])
        self.iter = 0
        self.buffer = net.param_buffer
        self.params = self.buffer.params
        self.history: list[np.ndarray] = [self.buffer.zeros_like()
                                          for _ in range(self.num_history)]
        self.last_loss = float("nan")
        self.decays = self.spec.weight_decay * self.buffer.decay_mult
        self.world = World()  # one process; the builder gives a data-parallel run its world
        self.notice = None  # a small value shared with every process at each iteration
        self.notices: list = []  # every process's notice of the last iteration

    @classmethod
    def from_yaml(cls, path, *, plugins: list[str] | None = None, overrides=None) -> "Solver":
        """Read solver.yaml and its net, build the nets and the solver of its `type`
        (`layerflow.builder.build_solver`)."""
        from .builder import build_solver

        return build_solver(path, plugins=plugins, overrides=overrides)

    # -- the solver type's part --------------------------------------------------------
    def check_spec(self, cfg: SolverConfig) -> None:
        """Reject solver keys this type cannot use (a UserError naming the key)."""

    def update(self, i: int, param, rate: float) -> None:
        """Apply the update to `param.data` from `param.grad` (normalized, regularized)."""
        raise NotImplementedError(f"solver {type(self).__name__} implements neither update "
                                  f"nor update_buffer")

    def update_buffer(self, w: np.ndarray, g: np.ndarray, history: list[np.ndarray],
                      rates: np.ndarray, scale: float, l1: bool) -> None:
        """Normalize (g *= scale), regularize and update the whole buffer.

        w, g: the flat data and grad buffers; history: this type's flat buffers; rates: the
        learning rate of each param (lr * lr_mult). The default regularizes in one pass, then
        calls `update(i, param, rate)` per param; built-in types override it with one kernel.
        """
        regularize(w, g, self.buffer.offsets, self.decays, scale, l1)
        for i, param in enumerate(self.params):
            self.update(i, param, float(rates[i]))

    def history_of(self, i: int) -> list[np.ndarray]:
        """The history buffers of param i, as views of its shape."""
        seg = self.buffer.segment(i)
        shape = self.params[i].shape
        return [h[seg].reshape(shape) for h in self.history]

    # -- the pipeline ------------------------------------------------------------------
    def learning_rate(self, it: int | None = None) -> float:
        """base_lr times the lr policy at iteration `it` (default: the current one), the rate
        of the update that iteration makes."""
        return self.spec.base_lr * self.lr_policy(self.spec, self.iter if it is None else it)

    def step(self, n: int = 1) -> float:
        """Run `n` iterations; returns the loss of the last one."""
        for _ in range(n):
            self.iteration()
        return self.last_loss

    def iteration(self) -> float:
        """One training iteration; a non-finite loss raises DivergenceError before updating."""
        net, iter_size = self.net, self.spec.iter_size
        net.clear_param_diffs()
        loss = 0.0
        # every process says how its forward/backward went (bad data in one stops all) and
        # shares its loss and `notice` (the trainer's stop requests) with the others
        with self.world.agree() as shared:
            try:
                for _ in range(iter_size):
                    loss += net.run_forward()
                    net.backward(accumulate=True)
            except ArithmeticError as exc:  # a kernel dividing by a zero born of inf/NaN
                self.last_loss = float("nan")
                raise self.divergence(f"{type(exc).__name__} ({exc}) in forward/backward") \
                    from None
            if iter_size > 1:
                loss /= iter_size
            shared.note = (loss, self.notice)
        self.notices = [notice for _, notice in shared.notes]
        loss = sum(loss for loss, _ in shared.notes) / len(shared.notes)
        self.reduce_gradients()
        self.last_loss = loss
        if not math.isfinite(loss):
            raise self.divergence(f"the loss is {loss}")
        self.apply_update()
        self.iter += 1
        return loss

    def reduce_gradients(self) -> None:
        """Sum the gradients of every process: one Allreduce over `buffer.grad`, in place
        (nothing to do in one process). The update then divides by their number
        (`grad_scale`), so N processes of batch b update as one process of batch N b does
        (Caffe's multi-GPU rule); the loss is averaged by `iteration`."""
        if self.world.size > 1:
            self.world.allreduce(self.buffer.grad)

    @property
    def grad_scale(self) -> float:
        """What turns the gradient buffer after `reduce_gradients` into the gradient of one
        forward/backward of the global batch: 1 / (iter_size x processes)."""
        return 1.0 / (self.spec.iter_size * self.world.size)

    def apply_update(self) -> None:
        """Turn the accumulated gradients into one update of every param: the rates of the
        lr policy, 1 / iter_size, clipping, then `update_buffer` (regularize and update)."""
        spec, buffer = self.spec, self.buffer
        rates = self.learning_rate() * buffer.lr_mult
        scale = self.grad_scale
        if spec.clip_gradients >= 0:
            # the norm of the summed gradient (Caffe clips before dividing by iter_size) of the
            # global batch: the sum over processes divided by their number
            norm = math.sqrt(sum_of_squares(buffer.grad)) / self.world.size
            if norm > spec.clip_gradients:
                scale *= spec.clip_gradients / norm
        self.update_buffer(buffer.data, buffer.grad, self.history, rates, scale,
                           spec.regularization_type == "L1")

    # -- divergence ----------------------------------------------------------------------
    def check_params(self) -> None:
        """Raise DivergenceError if a param holds a NaN or an infinity (one scan)."""
        if not all_finite(self.buffer.data):
            bad = self.nonfinite_params()
            raise self.divergence(f"param {bad[0]} is not finite")

    def nonfinite_params(self) -> list[str]:
        """The qualified names of the params holding a NaN or an infinity."""
        return [p.owner for p in self.params if not all_finite(p.data.reshape(-1))]

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
        bad = self.nonfinite_params()
        if bad and not what.startswith("param "):
            where += f"; non-finite params: {', '.join(bad[:5])}"
        spec = self.spec
        tips = [f"a lower base_lr (now {spec.base_lr:g})"]
        tips.append("clip_gradients (e.g. 10)" if spec.clip_gradients < 0 else
                    f"a lower clip_gradients (now {spec.clip_gradients:g})")
        return DivergenceError(f"training diverged at iteration {self.iter}: {what}{where}; "
                               f"try {' or '.join(tips)}")

    # -- state for snapshots -------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The solver's own part of a snapshot: iter, seed, each history buffer per param as
        `history.<layer>.<param>.<k>`, and the lr policy's state when it keeps one (the
        built-in policies are closed forms of iter)."""
        out = {"iter": np.array(self.iter, np.int64), "seed": np.array(self.seed, np.int64)}
        for i, p in enumerate(self.params):
            for k, view in enumerate(self.history_of(i)):
                out[f"history.{p.owner}.{k}"] = view
        policy_state = getattr(self.lr_policy, "state", None)
        if policy_state is not None:
            for key, arr in policy_state().items():
                out[f"lr_policy.{key}"] = np.asarray(arr)
        return out

    def load_state(self, state: dict[str, np.ndarray], source: str) -> None:
        """Restore what `state()` gave (`source` names the snapshot in errors)."""
        for i, p in enumerate(self.params):
            for k, view in enumerate(self.history_of(i)):
                key = f"history.{p.owner}.{k}"
                if key not in state or state[key].shape != view.shape:
                    raise UserError(f"{source}: solver state has no history {key} of shape "
                                    f"{view.shape} (written by another solver type or net?)")
                view[...] = state[key]
        load_policy = getattr(self.lr_policy, "load_state", None)
        if load_policy is not None:
            load_policy({k[len("lr_policy."):]: v for k, v in state.items()
                         if k.startswith("lr_policy.")})
        self.iter = int(np.asarray(state["iter"]).reshape(-1)[0])
        self.seed = int(np.asarray(state["seed"]).reshape(-1)[0])

    def fingerprint(self) -> dict:
        """What a snapshot must match to be resumed by this solver: type and param shapes."""
        return {"solver": self.spec.type,
                "params": [[p.owner, list(p.shape)] for p in self.params]}
