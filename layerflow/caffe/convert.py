"""`layerflow convert SRC -o DST`: between Caffe's files and layerflow's, chosen by suffix.

    net.prototxt      -> net.yaml         a net (legacy V0/V1 nets and `input:` fields upgraded)
    solver.prototxt   -> solver.yaml      plus the net it names, written beside it (`net:` then
                                          names that file)
    net.yaml          -> net.prototxt     a net, back to Caffe (YAML -> prototxt -> YAML gives
                                          the same net)
    solver.yaml       -> solver.prototxt  a solver (its net is converted separately)
    X.caffemodel      -> X.safetensors    weights, keys <layer>.<param>
    X.safetensors     -> X.caffemodel     weights, with --net naming the net they belong to
    mean.binaryproto  -> mean.npy         a blob (a mean file), and back

Every file is checked before it is written: a converted net is validated as layerflow will
read it, its errors pointing at the prototxt's lines.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError
from ..source import Source


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in ((".prototxt", "prototxt"), (".pbtxt", "prototxt"),
                         (".yaml", "yaml"), (".yml", "yaml"), (".caffemodel", "caffemodel"),
                         (".safetensors", "safetensors"), (".binaryproto", "binaryproto"),
                         (".npy", "npy")):
        if name.endswith(suffix):
            return kind
    raise UserError(f"{path}: unknown file type; convert reads and writes .prototxt, .yaml, "
                    f".caffemodel, .safetensors, .binaryproto and .npy")


def _dump(data: dict, header: str, flow=None) -> bytes:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, width=100)
    return (header + text).encode("utf-8")


def _write(path: Path, data: bytes) -> None:
    from ..snapshot import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def _validate_net(src: Source, warnings: list[str]) -> None:
    """Check a converted net as layerflow will read it. A Data layer reading a source type
    layerflow has not registered (yet) is reported, not fatal: its YAML is still right."""
    from ..config import parse_net
    from ..registry import SOURCES

    data = src.data
    kept = []
    for i, entry in enumerate(data["layers"]):
        backend = entry.get("backend")
        if entry.get("type") == "Data" and isinstance(backend, str) and backend not in SOURCES:
            warnings.append(f"{src.locate(('layers', i, 'backend'))}: layer {entry['name']}: "
                            f"layerflow has no {backend!r} data source installed, so this net "
                            f"will not build until one is registered (sources: "
                            f"{', '.join(SOURCES.names())})")
            continue
        kept.append(i)
    view = dict(data, layers=[data["layers"][i] for i in kept])
    marks = {}
    for new, old in enumerate(kept):
        for key, mark in src.marks.items():
            if key[:2] == ("layers", old):
                marks[("layers", new) + key[2:]] = mark
    marks.update({k: v for k, v in src.marks.items() if k[:1] != ("layers",) or len(k) == 1})
    if view["layers"]:
        parse_net(Source(src.file, view, marks))


def convert(src: str | Path, dst: str | Path, *, net: str | Path | None = None) -> dict:
    """Convert `src` into `dst` (kinds by suffix, see the module docstring). Returns what was
    written ("written": [paths]) and "warnings"."""
    src, dst = Path(src), Path(dst)
    a, b = _kind(src), _kind(dst)
    warnings: list[str] = []
    if not src.exists():
        raise UserError(f"{src}: file not found")
    if (a, b) == ("prototxt", "yaml"):
        written = _prototxt_to_yaml(src, dst, warnings)
    elif (a, b) == ("yaml", "prototxt"):
        written = _yaml_to_prototxt(src, dst)
    elif (a, b) == ("caffemodel", "safetensors"):
        from ..snapshot import save_weights
        from .weights import caffemodel_arrays

        arrays, notes = caffemodel_arrays(src)
        warnings += notes
        if not arrays:
            raise UserError(f"{src}: no layer of the model carries weights layerflow reads")
        save_weights(dst, arrays, {"converted_from": src.name})
        written = [dst]
    elif (a, b) == ("safetensors", "caffemodel"):
        if net is None:
            raise UserError("converting weights to a .caffemodel needs the net they belong "
                            "to: --net NET.yaml (or .prototxt)")
        from ..config import load_yaml, parse_net
        from ..snapshot import load_weights
        from .weights import write_caffemodel

        write_caffemodel(load_weights(src), parse_net(load_yaml(net)), dst)
        written = [dst]
    elif (a, b) == ("binaryproto", "npy"):
        from .weights import read_binaryproto

        arr = read_binaryproto(src)
        import io

        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        _write(dst, buf.getvalue())
        written = [dst]
    elif (a, b) == ("npy", "binaryproto"):
        from .weights import write_binaryproto

        try:
            arr = np.load(src, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{src}: not a readable .npy file ({exc})") from None
        write_binaryproto(arr, dst)
        written = [dst]
    else:
        raise UserError(f"cannot convert {a} ({src}) to {b} ({dst}); see `layerflow convert "
                        f"--help` for the supported pairs")
    return {"written": [str(p) for p in written], "warnings": warnings}


def _prototxt_to_yaml(src: Path, dst: Path, warnings: list[str]) -> list[Path]:
    from .files import _detect, net_source, solver_sources
    from .proto import messages
    from .text import positions

    out_dir = dst.resolve().parent
    kind = _detect(positions(src.read_text(encoding="utf-8"), str(src)), messages())
    head = f"# converted by `layerflow convert` from {src.name}\n"
    if kind == "net":
        net_src = net_source(src, out_dir=out_dir, warnings=warnings)
        _validate_net(net_src, warnings)
        _write(dst, _dump(net_src.data, head))
        return [dst]
    solver_src, net_src, net_name = solver_sources(src, out_dir=out_dir, warnings=warnings)
    net_path = dst.parent / solver_src.data["net"]
    if net_path.resolve() == dst.resolve():
        raise UserError(f"{dst}: the solver's net would be written to the same file; name "
                        f"the output differently")
    _validate_net(net_src, warnings)
    from ..config import parse_solver

    parse_solver(solver_src)
    _write(net_path, _dump(net_src.data, f"# converted by `layerflow convert` from "
                                         f"{Path(net_src.file).name}\n"))
    _write(dst, _dump(solver_src.data, head, flow=False))
    return [dst, net_path]


def _yaml_to_prototxt(src: Path, dst: Path) -> list[Path]:
    from google.protobuf import text_format

    from ..config import load_yaml, parse_net, parse_solver
    from .nets import yaml_to_net
    from .proto import messages, require_protobuf

    require_protobuf("converting to a .prototxt")
    msgs = messages()
    source = load_yaml(src)
    out_dir = dst.resolve().parent
    base = source.base_dir

    def path_out(value: str) -> str:
        p = Path(value).expanduser()
        p = p if p.is_absolute() else (base / p)
        import os

        return os.path.relpath(p.resolve(), out_dir)

    head = f"# converted by `layerflow convert` from {src.name}\n"
    if "layers" in source.data:
        net = yaml_to_net(parse_net(source), msgs, path_out)
        _write(dst, (head + text_format.MessageToString(net)).encode("utf-8"))
        return [dst]
    cfg = parse_solver(source)
    sp = msgs.SolverParameter()
    spec = cfg.spec.model_dump()
    sp.net = path_out(spec.pop("net"))
    for key, value in spec.items():
        if value is None or key in ("snapshot_keep",):
            continue
        if key in ("train_state", "test_state"):
            state = sp.train_state if key == "train_state" else sp.test_state.add()
            state.phase = msgs.Phase.values_by_name["TRAIN" if key == "train_state"
                                                    else "TEST"].number
            state.level = value["level"]
            state.stage.extend(value["stage"])
            continue
        if key == "test_iter":
            if value:
                sp.test_iter.append(value)
            continue
        if key == "snapshot_prefix":
            value = path_out(value)
        fd = sp.DESCRIPTOR.fields_by_name[key]
        if getattr(fd, "is_repeated", False):
            getattr(sp, key).extend(value)
        else:
            setattr(sp, key, value)
    sp.solver_mode = sp.CPU
    _write(dst, (head + text_format.MessageToString(sp)).encode("utf-8"))
    return [dst]
