"""Plugin discovery: entry points (lazy), modules and .py files named in YAML or on the CLI.

Three ways a type arrives, all through the registry's decorators:

1. an installed package declares an entry point in the group `layerflow.layers` (resp.
   `layerflow.solvers`, `layerflow.lr_policies`) whose name is the type name and whose object is
   the class (or a module whose import registers it). Only the metadata is read up front; the
   plugin's code is imported when a net first asks for that type, so a broken plugin never
   breaks `layerflow --help` or a net that does not use it;
2. `plugins:` in a net YAML: module names or .py files (relative to the YAML);
3. `--plugin MODULE_OR_FILE` on the command line (relative to the working directory).

A type name offered by two sources (two packages, a package and a file, a plugin and a
built-in) is an error naming both, raised when a net uses that name.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from .errors import UserError
from .registry import REGISTRIES, registering_from

GROUPS = {"layer": "layerflow.layers", "solver": "layerflow.solvers",
          "lr_policy": "layerflow.lr_policies"}

_INDEX: dict[str, dict[str, list[EntryPoint]]] | None = None


def refresh() -> None:
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
                key = (ep.name, ep.value, describe_dist(ep))
                if key not in seen:  # the same distribution found twice on sys.path
                    seen.add(key)
                    index[group].setdefault(ep.name, []).append(ep)
        _INDEX = index
    return _INDEX


def entry_point_names(kind: str) -> list[str]:
    return sorted(_index()[GROUPS[kind]])


def describe_dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?"
    return f"{dist.metadata['Name']} {dist.version}"


def describe(ep: EntryPoint) -> str:
    """'plugin layerflow-swish 0.1.0 (entry point layerflow.layers: Swish = pkg:Swish)'."""
    return f"plugin {describe_dist(ep)} (entry point {ep.group}: {ep.name} = {ep.value})"


def _single(kind: str, name: str) -> EntryPoint | None:
    eps = _index()[GROUPS[kind]].get(name, [])
    if len(eps) > 1:
        raise UserError(f"{kind} type \"{name}\" is declared by two plugins: "
                        f"{describe(eps[0])} and {describe(eps[1])}; uninstall one of them")
    return eps[0] if eps else None


def load_entry_point(registry, name: str) -> None:
    """Import the plugin whose entry point is called `name` in the registry's group, if any."""
    ep = _single(registry.kind, name)
    if ep is None:
        return
    origin = describe(ep)
    with registering_from(origin):
        try:
            obj = ep.load()
        except UserError as exc:
            raise UserError(f"{registry.kind} type \"{name}\" comes from {origin}, which failed "
                            f"to load: {exc}") from exc
        except Exception as exc:  # the plugin's own bug: name it, do not crash
            raise UserError(f"{registry.kind} type \"{name}\" comes from {origin}, which failed "
                            f"to load: {type(exc).__name__}: {exc}") from exc
        if name not in registry._types:
            if isinstance(obj, type) and not vars(obj).get("type"):
                registry.register(name)(obj)
            else:
                got = getattr(obj, "type", "") or getattr(obj, "__name__", repr(obj))
                raise UserError(f"{origin} loaded, but registered no {registry.kind} type "
                                f"\"{name}\" (it gave {got}); the entry point's name must be "
                                f"the type name")


def check_no_rival_entry_point(registry, name: str) -> None:
    """A type found in the registry must not also be declared by another plugin's entry point."""
    ep = _single(registry.kind, name)
    if ep is None or registry.origin.get(name, "").startswith(f"plugin {describe_dist(ep)} ("):
        return
    module = getattr(registry._types[name], "__module__", None) or ""
    if module.split(".")[0] == ep.module.split(".")[0]:
        registry.origin[name] = describe(ep)  # the package was imported directly: same source
    else:
        raise UserError(f"{registry.kind} type \"{name}\" is registered twice: by "
                        f"{registry.origin.get(name)} and by {describe(ep)}; rename or "
                        f"uninstall one of them")


def load_all(kind: str) -> dict[str, str]:
    """Load every entry point of `kind` (for listings); returns name -> error of those failing."""
    registry = REGISTRIES[kind]
    registry._load_builtins()
    errors = {}
    for name in entry_point_names(kind):
        try:
            registry.get(name)
        except UserError as exc:
            errors[name] = str(exc)
    return errors


def load_plugins(specs, base_dir: Path | None = None, context: str = "--plugin") -> None:
    for spec in specs or []:
        load_plugin(spec, base_dir if base_dir is not None else Path.cwd(), context)


def load_plugin(spec: str, base_dir: Path | None = None, context: str = "") -> None:
    """Import a plugin given as a module name or a path to a .py file (relative to base_dir)."""
    where = f"{context}: " if context else ""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path = path.resolve()
        if not path.is_file():
            raise UserError(f"{where}plugin file not found: {path}")
        mod_name = f"layerflow_plugin_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
        if mod_name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            with registering_from(f"plugin file {path}"):
                module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[mod_name]  # a fixed file can be loaded again in this process
            raise _load_error(f"{where}plugin {path}", exc) from exc
        return
    if spec in sys.modules:
        return
    try:
        with registering_from(f"plugin module {spec}"):
            importlib.import_module(spec)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name and (
                spec == exc.name or spec.startswith(exc.name + ".")):
            raise UserError(f"{where}plugin module \"{spec}\" not found (is it installed, or "
                            f"did you mean a .py file?)") from exc
        raise _load_error(f"{where}plugin {spec}", exc) from exc


def _load_error(label: str, exc: Exception) -> UserError:
    """The UserError for a plugin that failed to import: its own UserError keeps its message,
    anything else (the plugin's bug) is named with its type."""
    if isinstance(exc, UserError):
        return UserError(f"{label}: {exc}")
    return UserError(f"{label} failed to load: {type(exc).__name__}: {exc}")
