"""Registries of layer, solver and lr-policy types by name.

A type is registered with a decorator (`@register_layer`, `@register_solver`,
`@register_lr_policy`). Built-in layers live in `layerflow.layers` and are imported the first
time a type is looked up, so the engine never names a concrete layer.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .errors import UserError, did_you_mean


class Registry:
    """Types of one kind (layer, solver, lr policy) by name, with where each came from."""

    def __init__(self, kind: str, builtin_module: str | None):
        self.kind = kind
        self._builtin_module = builtin_module
        self._builtins_loaded = builtin_module is None
        self._types: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def register(self, name: str | None = None, origin: str | None = None) -> Callable:
        def deco(obj):
            key = name or getattr(obj, "type", None) or obj.__name__
            if key in self._types and self._types[key] is not obj:
                raise UserError(
                    f"{self.kind} type \"{key}\" is already registered by "
                    f"{self.origin[key]}; {_origin_of(obj, origin)} registers it again"
                )
            self._types[key] = obj
            self.origin[key] = _origin_of(obj, origin)
            if isinstance(obj, type):
                obj.type = key
            return obj

        return deco

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            importlib.import_module(self._builtin_module)

    def get(self, name: str) -> Any:
        self._load_builtins()
        if name not in self._types:
            from . import plugins  # entry points load lazily, only for unknown names

            plugins.load_entry_point(self, name)
        if name not in self._types:
            known = ", ".join(sorted(self._types))
            raise UserError(
                f"unknown {self.kind} type \"{name}\"{did_you_mean(name, self._types)}; "
                f"known types: {known}"
            )
        return self._types[name]

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._types)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._types


def _origin_of(obj: Any, origin: str | None) -> str:
    if origin:
        return origin
    module = getattr(obj, "__module__", "?")
    return f"{module}.{getattr(obj, '__qualname__', obj)}"


LAYERS = Registry("layer", "layerflow.layers")
SOLVERS = Registry("solver", "layerflow.solvers")
LR_POLICIES = Registry("lr_policy", "layerflow.solvers")


def register_layer(name_or_cls=None):
    """Register a Layer subclass under its YAML `type` name (default: the class name).

    Use as `@register_layer` or `@register_layer("Name")`.
    """
    if isinstance(name_or_cls, type):
        return LAYERS.register()(name_or_cls)
    return LAYERS.register(name_or_cls)


def register_solver(name_or_cls=None):
    """Register a Solver subclass under its `type` name in solver.yaml."""
    if isinstance(name_or_cls, type):
        return SOLVERS.register()(name_or_cls)
    return SOLVERS.register(name_or_cls)


def register_lr_policy(name: str):
    """Register an lr policy function `f(cfg, it) -> multiplier of base_lr` under `name`."""
    return LR_POLICIES.register(name)
