"""Registries of layer, solver and lr-policy types by name.

A type is registered with a decorator (`@register_layer`, `@register_solver`,
`@register_lr_policy`). Built-in types live in `layerflow.layers` / `layerflow.solvers` and are
imported the first time a registry is used, so the engine never names a concrete layer.
Plugins (see `layerflow.plugins`) register through the same decorators; each type remembers
where it came from (`origin`), and a name claimed by two sources is an error naming both.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, Iterator

from .errors import UserError, did_you_mean

# Where the types being registered right now come from ("plugin file x.py", ...): set by
# `layerflow.plugins` while it imports a plugin, so decorators in the plugin need no argument.
_ORIGINS: list[str] = []


@contextlib.contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Types registered inside this block are recorded as coming from `origin`."""
    _ORIGINS.append(origin)
    try:
        yield
    finally:
        _ORIGINS.pop()


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
            where = _origin_of(obj, origin)
            if not where.startswith("built-in"):
                self._load_builtins()  # a plugin must not take a built-in name unnoticed
            # a class's own `type` only: a subclass of a registered layer gets its own name
            own = vars(obj).get("type") if isinstance(obj, type) else None
            key = name or own or obj.__name__
            old = self._types.get(key)
            if old is not None and old is not obj and not _same_definition(old, obj):
                raise UserError(f"{self.kind} type \"{key}\" is registered twice: by "
                                f"{self.origin[key]} and by {where}; rename one of them")
            self._types[key] = obj
            if old is None:
                self.origin[key] = where
            if isinstance(obj, type):
                obj.type = key
            return obj

        return deco

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            try:
                importlib.import_module(self._builtin_module)
            except BaseException:
                self._builtins_loaded = False
                raise

    def get(self, name: str) -> Any:
        """The type registered as `name`; an entry-point plugin declaring it loads now."""
        from . import plugins

        self._load_builtins()
        if name not in self._types:
            plugins.load_entry_point(self, name)
        if name not in self._types:
            known = sorted(set(self._types) | set(plugins.entry_point_names(self.kind)))
            raise UserError(
                f"unknown {self.kind} type \"{name}\"{did_you_mean(name, known)}; "
                f"known types: {', '.join(known)}"
            )
        plugins.check_no_rival_entry_point(self, name)
        return self._types[name]

    def names(self) -> list[str]:
        """Registered names (entry points not loaded yet are not included)."""
        self._load_builtins()
        return sorted(self._types)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._types


def _origin_of(obj: Any, origin: str | None) -> str:
    if origin:
        return origin
    module = getattr(obj, "__module__", "?") or "?"
    if module == "layerflow" or module.startswith("layerflow."):
        return f"built-in ({module})"
    if _ORIGINS:
        return _ORIGINS[-1]
    return f"module {module} ({getattr(obj, '__qualname__', obj)})"


def _same_definition(old: Any, new: Any) -> bool:
    """The same definition run again (a re-run notebook cell, a reloaded module)."""
    return (getattr(old, "__module__", None) == getattr(new, "__module__", 0)
            and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", 0))


LAYERS = Registry("layer", "layerflow.layers")
SOLVERS = Registry("solver", "layerflow.solvers")
LR_POLICIES = Registry("lr_policy", "layerflow.solvers")
REGISTRIES = {"layer": LAYERS, "solver": SOLVERS, "lr_policy": LR_POLICIES}


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
    """Register an lr policy function `f(spec, it) -> multiplier of base_lr` under `name`."""
    return LR_POLICIES.register(name)
