"""Caffe's text files as layerflow Sources: a net .prototxt becomes the YAML data of a net, a
solver .prototxt the data of a solver (with the net(s) it names), each with marks that point
at the prototxt's lines, so every later error (validation, shapes) names the Caffe file.

Paths: Caffe opens every path (net files, data sources, mean files, snapshot_prefix) as given,
relative to the working directory of the `caffe` process. So do we, with the folder of the
prototxt tried second; converted files hold paths relative to the YAML written, so they work
from anywhere, and in-memory conversions hold absolute paths.

Solvers: layerflow's solver names one net whose layers are filtered by phase. Caffe's
`net`/`net_param` maps onto that directly; `train_net` with a different `test_net` is merged
into one net whose train layers are restricted to the train phase and test layers to the test
phase (rules with other phases, levels and stages kept). Caffe allows several test nets;
layerflow tests one: the first is kept and the others reported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..source import Source
from ..errors import UserError, file_error
from . import nets as netconv
from .proto import messages
from .text import parse, positions
from .upgrade import upgrade_net, upgrade_solver

TEXT_SUFFIXES = (".prototxt", ".pbtxt")
# SolverParameter keys with the same name and meaning in layerflow's solver YAML
SOLVER_KEYS = ("type", "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue",
               "max_iter", "momentum", "momentum2", "delta", "rms_decay", "weight_decay",
               "regularization_type", "clip_gradients", "iter_size", "display",
               "average_loss", "test_interval", "test_initialization", "snapshot",
               "snapshot_after_train", "random_seed")
# SolverParameter keys that only choose how Caffe runs: no meaning here
SOLVER_IGNORED = {"solver_mode": "layerflow runs on the CPU",
                  "device_id": "layerflow runs on the CPU",
                  "snapshot_format": "layerflow writes .safetensors snapshots",
                  "layer_wise_reduce": "one allreduce of the whole gradient buffer",
                  "debug_info": "no per-blob debug output",
                  "test_compute_loss": "`layerflow train` reports every test output",
                  "snapshot_diff": "snapshots hold the weights, not their diffs"}


def is_prototxt(path) -> bool:
    return str(path).lower().endswith(TEXT_SUFFIXES)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, exc, what) from None


def resolve(value: str, second: Path | None) -> Path:
    """A path as Caffe opens it (relative to the working directory), with `second` (the
    folder of the file that names it) tried when it is not there."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    first = Path.cwd() / p
    if not first.exists() and second is not None and (second / p).exists():
        return (second / p).resolve()
    return first.resolve() if first.exists() else first


def path_writer(out_dir: Path | None, second: Path | None) -> Callable[[str], str]:
    """Caffe path -> the path to write: relative to `out_dir`, or absolute without one."""
    def fix(value: str) -> str:
        if not value:
            return value
        p = resolve(value, second)
        out = str(p) if out_dir is None else os.path.relpath(p, out_dir.resolve())
        # ImageData's root_folder is a raw prefix (Caffe concatenates): keep its slash
        return out + "/" if value.endswith("/") and not out.endswith("/") else out
    return fix


def _detect(pos, msgs) -> str:
    """'net' or 'solver', by which message the top-level field names belong to."""
    names = pos.top_names()
    net_fields = set(msgs.NetParameter.DESCRIPTOR.fields_by_name)
    solver_fields = set(msgs.SolverParameter.DESCRIPTOR.fields_by_name)
    in_net = sum(n in net_fields for n in names)
    in_solver = sum(n in solver_fields for n in names)
    return "solver" if in_solver > in_net else "net"


def read_net(path: Path, text: str | None = None):
    """(upgraded NetParameter, origins, positions) of a net prototxt."""
    msgs = messages()
    file = str(path)
    text = _read(path, "a net .prototxt") if text is None else text
    pos = positions(text, file)
    netconv.check_types(pos)
    net = parse(text, msgs.NetParameter(), file)
    origins = upgrade_net(net, pos)
    return net, origins, pos


def _layer_prefix(pos, prefix: tuple):
    """The positions of a net inside a solver (`net_param { ... }`), re-rooted."""
    from .text import Positions

    sub = Positions(pos.file)
    n = len(prefix)
    for p, v in pos.at.items():
        if p[:n] == prefix:
            sub.at[p[n:]] = v
    for p, v in pos.values.items():
        if p[:n] == prefix:
            sub.values[p[n:]] = v
    return sub


def net_data(net, origins, pos, fix_path, warn) -> tuple[dict, dict]:
    return netconv.net_to_yaml(net, origins, pos, fix_path, warn)


def _warn_list(warnings: list[str] | None) -> Callable[[str], None]:
    """Where notes on what was ignored go: `layerflow convert` shows them; an in-memory
    conversion (training a .prototxt directly) keeps quiet about Caffe-only settings such
    as solver_mode, as the converted files would."""
    return (lambda msg: None) if warnings is None else warnings.append


def net_source(path: str | Path, *, out_dir: Path | None = None,
               warnings: list[str] | None = None) -> Source:
    """A net .prototxt as the Source of its YAML (marks at the prototxt's lines)."""
    path = Path(path)
    net, origins, pos = read_net(path)
    data, marks = net_data(net, origins, pos, path_writer(out_dir, path.resolve().parent),
                           _warn_list(warnings))
    return Source(str(path), data, marks)


# ---- solvers -----------------------------------------------------------------------------

def _restrict(data: dict, marks: dict, phase: str, start: int, out_layers: list,
              out_marks: dict) -> None:
    """Append the layers of a net used only in `phase` (a Caffe train_net or test_net) to a
    merged net, each restricted to that phase."""
    other = "test" if phase == "train" else "train"
    for i, entry in enumerate(data["layers"]):
        entry = dict(entry)
        if "include" in entry:
            rules = [dict(r, phase=phase) for r in entry["include"]
                     if r.get("phase", phase) == phase]
            if not rules:
                continue  # never in this phase
            entry["include"] = rules
        elif "exclude" in entry:
            entry["exclude"] = list(entry["exclude"]) + [{"phase": other}]
        else:
            entry["include"] = [{"phase": phase}]
        j = len(out_layers)
        out_layers.append(entry)
        for key, mark in marks.items():
            if key[:2] == ("layers", i):
                out_marks[("layers", j) + key[2:]] = mark
        for key in ("include", "exclude"):
            if key in entry:
                out_marks.setdefault(("layers", j, key), marks.get(("layers", i)))


def read_solver(path: Path, text: str | None = None):
    msgs = messages()
    file = str(path)
    text = _read(path, "a solver .prototxt") if text is None else text
    pos = positions(text, file)
    for field in ("net_param", "train_net_param"):
        netconv.check_types(pos, (field, 0))
    for i in range(64):
        if ("test_net_param", i) not in pos.at:
            break
        netconv.check_types(pos, ("test_net_param", i))
    solver = parse(text, msgs.SolverParameter(), file)
    upgrade_solver(solver, pos)
    return solver, pos


def solver_sources(path: str | Path, *, out_dir: Path | None = None,
                   warnings: list[str] | None = None):
    """A solver .prototxt as (solver Source, net Source, net file name to write or None).

    The solver's `net` key is the net file: for a net prototxt converted beside the YAML, its
    name; in memory (`out_dir` None), the absolute path of the net prototxt, or for inline or
    merged nets a name whose Source comes along as `children["net"]`.
    """
    path = Path(path)
    warn = _warn_list(warnings)
    solver, pos = read_solver(path)
    here = path.resolve().parent
    fix = path_writer(out_dir, here)

    def mark(p):
        return pos.mark(p) or f"{path}:1:1"

    # the train net: exactly one of train_net_param, train_net, net_param, net (Caffe's rule)
    given = [f for f in ("train_net_param", "train_net", "net_param", "net")
             if solver.HasField(f)]
    if len(given) != 1:
        raise UserError(f"{path}: give exactly one of train_net_param, train_net, net_param, "
                        f"net (Caffe's rule); got {', '.join(given) or 'none'}")
    if solver.HasField("net") and solver.HasField("net_param"):
        raise UserError(f"{mark(('net_param',))}: give net or net_param, not both")

    def load(field: str, index: int | None = None):
        """(Source of the net, the prototxt it came from or None)."""
        value = getattr(solver, field)
        if index is not None:
            value = value[index]
        at = (field, index if index is not None else 0)
        if field.endswith("_param"):
            sub = _layer_prefix(pos, at)
            net_msg = value
            origins = upgrade_net(net_msg, sub)
            d, m = net_data(net_msg, origins, sub, fix, warn)
            return Source(str(path), d, m), None
        net_path = resolve(value, here)
        if not net_path.exists():
            raise UserError(f"{mark(at)}: {field}: net file not found: tried {net_path}"
                            + (f" and {here / value}" if not Path(value).is_absolute()
                               and here / value != net_path else "")
                            + " (Caffe opens it relative to the working directory)")
        net_msg, origins, npos = read_net(net_path)
        d, m = net_data(net_msg, origins, npos,
                        path_writer(out_dir, net_path.parent), warn)
        return Source(str(net_path), d, m), net_path

    train_field = given[0]
    train_src, train_file = load(train_field)
    generic = train_field in ("net", "net_param")
    tests = [("test_net_param", i) for i in range(len(solver.test_net_param))] + \
            [("test_net", i) for i in range(len(solver.test_net))]
    n_tests = len(tests)
    if generic:
        n_tests = max(n_tests, len(solver.test_iter))
    if n_tests > 1:
        warn(f"{mark(('test_iter',))}: the solver defines {n_tests} test nets; layerflow "
             f"tests one: the first is kept")
    if len(solver.test_state) > 1:
        warn(f"{mark(('test_state', 1))}: test_state: only the first of "
             f"{len(solver.test_state)} is kept")

    net_src, net_file, net_name = train_src, train_file, None
    if tests:
        test_src, test_file = load(*tests[0])
        same = test_file is not None and train_file is not None and \
            test_file.resolve() == train_file.resolve()
        if not same:
            layers: list = []
            merged_marks: dict = {(): f"{path}:1:1",
                                  ("name",): train_src.marks.get(("name",), f"{path}:1:1")}
            _restrict(train_src.data, train_src.marks, "train", 0, layers, merged_marks)
            _restrict(test_src.data, test_src.marks, "test", len(layers), layers, merged_marks)
            merged_marks[("layers",)] = merged_marks.get(("layers", 0), f"{path}:1:1")
            data = {"name": train_src.data["name"], "layers": layers}
            net_src = Source(str(path), data, merged_marks)
            net_file = None
    if net_file is None:
        net_name = f"{path.stem}_net.yaml"

    data: dict = {}
    marks: dict = {(): f"{path}:1:1"}

    def put(key, value, at):
        data[key] = value
        marks[(key,)] = mark(at)

    if out_dir is not None:
        put("net", net_name or f"{net_file.stem}.yaml", (train_field,))
    else:
        put("net", str(net_file) if net_file is not None else f"{path}#net", (train_field,))
    for fd, value in solver.ListFields():
        name = fd.name
        if name in SOLVER_KEYS:
            v = netconv._value(fd, value)
            put(name, v, (name,))
        elif name == "test_iter":
            put("test_iter", int(value[0]), (name, 0))
        elif name in ("train_state", "test_state"):
            state = value if name == "train_state" else value[0]
            st = {f.name: netconv._value(f, x) for f, x in state.ListFields()
                  if f.name != "phase"}
            if st:
                put(name, st, (name,))
        elif name == "snapshot_prefix":
            put(name, fix(value), (name,))
        elif name == "weights":
            warn(f"{mark((name,))}: weights: pass them to `layerflow train --weights "
                 f"{','.join(value)}` (the solver YAML has no weights key)")
        elif name in SOLVER_IGNORED:
            warn(f"{mark((name,))}: {name}: ignored ({SOLVER_IGNORED[name]})")
    if "type" not in data:
        put("type", solver.type, ("type",))  # Caffe's default, SGD: explicit in the YAML
    if "snapshot_prefix" not in data:
        # Caffe's default: the solver file's path without its extension
        data["snapshot_prefix"] = fix(str(path.with_suffix("")))
        marks[("snapshot_prefix",)] = f"{path}:1:1"
    return Source(str(path), data, marks), net_src, net_name


def load_source(path: str | Path) -> Source:
    """A .prototxt (net or solver) as a layerflow Source, converted in memory."""
    path = Path(path)
    text = _read(path, "a .prototxt file")
    kind = _detect(positions(text, str(path)), messages())
    if kind == "net":
        return net_source(path)
    solver_src, net_src, net_name = solver_sources(path)
    if net_name is not None:
        solver_src.children["net"] = net_src
    return solver_src
