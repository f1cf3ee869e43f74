"""Loading plugins named explicitly: modules or .py files from a net's `plugins:` or `--plugin`.

    plugins: [my_layers.py, my_package.layers]   # in a net YAML (paths relative to the YAML)
    layerflow train solver.yaml --plugin my_layer.py

The types such a plugin defines register through the registry's decorators while it is
imported (`registering_from` records where they came from). Installed packages declaring entry
points are found by `layerflow.registry` itself, lazily.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from pathlib import Path

from .errors import UserError
from .registry import registering_from


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
