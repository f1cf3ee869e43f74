"""Learning-rate policies: lr(iter) = base_lr * policy(spec, iter), Caffe's closed forms.

A policy is a function `(spec, iter) -> multiplier` registered with `@register_lr_policy`
(here through `@policy(name, *required_keys)`, which also gives it a `check(cfg)` making a
missing key a user error that names it). Every built-in policy is a closed form of the
iteration, so the iteration saved in a snapshot is its whole state (Caffe's `current_step` of
step/multistep is recomputed from it). A plugin policy that does keep state can give the
function `state() -> {name: array}` and `load_state(dict)` attributes; snapshots save them.
"""
from __future__ import annotations

import math

from layerflow.errors import UserError
from layerflow.registry import register_lr_policy


def policy(name: str, *requires: str):
    def deco(fn):
        fn.requires = requires
        fn.check = lambda cfg: _check(name, requires, cfg)
        return register_lr_policy(name)(fn)
    return deco


def _check(name, requires, cfg) -> None:
    for key in requires:
        value = getattr(cfg.spec, key)
        if value is None or value == []:
            raise UserError(f"{cfg.source.locate(('lr_policy',))}: lr_policy {name} needs "
                            f"`{key}`, which is not set")
    if name == "multistep":
        steps = cfg.spec.stepvalue
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise UserError(f"{cfg.source.locate(('stepvalue', i))}: stepvalue[{i}]: "
                                f"the iterations must increase, got {steps}")


@policy("fixed")
def fixed(spec, it):
    """lr = base_lr."""
    return 1.0


@policy("step", "gamma", "stepsize")
def step(spec, it):
    """lr = base_lr * gamma ^ floor(iter / stepsize)."""
    return spec.gamma ** (it // spec.stepsize)


@policy("exp", "gamma")
def exp(spec, it):
    """lr = base_lr * gamma ^ iter."""
    return spec.gamma ** it


@policy("inv", "gamma", "power")
def inv(spec, it):
    """lr = base_lr * (1 + gamma * iter) ^ (-power)."""
    return (1.0 + spec.gamma * it) ** (-spec.power)


@policy("multistep", "gamma", "stepvalue")
def multistep(spec, it):
    """lr = base_lr * gamma ^ (number of stepvalue entries <= iter); stepvalue increasing."""
    return spec.gamma ** sum(1 for s in spec.stepvalue if it >= s)


@policy("poly", "power")
def poly(spec, it):
    """lr = base_lr * (1 - iter / max_iter) ^ power."""
    return (1.0 - it / spec.max_iter) ** spec.power


@policy("sigmoid", "gamma", "stepsize")
def sigmoid(spec, it):
    """lr = base_lr / (1 + exp(-gamma * (iter - stepsize)))."""
    try:
        return 1.0 / (1.0 + math.exp(-spec.gamma * (it - spec.stepsize)))
    except OverflowError:  # exp(z) beyond double range: Caffe's 1 / (1 + inf) = 0
        return 0.0
