"""Finite-difference gradient checks of a layer's backward (Caffe's GradientChecker).

    import layerflow as lf
    lf.gradcheck(MyLayer, [x], {"num_output": 3})          # in a plugin's test: raises on failure
    result = lf.check_layer(layer, bottoms)                 # a built layer: returns the table

The objective is L = sum_t sum(top_t * u_t) with a random upstream diff u_t per top (a random
scalar in [0.5, 1.5] for a 0-d top, e.g. a loss, so scaling by the loss weight is checked too).
For every element of every checked bottom and param, the analytic dL/dv from `backward` is
compared with the central difference (L(v + step) - L(v - step)) / 2 step; an element fails
when |a - n| > threshold * max(|a|, |n|, 1) (Caffe's rule). Each entry of the result reports the
worst element of one bottom or param.

Defaults (step 1e-3, threshold 1e-6) are meant for float64 layers: a class is always built in
float64; an instance is checked in its own dtype with the step as given (float32 needs about
step=1e-2, threshold=1e-2, as in Caffe).

Kinks: an element whose value lies within `kink_range` of `kink` is skipped (counted in
`skipped`), e.g. kink=0 for ReLU's input. A layer class may declare defaults with the class
attributes `kink` and `kink_range`; the arguments override them. Kinks that are not at a fixed
input value (a max over bottoms, a hinge) are avoided by drawing inputs away from them; where
the inputs cannot be chosen (real data: MAX pooling over a uniform background ties many cells),
`one_sided_kinks=True` skips a bottom element that would fail when its one-sided differences
(f(v + step) - f(v)) / step and (f(v) - f(v - step)) / step differ by more than the analytic
value differs from their mean: the objective bends within a step of it, and the analytic
gradient is one of the two slopes (a wrong gradient at a smooth point has equal one-sided
differences, and still fails).

Randomness: the state of `layer.rng` is saved before the first forward and restored before
every forward, so a layer that draws its randomness from `self.rng` (dropout) sees the same
draws in every pass.

Params a layer sets itself (`learnable=False`, BatchNorm's statistics) have no gradient and are
listed under `no_gradient`, not checked.

Besides the gradients, the check reports contract problems: backward overwriting a param's
grad instead of adding to it, forward returning a top of another shape than setup said, a
wrong number of bottom diffs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from .layer import Layer


@dataclass
class GradcheckEntry:
    """The worst element of one bottom ("bottom[0]") or param ("weight")."""

    name: str
    index: tuple[int, ...] | None  # None when no element was checked
    analytic: float
    numeric: float
    error: float  # |a - n| / max(|a|, |n|, 1)
    checked: int
    skipped: int
    note: str = ""


@dataclass
class GradcheckResult:
    """What `check_layer` found; `ok` when every entry is within threshold and no problem."""

    layer: str
    type: str
    dtype: str
    step: float
    threshold: float
    entries: list[GradcheckEntry] = field(default_factory=list)
    no_gradient: list[str] = field(default_factory=list)  # bottoms backward returned None for
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(e.error <= self.threshold for e in self.entries)

    def __getitem__(self, name: str) -> GradcheckEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def __str__(self) -> str:
        head = (f"gradcheck of layer {self.layer} ({self.type}), {self.dtype}, step {self.step:g},"
                f" threshold {self.threshold:g}: {'OK' if self.ok else 'FAILED'}")
        lines = [head, f"  {'name':<14}{'checked':>8}{'skipped':>8}  {'worst index':<16}"
                       f"{'analytic':>14}{'numeric':>14}{'error':>10}"]
        for e in self.entries:
            index = "-" if e.index is None else str(e.index)
            flag = "  <- FAIL" if e.error > self.threshold else ""
            lines.append(f"  {e.name:<14}{e.checked:>8}{e.skipped:>8}  {index:<16}"
                         f"{e.analytic:>14.6e}{e.numeric:>14.6e}{e.error:>10.2e}{flag}"
                         + (f"  ({e.note})" if e.note else ""))
        if not self.entries:
            lines.append("  (nothing to check: no bottom or param has a gradient)")
        if self.no_gradient:
            lines.append(f"  no gradient (backward returned None): {', '.join(self.no_gradient)}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def assert_ok(self) -> "GradcheckResult":
        """Raise AssertionError with the table unless `ok`; return self otherwise."""
        if not self.ok:
            raise AssertionError("\n" + str(self))
        return self


def check_layer(layer_or_cls, bottoms, params=None, *, step: float = 1e-3,
                threshold: float = 1e-6, kink: float | None = None,
                kink_range: float | None = None, seed: int = 1701, check_bottoms=None,
                top_diffs=None, setup: bool | None = None, top_names=None,
                max_checks: int | None = None, one_sided_kinks: bool = False) -> GradcheckResult:
    """Check `backward` of a layer against central differences; return the table.

    layer_or_cls: a Layer subclass, built here in float64 with `params` (a Params instance or
        a dict of its keys) and set up with the bottoms' shapes; or a layer instance, e.g. one
        from a built net, checked as it is (pass setup=True to run its setup first).
    bottoms: arrays in bottom order; they are copied, never modified. Float bottoms are
        checked, integer ones (labels) never; a float bottom that backward returns None for
        (labels stored as floats) is listed under `no_gradient`.
    check_bottoms: indices of the bottoms to check (default: every float bottom). A listed
        bottom that gets no diff fails. The others get propagate_down False.
    top_diffs: upstream diffs, one per top (default: random, drawn from `seed`).
    kink, kink_range: skip elements v with |v - kink| < kink_range (default range 10 * step).
    top_names: names of the tops when building a class (default: as many as it has).
    max_checks: check at most this many elements (drawn at random) per bottom and param.
    one_sided_kinks: skip failing bottom elements whose one-sided differences disagree (see
        the module docstring); params are always checked in full.

    A built layer is left as it was found: its param data and grads, rng state and
    propagate_down are restored and a last forward runs on the original bottoms.
    """
    if isinstance(layer_or_cls, type):
        layer = _build(layer_or_cls, params, len(bottoms), top_names)
        run_setup = True if setup is None else setup
    else:
        if params is not None:
            raise TypeError("check_layer: params are for a layer class; this layer is built")
        layer, run_setup = layer_or_cls, bool(setup)
    if kink is None:
        kink = layer.kink
    if kink_range is None:
        kink_range = layer.kink_range
    if kink_range is None:
        kink_range = 10 * step

    xs = [np.array(b, dtype=layer.dtype) if _is_float(b) else np.array(b) for b in bottoms]
    if run_setup:
        top_shapes = layer.build([x.shape for x in xs])
    if check_bottoms is None:
        wanted, explicit = [i for i, x in enumerate(xs) if _is_float(x)], False
    else:
        wanted, explicit = sorted({int(i) for i in check_bottoms}), True
        for i in wanted:
            if not 0 <= i < len(xs) or not _is_float(xs[i]):
                raise ValueError(f"check_layer: check_bottoms lists {i}, which is not a float "
                                 f"bottom of the {len(xs)} given")

    result = GradcheckResult(layer.name, type(layer).type or type(layer).__name__,
                             str(layer.dtype), step, threshold)
    saved_down = layer.propagate_down
    saved_data = {n: p.data.copy() for n, p in layer.params.items()}
    saved_grad = {n: p.grad.copy() for n, p in layer.params.items()}
    rng_state = layer.rng.bit_generator.state

    def forward():
        layer.rng.bit_generator.state = rng_state
        return layer.forward(xs)

    given, done = not isinstance(layer_or_cls, type), False  # given: a built instance
    try:
        layer.propagate_down = [i in wanted for i in range(len(xs))]
        for p in layer.params.values():
            p.grad[...] = 0
        tops = forward()
        if run_setup:
            got = [np.shape(t) for t in tops]
            if got != top_shapes:
                result.problems.append(f"forward returned tops of shapes {got}, reshape "
                                       f"returned {top_shapes}")
        ups = _upstream(tops, top_diffs, layer.dtype, seed)
        ups64 = [u.astype(np.float64) for u in ups]

        def objective(tops) -> float:
            return sum(float(np.sum(np.asarray(t, np.float64) * u)) for t, u in zip(tops, ups64))

        diffs = layer.backward([u.copy() for u in ups])
        if diffs is None or len(diffs) != len(xs):
            result.problems.append(f"backward returned {0 if diffs is None else len(diffs)} "
                                   f"diffs for {len(xs)} bottoms")
            diffs = list(diffs or []) + [None] * len(xs)
        analytic = {i: None if diffs[i] is None else np.array(diffs[i], np.float64)
                    for i in wanted}
        grads = {n: p.grad.astype(np.float64) for n, p in layer.params.items()}
        if grads:
            _check_accumulates(layer, forward, ups, grads, threshold, result)

        pick = np.random.default_rng(seed + 1)
        for i in wanted:
            name = f"bottom[{i}]"
            if analytic[i] is None:
                if explicit:
                    result.entries.append(GradcheckEntry(name, None, np.nan, np.nan, np.inf, 0,
                                                         0, "backward returned None"))
                else:
                    result.no_gradient.append(name)
                continue
            if analytic[i].shape != xs[i].shape:
                result.problems.append(f"{name}: diff of shape {analytic[i].shape} for a bottom "
                                       f"of shape {xs[i].shape}")
                continue
            result.entries.append(_compare(name, xs[i], analytic[i], forward, objective, step,
                                           kink, kink_range, max_checks, pick,
                                           threshold if one_sided_kinks else None))
        for n, p in layer.params.items():
            if not p.learnable:  # set by the layer itself (BatchNorm's statistics)
                result.no_gradient.append(f"{n} (set by the layer, not learned)")
                continue
            result.entries.append(_compare(n, p.data, grads[n], forward, objective, step, kink,
                                           kink_range, max_checks, pick))
        done = True
    finally:
        for n, p in layer.params.items():
            p.data[...] = saved_data[n]
        if given:
            layer.propagate_down = saved_down
            if done:
                forward()  # the layer's tops and caches match its original bottoms again
        for n, p in layer.params.items():
            p.grad[...] = saved_grad[n]
        layer.rng.bit_generator.state = rng_state
    return result


def gradcheck(layer_or_cls, bottoms, params=None, **kwargs) -> GradcheckResult:
    """`check_layer(...)` then `assert_ok()`: the one-liner for a plugin's tests."""
    return check_layer(layer_or_cls, bottoms, params, **kwargs).assert_ok()


def _build(cls, params, num_bottoms: int, top_names) -> Layer:
    p = params if isinstance(params, BaseModel) else cls.Params(**(params or {}))
    name = cls.type or cls.__name__
    if top_names is None:
        n = cls.num_tops if isinstance(cls.num_tops, int) else max(cls.num_tops[0], 1)
        top_names = [f"{name}_top{i}" for i in range(n)]
    return cls(name, p, dtype=np.float64, rng=np.random.default_rng(0),
               bottom_names=[f"{name}_bottom{i}" for i in range(num_bottoms)],
               top_names=list(top_names))


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def _upstream(tops, top_diffs, dtype, seed: int) -> list[np.ndarray]:
    if top_diffs is not None:
        if len(top_diffs) != len(tops):
            raise ValueError(f"check_layer: {len(top_diffs)} top_diffs for {len(tops)} tops")
        ups = [np.array(d, dtype=dtype) for d in top_diffs]
        for k, (u, t) in enumerate(zip(ups, tops)):
            if u.shape != np.shape(t):
                raise ValueError(f"check_layer: top_diffs[{k}] has shape {u.shape}, top {k} "
                                 f"has shape {np.shape(t)}")
        return ups
    rng = np.random.default_rng(seed)
    return [np.array(rng.uniform(0.5, 1.5), dtype) if np.ndim(t) == 0
            else rng.standard_normal(np.shape(t)).astype(dtype) for t in tops]


def _check_accumulates(layer, forward, ups, grads, threshold, result) -> None:
    """A second backward must add to param.grad: it then holds twice the first gradient."""
    forward()
    layer.backward([u.copy() for u in ups])
    for n, p in layer.params.items():
        twice = 2 * grads[n]
        err = np.abs(p.grad - twice) / np.maximum(np.abs(twice), 1)
        if err.size and not err.max() <= threshold:
            result.problems.append(f"backward overwrites {n}.grad instead of adding to it "
                                   f"(param gradients must accumulate)")
        p.grad[...] = 0


def _compare(name, arr, analytic, forward, objective, step, kink, kink_range, max_checks,
             pick, one_sided_threshold=None) -> GradcheckEntry:
    """Central differences over the elements of `arr` (perturbed in place, then restored).

    With `one_sided_threshold`, an element whose error exceeds it is skipped when its one-sided
    differences disagree by more than |analytic - numeric| (it sits within a step of a kink)."""
    flat = np.arange(arr.size)
    f_0 = None if one_sided_threshold is None else objective(forward())
    if max_checks is not None and arr.size > max_checks:
        flat = np.sort(pick.choice(arr.size, max_checks, replace=False))
    worst = GradcheckEntry(name, None, 0.0, 0.0, 0.0, 0, 0)
    for k in flat:
        idx = np.unravel_index(k, arr.shape)
        v = arr[idx]
        if kink is not None and abs(float(v) - kink) < kink_range:
            worst.skipped += 1
            continue
        arr[idx] = v + step
        hi, f_hi = float(arr[idx]), objective(forward())
        arr[idx] = v - step
        lo, f_lo = float(arr[idx]), objective(forward())
        arr[idx] = v
        numeric = (f_hi - f_lo) / (hi - lo)  # the steps actually taken, after rounding
        a = float(analytic[idx])
        err = abs(a - numeric) / max(abs(a), abs(numeric), 1.0)
        err = err if err == err else np.inf  # a NaN fails
        if f_0 is not None and err > one_sided_threshold:
            slopes = ((f_hi - f_0) / (hi - float(v)), (f_0 - f_lo) / (float(v) - lo))
            if abs(slopes[0] - slopes[1]) > abs(a - numeric):
                worst.skipped += 1
                continue
        if worst.index is None or err > worst.error:
            worst.index, worst.analytic, worst.numeric, worst.error = (
                tuple(int(j) for j in idx), a, numeric, err)
        worst.checked += 1
    return worst
