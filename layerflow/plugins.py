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
import keyword
import sys
import traceback
import zlib
from pathlib import Path

from .errors import UserError
from .registry import note_plugin, registering_from


def load_plugins(specs, base_dir: Path | None = None, context: str = "--plugin") -> None:
    for spec in specs or []:
        load_plugin(spec, base_dir if base_dir is not None else Path.cwd(), context)


def load_plugin(spec: str, base_dir: Path | None = None, context: str = "") -> None:
    """Import a plugin given as a module name or a path to a .py file (relative to base_dir).

    A file is imported under the module name a normal import would give it: its stem, or
    `package.sub.stem` when its folder (and the ones above) hold an `__init__.py`, so that
    `from my_layer import MyLayer` in a script and `--plugin my_layer.py` load one module.
    That matters beyond double registration: Numba's on-disk cache (`cache=True`) records
    the module name a file was first imported under and imports it when loading the cache.
    A module already imported from the same file is reused. Any failure to import is a
    UserError naming the plugin.
    """
    where = f"{context}: " if context else ""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path = path.resolve()
        if not path.is_file():
            raise UserError(f"{where}plugin file not found: {path}")
        with registering_from(f"plugin file {path}"):
            try:
                module = _import_file(path)
            except Exception as exc:
                raise _load_error(f"{where}plugin {path}", exc) from exc
        note_plugin(f"plugin file {path}", module)
        return
    if spec in sys.modules:
        note_plugin(f"plugin module {spec}", sys.modules[spec])
        return
    try:
        with registering_from(f"plugin module {spec}"):
            note_plugin(f"plugin module {spec}", importlib.import_module(spec))
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name and (
                spec == exc.name or spec.startswith(exc.name + ".")):
            raise UserError(f"{where}plugin module \"{spec}\" not found (is it installed, or "
                            f"did you mean a .py file?)") from exc
        raise _load_error(f"{where}plugin {spec}", exc) from exc


def module_name(path: Path) -> str:
    """The name `import` gives the file `path`: its stem, prefixed by the packages it sits in
    (each folder upwards that holds an `__init__.py`)."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def _imported_from(path: Path):
    """The module already imported from the file `path`, if any."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and _same_file(file, path):
            return module
    return None


def _same_file(file: str, path: Path) -> bool:
    try:
        return Path(file).resolve() == path
    except (OSError, RuntimeError):
        return False


def _import_file(path: Path):
    """Import the file `path` as a normal import would name it (`module_name`), its packages
    first; reuse a module already imported from it. When that name is taken by another file
    (imported, or first on sys.path: a file named like a library must not shadow it), the
    file gets a name of its own instead (its types may then clash by name with the other's).
    """
    found = _imported_from(path)
    if found is not None:
        return found
    name = module_name(path)
    parts = name.split(".")
    # the folder of each package part, outermost first, and the file itself
    files = [path.parents[len(parts) - 2 - k] / "__init__.py" for k in range(len(parts) - 1)]
    files.append(path)
    if not _free(parts, files):
        name = f"layerflow_plugin_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
        if name in sys.modules:
            return sys.modules[name]
        return _exec(name, path)
    for k in range(len(parts) - 1):
        package = ".".join(parts[:k + 1])
        if package not in sys.modules:
            _exec(package, files[k], [str(files[k].parent)])
    if name in sys.modules:  # a package's __init__ imported it
        return sys.modules[name]
    module = _exec(name, path)
    if len(parts) > 1:
        setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)
    return module


def _free(parts: list[str], files: list[Path]) -> bool:
    """Whether the dotted name `parts` can be given to these files: every part a plain name,
    and each of its packages (and the module) either imported from the same file or, for the
    top level, not found on sys.path under another file."""
    if not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        return False
    for k, file in enumerate(files):
        module = sys.modules.get(".".join(parts[:k + 1]))
        if module is not None:
            if not _same_file(getattr(module, "__file__", None) or "", file):
                return False
        elif k == 0:
            try:
                spec = importlib.util.find_spec(parts[0])
            except (ImportError, ValueError):
                spec = None
            if spec is not None and not (spec.origin and _same_file(spec.origin, file)):
                return False
    return True


def _exec(name: str, path: Path, search: list[str] | None = None):
    """Create the module `name` from the file `path` (a package if `search` is given), put it
    in sys.modules and run it; on failure it is removed, so a fixed file loads later."""
    spec = importlib.util.spec_from_file_location(name, path,
                                                  submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load_error(label: str, exc: Exception) -> UserError:
    """The UserError for a plugin that failed to import: its own UserError keeps its message,
    anything else (the plugin's bug) is named with its type and where it happened: the
    plugin's line that was running (the first frame past the import machinery), and the line
    that raised when that is another (a library the plugin called). A SyntaxError names its
    own line already."""
    if isinstance(exc, UserError):
        return UserError(f"{label}: {exc}")
    where = ""
    if not isinstance(exc, SyntaxError):
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not f.filename.startswith("<frozen")
                  and Path(f.filename).resolve().parent != _HERE]
        if frames:
            first, last = frames[0], frames[-1]
            where = f" ({Path(first.filename).name}, line {first.lineno}"
            if (last.filename, last.lineno) != (first.filename, first.lineno):
                where += f"; raised in {last.filename}, line {last.lineno}"
            where += ")"
    return UserError(f"{label} failed to load: {type(exc).__name__}: {exc}{where}")


_HERE = Path(__file__).resolve().parent  # layerflow's own frames (this module's) are skipped
