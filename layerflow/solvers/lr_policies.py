"""Learning-rate policies: lr(iter) = base_lr * policy(iter), Caffe's closed forms.

A policy is a function `(spec, iter) -> multiplier` registered with `@register_lr_policy`,
with a `requires` tuple naming the solver keys it needs (missing ones are a user error).
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


@policy("fixed")
def fixed(spec, it):
    """lr = base_lr."""
    return 1.0


@policy("step", "gamma", "stepsize")
def step(spec, it):
    """lr = base_lr * gamma ^ floor(iter / stepsize)."""
    return spec.gamma ** (it // spec.stepsize)


@policy("inv", "gamma", "power")
def inv(spec, it):
    """lr = base_lr * (1 + gamma * iter) ^ (-power)."""
    return (1.0 + spec.gamma * it) ** (-spec.power)
