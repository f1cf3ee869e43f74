"""Registries of layer, solver and lr-policy types by name, and the plugins they find.

A type is registered with a decorator (`@register_layer`, `@register_solver`,
`@register_lr_policy`). Built-in types live in `layerflow.layers` / `layerflow.solvers` and are
imported the first time a registry is used, so the engine never names a concrete layer. A type
may also answer to aliases (Caffe's `SoftmaxWithLoss` is layerflow's `SoftmaxLoss`).

Entry points are looked up here too: an installed package declares an entry point in the group
`layerflow.layers` (resp. `layerflow.solvers`, `layerflow.lr_policies`) whose name is the type
name; only the metadata is read up front, and the plugin's code is imported the first time a
net asks for that type, so a broken plugin never breaks `layerflow --help` or a net that does
not use it. Plugins given as modules or files (`plugins:` in a net, `--plugin`) are imported by
`layerflow.plugins`, inside `registering_from`, and register through the same decorators.

Each type remembers where it came from (`origin_of`); a name claimed by two sources (two
packages, a package and a file, a plugin and a built-in) is an error naming both.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
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


# Plugins imported by name or file (`layerflow.plugins`), in load order: origin -> module, so
# an unknown type can say which plugin registered nothing, or that none was loaded.
_PLUGINS: dict[str, Any] = {}


def note_plugin(origin: str, module: Any) -> None:
    """Record that the plugin `origin` ("plugin file /x/y.py") was imported as `module`."""
    _PLUGINS[origin] = module


def _plugin_hint(name: str, kind: str) -> str:
    """For an unknown type: the loaded plugins that registered nothing (and the classes they
    forgot to register), or how to load the plugin that defines `name`."""
    empty = []
    for origin, module in _PLUGINS.items():
        if any(r._origin.get(n) == origin for r in REGISTRIES.values() for n in r._types):
            continue
        forgot = _unregistered_classes(module)
        empty.append(f"{origin} was loaded but registered no types"
                     + (f" ({', '.join(forgot)} {'is' if len(forgot) == 1 else 'are'} not "
                        f"decorated with @register_{'layer' if kind == 'layer' else kind})"
                        if forgot else ""))
    if empty:
        return "; " + "; ".join(empty)
    where = {"layer": "`plugins: [my_layers.py]` in the net, or --plugin my_layers.py",
             "source": "`plugins: [my_source.py]` in the net, or --plugin my_source.py"}.get(
        kind, "--plugin my_plugin.py")
    return (f"; if {name} comes from a plugin, load it: {where} (or install the package that "
            f"declares it)")


def _unregistered_classes(module: Any) -> list[str]:
    """Classes defined in `module` that subclass Layer, Solver or DataSource but were never
    registered (a forgotten decorator)."""
    from .layer import Layer  # lazily: the registry is imported before the layer contract

    bases: list[type] = [Layer]
    for mod, cls_name in (("layerflow.solver", "Solver"), ("layerflow.sources", "DataSource")):
        loaded = sys.modules.get(mod)  # not imported yet: none of its classes can be here
        if loaded is not None:
            bases.append(vars(loaded)[cls_name])
    registered = {id(t) for r in REGISTRIES.values() for t in r._types.values()}
    out = []
    for obj in vars(module).values():
        if isinstance(obj, type) and getattr(obj, "__module__", None) == module.__name__ and \
                issubclass(obj, tuple(bases)) and id(obj) not in registered:
            out.append(obj.__name__)
    return out


# ---- entry points ------------------------------------------------------------------------

GROUPS = {"layer": "layerflow.layers", "solver": "layerflow.solvers",
          "lr_policy": "layerflow.lr_policies", "source": "layerflow.sources",
          "onnx": "layerflow.onnx"}

_INDEX: dict[str, dict[str, list[EntryPoint]]] | None = None


def refresh_entry_points() -> None:
    """Forget the entry-point table (after installing a plugin into the running process)."""
    global _INDEX
    _INDEX = None


def _index() -> dict[str, dict[str, list[EntryPoint]]]:
    """group -> entry point name -> entry points, read once from the installed metadata."""
    global _INDEX
    if _INDEX is None:
        index: dict[str, dict[str, list[EntryPoint]]] = {g: {} for g in GROUPS.values()}
        every = entry_points()  # one scan of the installed metadata; no plugin code runs
        for group in GROUPS.values():
            seen = set()
            for ep in every.select(group=group):
                key = (ep.name, ep.value, _dist_name(ep))
                if key not in seen:  # the same distribution found twice on sys.path
                    seen.add(key)
                    index[group].setdefault(ep.name, []).append(ep)
        _INDEX = index
    return _INDEX


def _dist_name(ep: EntryPoint) -> str:
    dist = ep.dist
    return "?" if dist is None else f"{dist.metadata['Name']} {dist.version}"


def describe_entry_point(ep: EntryPoint) -> str:
    """'plugin layerflow-swish 0.1.0 (entry point layerflow.layers: Swish = pkg:Swish)'."""
    return f"plugin {_dist_name(ep)} (entry point {ep.group}: {ep.name} = {ep.value})"


# ---- the registry ----------------------------------------------------------------------

class Registry:
    """Types of one kind (layer, solver, lr policy) by name, with where each came from."""

    def __init__(self, kind: str, builtin_module: str | tuple[str, ...] | None):
        self.kind = kind
        self.group = GROUPS.get(kind, "")
        # the module(s) whose import registers the built-in types
        self._builtin_modules = (builtin_module,) if isinstance(builtin_module, str) else \
            tuple(builtin_module or ())
        self._builtins_loaded = builtin_module is None
        self._types: dict[str, Any] = {}
        self._origin: dict[str, str] = {}
        self._aliases: dict[str, str] = {}  # alias -> registered name

    def register(self, name: str | None = None, origin: str | None = None,
                 aliases: tuple[str, ...] = ()) -> Callable:
        def deco(obj):
            where = _origin_of(obj, origin)
            if not where.startswith("built-in"):
                self._load_builtins()  # a plugin must not take a built-in name unnoticed
            # a class's own `type` only: a subclass of a registered layer gets its own name
            own = vars(obj).get("type") if isinstance(obj, type) else None
            key = name or own or obj.__name__
            for k in (key, *aliases):
                old = self._types.get(self._aliases.get(k, k))
                if old is not None and old is not obj and not _same_definition(old, obj):
                    first = self._origin[self._aliases.get(k, k)]
                    if first == where:  # one file defines the name twice: say by what
                        first, where = _definition(old), f"{_definition(obj)}, both in {where}"
                    raise UserError(f"{self.kind} type \"{k}\" is registered twice: by "
                                    f"{first} and by {where}; rename one of them")
            if key not in self._types:
                self._origin[key] = where
            self._types[key] = obj
            for alias in aliases:
                self._aliases[alias] = key
            if isinstance(obj, type):
                obj.type = key
            return obj

        return deco

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            try:
                for module in self._builtin_modules:
                    importlib.import_module(module)
            except BaseException:
                self._builtins_loaded = False
                raise

    def get(self, name: str) -> Any:
        """The type registered as `name` (or aliased to it); an entry-point plugin declaring
        it is imported now. An unknown name lists the known ones and the closest."""
        self._load_builtins()
        name = self._aliases.get(name, name)
        if name not in self._types:
            self._load_entry_point(name)
        if name not in self._types and name not in self.entry_point_names():
            # an installed plugin may define it under an entry point of another name, which
            # only a listing imports: import them all (on this error path only) to say so
            self.load_all()
            if name in self._types:
                raise UserError(
                    f"{self.kind} type \"{name}\" is defined by {self._origin[name]}, whose "
                    f"entry point has another name; the entry point's name must be the type "
                    f"name ({name} = ...) for a net to find it")
        if name not in self._types:
            known = sorted(set(self._types) | set(self.entry_point_names()))
            close = did_you_mean(name, known)
            # "Relu" for "ReLU", "InnerProdcut": a typo; otherwise it may come from a plugin
            typo = close and difflib.SequenceMatcher(
                None, close.split('"')[1].lower(), name.lower()).ratio() >= 0.8
            raise UserError(
                f"unknown {self.kind} type \"{name}\"{close}; known types: {', '.join(known)}"
                + ("" if typo else _plugin_hint(name, self.kind))
            )
        self._check_no_rival_entry_point(name)
        return self._types[name]

    def lookup(self, name: str) -> Any | None:
        """The type registered as `name` or aliased to it, or None; loads no plugin."""
        self._load_builtins()
        return self._types.get(self._aliases.get(name, name))

    def names(self) -> list[str]:
        """Registered names (entry points not loaded yet are not included)."""
        self._load_builtins()
        return sorted(self._types)

    def items(self) -> list[tuple[str, Any]]:
        """(name, type) of every registered type, by name."""
        return [(name, self._types[name]) for name in self.names()]

    def origin_of(self, name: str) -> str:
        """Where a registered type came from ("built-in (...)", "plugin file ...", ...)."""
        return self._origin.get(self._aliases.get(name, name), "?")

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def unregister(self, name: str) -> None:
        """Forget `name` and its aliases (a notebook redefining a type, a test cleaning up)."""
        self._types.pop(name, None)
        self._origin.pop(name, None)
        for alias in self.aliases_of(name):
            del self._aliases[alias]

    def save(self) -> tuple:
        """The registry's contents, for `restore` (tests that register throwaway types)."""
        self._load_builtins()
        return dict(self._types), dict(self._origin), dict(self._aliases)

    def restore(self, saved: tuple) -> None:
        types, origin, aliases = saved
        self._types, self._origin, self._aliases = dict(types), dict(origin), dict(aliases)
        for name, obj in types.items():  # a test may have re-registered a class under a name
            if isinstance(obj, type):
                obj.type = name

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return self._aliases.get(name, name) in self._types

    # -- entry points of this kind ---------------------------------------------------------
    def entry_point_names(self) -> list[str]:
        return sorted(_index()[self.group]) if self.group else []

    def _single_entry_point(self, name: str) -> EntryPoint | None:
        eps = _index()[self.group].get(name, []) if self.group else []
        if len(eps) > 1:
            raise UserError(f"{self.kind} type \"{name}\" is declared by two plugins: "
                            f"{describe_entry_point(eps[0])} and {describe_entry_point(eps[1])}; "
                            f"uninstall one of them")
        return eps[0] if eps else None

    def _load_entry_point(self, name: str) -> None:
        """Import the plugin whose entry point is called `name` in this kind's group, if any."""
        ep = self._single_entry_point(name)
        if ep is None:
            return
        origin = describe_entry_point(ep)
        with registering_from(origin):
            try:
                obj = ep.load()
            except UserError as exc:
                raise UserError(f"{self.kind} type \"{name}\" comes from {origin}, which failed "
                                f"to load: {exc}") from exc
            except Exception as exc:  # the plugin's own bug: name it, do not crash
                raise UserError(f"{self.kind} type \"{name}\" comes from {origin}, which failed "
                                f"to load: {type(exc).__name__}: {exc}") from exc
            if name not in self._types:
                if isinstance(obj, type) and not vars(obj).get("type"):
                    self.register(name)(obj)
                else:
                    got = vars(obj).get("type") if isinstance(obj, type) else None
                    got = got or getattr(obj, "__name__", repr(obj))
                    raise UserError(f"{origin} loaded, but registered no {self.kind} type "
                                    f"\"{name}\" (it gave {got}); the entry point's name must "
                                    f"be the type name")

    def _check_no_rival_entry_point(self, name: str) -> None:
        """A type found in the registry must not also be declared by another plugin's entry
        point."""
        ep = self._single_entry_point(name)
        if ep is None or self._origin.get(name, "").startswith(f"plugin {_dist_name(ep)} ("):
            return
        module = getattr(self._types[name], "__module__", None) or ""
        if module.split(".")[0] == ep.module.split(".")[0]:
            self._origin[name] = describe_entry_point(ep)  # the package itself, imported directly
        else:
            raise UserError(f"{self.kind} type \"{name}\" is registered twice: by "
                            f"{self._origin.get(name)} and by {describe_entry_point(ep)}; rename "
                            f"or uninstall one of them")

    def load_all(self) -> dict[str, str]:
        """Load every entry point of this kind (for listings); returns name -> error of those
        that fail (they are left out, the rest still listed)."""
        self._load_builtins()
        errors = {}
        for name in self.entry_point_names():
            try:
                self.get(name)
            except UserError as exc:
                errors[name] = str(exc)
        return errors


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
# Caffe's sources (lmdb, hdf5, images) import their libraries only when a layer reads them
SOURCES = Registry("source", ("layerflow.sources", "layerflow.caffe.sources"))
ONNX = Registry("onnx", "layerflow.onnx.ops")  # ONNX mappings, by the layer type they export
REGISTRIES = {"layer": LAYERS, "solver": SOLVERS, "lr_policy": LR_POLICIES, "source": SOURCES,
              "onnx": ONNX}


def register_layer(name_or_cls=None, *, aliases: tuple[str, ...] = ()):
    """Register a Layer subclass under its YAML `type` name (default: the class name), and
    under `aliases` too (other names a net file may use for it, e.g. Caffe's).

    Use as `@register_layer`, `@register_layer("Name")` or
    `@register_layer(aliases=("CaffeName",))`.

    Raises UserError, naming the class and where it is defined, for anything that is not a
    `layerflow.Layer` subclass and for a class that leaves a method of the contract
    unimplemented (`Layer.unimplemented`).
    """
    name = None if isinstance(name_or_cls, type) else name_or_cls

    def deco(cls):
        _check_layer_class(cls)
        return LAYERS.register(name, aliases=aliases)(cls)

    return deco(name_or_cls) if isinstance(name_or_cls, type) else deco


def _definition(obj: Any) -> str:
    """`Name (file.py, line N)`: where a class or function is defined, as far as known."""
    label = getattr(obj, "__qualname__", repr(obj))
    try:
        file, line = inspect.getsourcefile(obj), inspect.getsourcelines(obj)[1]
        label += f" ({Path(file).name}, line {line})"
    except (TypeError, OSError):
        pass  # defined where no source is kept (an interactive session): the name alone
    return label


def _check_layer_class(cls: Any) -> None:
    from .layer import Layer  # the contract; layer.py does not import the registry back

    label = _definition(cls)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise UserError(f"@register_layer on {label}: a layer type must be a subclass of "
                        f"layerflow.Layer (or layerflow.NeuronLayer)")
    missing = cls.unimplemented()
    if missing:
        raise UserError(f"layer class {label} does not implement {', '.join(missing)}: "
                        f"see the layer contract in docs/writing-a-layer.md")


def register_solver(name_or_cls=None):
    """Register a Solver subclass under its `type` name in solver.yaml."""
    if isinstance(name_or_cls, type):
        return SOLVERS.register()(name_or_cls)
    return SOLVERS.register(name_or_cls)


def register_source(name: str, *, suffixes: tuple[str, ...] = ()):
    """Register a DataSource subclass under `name` (a Data layer's `source` or `backend`).

    `suffixes`: file suffixes that select it when `source` is a path (".npz").
    """
    def deco(cls):
        cls.name = name
        cls.suffixes = tuple(s.lower() for s in suffixes) or cls.suffixes
        return SOURCES.register(name)(cls)
    return deco


def register_lr_policy(name: str):
    """Register an lr policy function `f(spec, it) -> multiplier of base_lr` under `name`."""
    return LR_POLICIES.register(name)


def register_onnx(layer_type: str):
    """Register `f(layer, g)`, the ONNX export of layers of type `layer_type` (see
    `layerflow.onnx`): it adds the nodes that compute the layer's tops from its bottoms
    through `g` (`g.node`, `g.const`, `g.param`), and needs no `onnx` import of its own."""
    return ONNX.register(layer_type)
