"""`layerflow layers [TYPE]`: the registered types, where each comes from, and one type's keys
(type, default, description) read from its pydantic `Params` model, nested models included.
"""
from __future__ import annotations

import inspect
import re
import types as _types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..errors import UserError, did_you_mean
from . import table

KINDS = ("layer", "solver", "lr_policy")


def _registry(kind: str, plugins: list[str] | None):
    from ..plugins import load_plugins
    from ..registry import REGISTRIES

    if kind not in REGISTRIES:
        raise UserError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    load_plugins(plugins)
    registry = REGISTRIES[kind]
    return registry, registry.load_all()


def _doc(obj: Any) -> str:
    """The type's own docstring (a class's is not inherited), else its module's."""
    own = obj.__doc__ if isinstance(obj.__doc__, str) and obj.__doc__.strip() else None
    return inspect.cleandoc(own or getattr(inspect.getmodule(obj), "__doc__", None) or "")


def _summary(obj: Any) -> str:
    """The first sentence of a type's docstring, whole: its first paragraph's lines up to a
    blank or indented line (a formula block), joined, cut after the first full stop; a
    colon that introduced the formulas is dropped ("AdaGrad, Caffe's form (momentum must
    be 0)")."""
    lines = []
    for line in _doc(obj).splitlines():
        if not line.strip() or line.startswith((" ", "\t")):
            break
        lines.append(line.strip())
    text = " ".join(lines)
    end = re.search(r"\.(\s|$)", text)
    text = text[:end.start() + 1] if end else text
    return text[:-1].rstrip() if text.endswith(":") else text


def _arity(n) -> str:
    if isinstance(n, int):
        return str(n)
    lo, hi = n
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def list_types(kind: str = "layer", plugins: list[str] | None = None) -> dict:
    """Every type of `kind` (built-in, entry-point plugins, --plugin ones) with its origin."""
    registry, failed = _registry(kind, plugins)
    rows = []
    for name, obj in registry.items():
        row = {"type": name, "origin": registry.origin_of(name), "summary": _summary(obj)}
        if registry.aliases_of(name):
            row["aliases"] = registry.aliases_of(name)
        if kind == "layer":
            row.update(bottoms=_arity(obj.num_bottoms), tops=_arity(obj.num_tops),
                       loss=bool(obj.is_loss))
        rows.append(row)
    errors = [{"type": n, "error": e} for n, e in sorted(failed.items())]
    return {"kind": kind, "types": rows, "failed": errors}


KIND_NAMES = {"layer": "a layer", "solver": "a solver", "lr_policy": "an lr_policy"}


def describe_type(name: str, kind: str | None = None, plugins: list[str] | None = None) -> dict:
    """One type: origin, arity, docstring and its keys (`params`) from its pydantic model.

    `kind` None: the type of that name among layers, then solvers, then lr policies (so
    `layerflow layers SGD` shows the solver). A name of another kind than the one asked is an
    error saying which kind it is.
    """
    from ..registry import REGISTRIES

    kinds = [kind] if kind is not None else list(KINDS)
    failed_all: dict[str, str] = {}
    for k in kinds:
        registry, failed = _registry(k, plugins)
        failed_all.update(failed)
        obj = registry.lookup(name)
        if obj is not None:
            kind = k
            break
    else:
        if name in failed_all:
            raise UserError(failed_all[name])
        for other, reg in REGISTRIES.items():  # `layers --kind layer SGD`: a solver
            if other not in kinds and name in reg:
                raise UserError(f"{name} is {KIND_NAMES[other]} type, not "
                                f"{KIND_NAMES[kinds[0]]} type: use `layerflow layers "
                                f"{name}` (or --kind {other})")
        if len(kinds) == 1:
            known = REGISTRIES[kinds[0]].names()
            raise UserError(f"unknown {kinds[0]} type \"{name}\"{did_you_mean(name, known)}; "
                            f"known types: {', '.join(known)}")
        of_kind = {k: REGISTRIES[k].names() for k in kinds}
        hint = did_you_mean(name, [n for names in of_kind.values() for n in names])
        for k, names in of_kind.items():  # say which kind the suggestion is
            if hint and hint.split('"')[1] in names:
                hint = hint.replace("did you mean", f"did you mean the {k} type")
                break
        raise UserError(f"unknown type \"{name}\"{hint}; "
                        + "; ".join(f"{k} types: {', '.join(names)}"
                                    for k, names in of_kind.items()))
    canonical = obj.type if kind != "lr_policy" else name
    out = {"kind": kind, "type": canonical, "origin": registry.origin_of(name),
           "doc": _doc(obj)}
    if registry.aliases_of(canonical):
        out["aliases"] = registry.aliases_of(canonical)
    if kind == "layer":
        out.update(bottoms=_arity(obj.num_bottoms), tops=_arity(obj.num_tops),
                   loss=bool(obj.is_loss), params=model_fields(obj.params_model({})))
        if obj.kink is not None:
            out["kink"] = obj.kink
    elif kind == "solver":
        from ..config import SolverSpec

        out["params"] = model_fields(SolverSpec)
    else:
        out["requires"] = list(getattr(obj, "requires", ()))
    return out


def model_fields(model: type[BaseModel], prefix: str = "", default_obj: Any = None) -> list:
    """Rows {key, type, default, description, required} for a pydantic model, nested models
    flattened as `parent.child` with the defaults of the parent's default value."""
    rows = []
    for key, f in model.model_fields.items():
        required = f.is_required()
        if default_obj is not None:
            default = getattr(default_obj, key, None)
        elif required:
            default = None
        elif f.default_factory is not None:
            default = f.default_factory()
        else:
            default = None if f.default is PydanticUndefined else f.default
        rows.append({"key": prefix + key, "type": type_name(f.annotation),
                     "default": None if required else to_plain(default),
                     "required": required and default_obj is None,
                     "description": f.description or ""})
        nested = _nested_model(f.annotation)
        if nested is not None:
            rows += model_fields(nested, prefix + key + ".",
                                 default if isinstance(default, BaseModel) else None)
    return rows


def _nested_model(ann) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if typing.get_origin(ann) in (Union, _types.UnionType):
        models = [a for a in typing.get_args(ann) if isinstance(a, type)
                  and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def type_name(ann) -> str:
    """A readable type: 'int', 'list[str] | null', 'constant | uniform | ...', 'FillerSpec'."""
    if ann is type(None):
        return "null"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, _types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def to_plain(v: Any) -> Any:
    """Defaults as JSON-able data (models as dicts of their non-default keys)."""
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json", exclude_defaults=True)
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: to_plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def yaml_flow(v: Any) -> str:
    """A value as it would be written in a net YAML: {type: xavier}, [1, 2], true, null."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {yaml_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(yaml_flow(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def _named(t: dict) -> str:
    """'SoftmaxLoss (also SoftmaxWithLoss)'."""
    return t["type"] + (f" (also {', '.join(t['aliases'])})" if t.get("aliases") else "")


def format_types(r: dict) -> str:
    if r["kind"] == "layer":
        rows = [[_named(t), t["bottoms"], t["tops"], t["origin"], t["summary"]]
                for t in r["types"]]
        text = table(["type", "bottoms", "tops", "from", "what"], rows, "lrrll")
    else:
        text = table(["type", "from", "what"],
                     [[_named(t), t["origin"], t["summary"]] for t in r["types"]], "lll")
    for f in r["failed"]:
        text += f"\nfailed to load: {f['error']}"
    return text


def format_type(r: dict) -> str:
    lines = [f"{_named(r)} ({r['kind']}), from {r['origin']}"]
    if r["kind"] == "layer":
        lines.append(f"bottoms: {r['bottoms']}, tops: {r['tops']}"
                     + (", a loss layer (loss_weight 1 on its first top)" if r["loss"] else "")
                     + (f", kink at {r['kink']}" if "kink" in r else ""))
    if r["doc"]:
        lines += ["", r["doc"]]
    if "params" in r:
        lines.append("")
        if r["params"]:
            rows = [[p["key"], p["type"], "(required)" if p["required"] else
                     yaml_flow(p["default"]), p["description"]] for p in r["params"]]
            lines.append(table(["key", "type", "default", "description"], rows, "llll"))
        else:
            lines.append("(no keys of its own)")
        if r["kind"] == "layer":
            from ..config import GENERIC_KEYS

            lines.append(f"\nplus the keys of every layer: {', '.join(GENERIC_KEYS)}")
    if r.get("requires"):
        lines.append(f"needs the solver keys: {', '.join(r['requires'])}")
    return "\n".join(lines)
