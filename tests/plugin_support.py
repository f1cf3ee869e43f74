"""Fixtures and helpers shared by tests/plugins and tests/tools (importable because pytest puts
tests/ on sys.path: `pythonpath` in pyproject.toml).

- `clean_registry` (autouse there): every test leaves the layer/solver/lr-policy registries,
  sys.path, the entry-point table and the plugin modules as it found them;
- `fake_dist(...)`: an "installed" distribution (a folder with a .dist-info declaring entry
  points, and the plugin's modules) to put on sys.path or PYTHONPATH;
- `swish_site`: the example plugin models/plugin_example installed with pip (once per session)
  into a folder of its own, to put on sys.path or PYTHONPATH;
- `cli`: run `layerflow` in this process (typer's CliRunner) or in a subprocess;
- `validate(data, schema)`: a minimal JSON Schema checker (the keywords `layerflow schema`
  emits), so the schema tests need no dependency.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
EXAMPLE = MODELS / "plugin_example"


def model_nets() -> list[Path]:
    """Every net YAML under models/ (a YAML file with a `layers:` key)."""
    import yaml

    out = []
    for path in sorted(MODELS.glob("*/*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "layers" in data:
            out.append(path)
    return out


def model_solvers() -> list[Path]:
    import yaml

    out = []
    for path in sorted(MODELS.glob("*/*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "net" in data and "layers" not in data:
            out.append(path)
    return out


def fake_dist(root: Path, dist: str, entry_points: dict[str, dict[str, str]],
              files: dict[str, str]) -> Path:
    """A site folder holding distribution `dist` 0.1 with these entry points
    ({group: {name: "module:attr"}}) and files ({relative path: source})."""
    site = root / f"site-{dist}"
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(textwrap.dedent(text))
    return site


def use_site(site: Path) -> None:
    """Make an installed-plugin folder visible to this process (clean_registry undoes it)."""
    from layerflow.registry import refresh_entry_points

    sys.path.insert(0, str(site))
    refresh_entry_points()


def _builds_wheels_offline() -> bool:
    """Can the setuptools here build a wheel without fetching anything?"""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def install_example(base: Path) -> Path:
    """pip-install models/plugin_example (from a copy) into base/site, once; return it."""
    site = base / "site"
    if (site / "layerflow_swish").is_dir():
        return site
    src = base / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "snapshots", "tests"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
           "--disable-pip-version-check", "--target", str(site), str(src)]
    if _builds_wheels_offline():
        cmd.insert(5, "--no-build-isolation")  # offline and fast
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"pip install of the example plugin failed:\n{proc.stderr}"
    assert (site / "layerflow_swish").is_dir()
    return site


@pytest.fixture(scope="session")
def swish_site(tmp_path_factory) -> Path:
    return install_example(tmp_path_factory.getbasetemp() / "layerflow_swish_install")


@pytest.fixture(autouse=True)
def clean_registry(tmp_path_factory):
    from layerflow import registry
    from layerflow.registry import REGISTRIES, refresh_entry_points

    saved = {k: r.save() for k, r in REGISTRIES.items()}
    plugins = dict(registry._PLUGINS)  # the plugins loaded so far (unknown-type hints)
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    for k, r in REGISTRIES.items():
        r.restore(saved[k])
    registry._PLUGINS.clear()
    registry._PLUGINS.update(plugins)
    sys.path[:] = path
    temp = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("layerflow_plugin_") or file.startswith(temp):
            del sys.modules[name]
    refresh_entry_points()


def subprocess_env(*sites: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(s) for s in sites] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("COLUMNS", None)
    return env


class Cli:
    """`cli(args...)` in process; `cli.sub(args..., sites=[...])` as a real `layerflow` process."""

    def __call__(self, *args, input=None):
        from typer.testing import CliRunner

        from layerflow.cli.main import app

        result = CliRunner().invoke(app, [str(a) for a in args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)

    def sub(self, *args, sites=(), cwd=None, timeout=300):
        exe = [sys.executable, "-c", "from layerflow.cli.__main__ import main; main()"]
        proc = subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True,
                              env=subprocess_env(*sites), cwd=cwd, timeout=timeout)
        return SimpleNamespace(code=proc.returncode, out=proc.stdout, err=proc.stderr)


@pytest.fixture
def cli() -> Cli:
    return Cli()


# -- a minimal JSON Schema validator -------------------------------------------------------

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(data, schema, root=None, path="") -> list[str]:
    """The errors of `data` against `schema` (the keywords the generated schemas use)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        errors = validate(data, target, root, path)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return errors + (validate(data, rest, root, path) if rest else [])
    errors = []
    t = schema.get("type")
    if t is not None:
        ok = (isinstance(data, (int, float)) and not isinstance(data, bool) if t == "number"
              else isinstance(data, int) and not isinstance(data, bool) if t == "integer"
              else isinstance(data, TYPES[t]))
        if not ok:
            return [f"{path}: {data!r} is not of type {t}"]
    if "const" in schema and data != schema["const"]:
        errors.append(f"{path}: {data!r} != {schema['const']!r}")
    if "enum" in schema and data not in schema["enum"]:
        errors.append(f"{path}: {data!r} not in {schema['enum']}")
    for key, cmp in (("minimum", lambda a, b: a >= b), ("maximum", lambda a, b: a <= b),
                     ("exclusiveMinimum", lambda a, b: a > b),
                     ("exclusiveMaximum", lambda a, b: a < b)):
        if key in schema and isinstance(data, (int, float)) and not cmp(data, schema[key]):
            errors.append(f"{path}: {data!r} violates {key} {schema[key]}")
    if "minLength" in schema and isinstance(data, str) and len(data) < schema["minLength"]:
        errors.append(f"{path}: too short")
    if "anyOf" in schema:
        if not any(not validate(data, s, root, path) for s in schema["anyOf"]):
            errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        n = sum(not validate(data, s, root, path) for s in schema["oneOf"])
        if n != 1:
            errors.append(f"{path}: matches {n} of oneOf")
    if isinstance(data, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in data:
                errors.append(f"{path}: missing {key}")
        for key, value in data.items():
            if key in props:
                errors += validate(value, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unknown key {key}")
    if isinstance(data, list) and "items" in schema:
        for i, item in enumerate(data):
            errors += validate(item, schema["items"], root, f"{path}[{i}]")
    return errors
