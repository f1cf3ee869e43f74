"""Plugin discovery: entry points (lazy), modules and .py files named in YAML or on the CLI.

An installed package adds types by declaring entry points in the group `layerflow.layers`
(or `layerflow.solvers`); the entry point's name is the type name and its object is the class,
or a module whose import registers types. Entry points load only when a net asks for a type
that is not registered yet, so a broken plugin never breaks a net that does not use it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from importlib.metadata import entry_points
from pathlib import Path

from .errors import UserError

GROUPS = {"layer": "layerflow.layers", "solver": "layerflow.solvers",
          "lr_policy": "layerflow.lr_policies"}


def load_entry_point(registry, name: str) -> None:
    """Load the entry point called `name` in the registry's group, if one exists."""
    group = GROUPS[registry.kind]
    for ep in entry_points(group=group):
        if ep.name != name:
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        origin = f"plugin {dist} (entry point {group}:{ep.name} = {ep.value})"
        try:
            obj = ep.load()
        except Exception as exc:  # the plugin's own bug: name it, do not crash
            raise UserError(
                f"{registry.kind} type \"{name}\" comes from {origin}, which failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(obj, type) and name not in registry._types:
            registry.register(name, origin=origin)(obj)
        if name in registry._types:
            registry.origin[name] = origin


def load_plugin(spec: str, base_dir: Path | None = None, context: str = "") -> None:
    """Import a plugin given as a module name or a path to a .py file (relative to base_dir)."""
    where = f"{context}: " if context else ""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
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
            module_spec.loader.exec_module(module)
        except UserError:
            del sys.modules[mod_name]
            raise
        except Exception as exc:
            del sys.modules[mod_name]
            raise UserError(f"{where}plugin {path} failed to load: "
                            f"{type(exc).__name__}: {exc}") from exc
        return
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise UserError(f"{where}plugin module \"{spec}\" not found "
                            f"(is it installed, or did you mean a .py file?)") from exc
        raise UserError(f"{where}plugin {spec} failed to load: {type(exc).__name__}: {exc}") from exc
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where}plugin {spec} failed to load: {type(exc).__name__}: {exc}") from exc
