"""`layerflow schema [net|solver]`: JSON Schema (draft 2020-12) of the YAML formats, generated
from the pydantic models, so editors validate and complete model files.

In the net schema a layer entry is a `oneOf` over every registered layer type (built-in,
entry-point plugins, and those given with --plugin), discriminated by `type`; each member has
the generic keys of `config.LayerSpec` and the keys of that type's `Params`. As in layerflow
itself, `bottom`, `top`, `include`, `exclude`, `param` and `loss_weight` also take a single item
instead of a list.
"""
from __future__ import annotations

import copy
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from ..config import GENERIC_KEYS, LayerSpec, NetSpec, SolverSpec
from ..errors import UserError
from .types import _summary

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema(kind: str = "net", plugins: list[str] | None = None) -> dict:
    if kind == "net":
        return net_schema(plugins)
    if kind == "solver":
        return solver_schema(plugins)
    raise UserError(f"schema: unknown kind {kind!r}; use net or solver")


def _load(kind: str, plugins, left_out: dict[str, str]):
    """The registry of `kind` with every installed plugin loaded; a plugin type that fails to
    load is left out of the schema and recorded in `left_out` (name -> error)."""
    from ..plugins import load_plugins
    from ..registry import REGISTRIES

    load_plugins(plugins)
    registry = REGISTRIES[kind]
    left_out.update(registry.load_all())
    return registry


def _finish(out: dict, title: str, left_out: dict[str, str]) -> dict:
    """The schema document; types left out are named in its `$comment` (JSON Schema's note to
    readers), which `layerflow schema` also prints as a warning."""
    doc = {"$schema": DIALECT, **out, "title": title}
    if left_out:
        doc["$comment"] = "left out, failed to load: " + "; ".join(
            f"{name}: {error}" for name, error in sorted(left_out.items()))
    return doc


def net_schema(plugins: list[str] | None = None) -> dict:
    left_out: dict[str, str] = {}
    registry = _load("layer", plugins, left_out)
    members = []
    for name, cls in registry.items():
        own = {k: (f.annotation, f) for k, f in cls.params_model({}).model_fields.items()
               if k not in GENERIC_KEYS}
        model = create_model(
            f"{name}Layer", __base__=LayerSpec, __doc__=_summary(cls) or name,
            type=(Literal[name], Field(description=f"layer type {name} "
                                                   f"({registry.origin_of(name)})")),
            **own)
        members.append(model)
    if not members:
        raise UserError("no layer types are registered")
    layer = Annotated[Union[tuple(members)], Field(discriminator="type")] if len(members) > 1 \
        else members[0]
    net_fields = {k: (f.annotation, f) for k, f in NetSpec.model_fields.items()}
    net_fields["layers"] = (list[layer], Field(description=NetSpec.model_fields["layers"]
                                               .description))
    net_model = create_model("Net", __doc__="A layerflow net (net.yaml)", **net_fields)
    out = TypeAdapter(net_model).json_schema()
    for defn in out.get("$defs", {}).values():
        if defn.get("title", "").endswith("Layer") and "properties" in defn:
            for key in ("bottom", "top", "include", "exclude", "param", "loss_weight"):
                if key in defn["properties"]:
                    defn["properties"][key] = _single_or_list(defn["properties"][key])
    return _finish(out, "layerflow net", left_out)


def _single_or_list(prop: dict) -> dict:
    """A property whose schema is an array (maybe nullable) also accepts one item."""
    prop = copy.deepcopy(prop)
    options = prop.get("anyOf")
    if options is None:
        options = [{k: v for k, v in prop.items() if k in ("type", "items")}]
        prop = {k: v for k, v in prop.items() if k not in ("type", "items")}
    arrays = [o for o in options if o.get("type") == "array" and "items" in o]
    prop["anyOf"] = options + [a["items"] for a in arrays]
    if {"type": "null"} not in prop["anyOf"]:
        prop["anyOf"].append({"type": "null"})  # `param:` with no value is an empty list
    return prop


def solver_schema(plugins: list[str] | None = None) -> dict:
    left_out: dict[str, str] = {}
    solvers = _load("solver", plugins, left_out).names()
    policies = _load("lr_policy", None, left_out).names()
    out = SolverSpec.model_json_schema()
    props = out["properties"]
    props["type"] = {**props["type"], "enum": solvers}
    props["lr_policy"] = {**props["lr_policy"], "enum": policies}
    return _finish(out, "layerflow solver", left_out)
