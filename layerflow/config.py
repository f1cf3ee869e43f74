"""Reading and validating the YAML files, with errors that name file:line:col and key path.

YAML is read with PyYAML's safe loader only (a `!!python/...` tag is an error, never run).
While building the Python objects we record where every key and list item was written, so a
pydantic error at `("layers", 3, "num_output")` becomes
`net.yaml:7:5: layers[3] (ip1): num_output: Input should be greater than 0`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError, a_an, did_you_mean, file_error
from .source import Path_, Source  # noqa: F401  (Source is part of this module's API)

_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map",
               yaml.SequenceNode: "tag:yaml.org,2002:seq"}
_MAX_NODES = 100_000  # aliases can make a small file expand exponentially ("billion laughs")


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _not_allowed(tag: str) -> str:
    return (f"YAML error: tag {_tag_name(tag)} is not allowed: layerflow reads YAML with safe "
            f"loading only (no Python tags)")


def _walk(node: yaml.Node, path: Path_, ctor: yaml.constructor.SafeConstructor,
          marks: dict, file: str, _active: set | None = None, _count: list | None = None) -> Any:
    """Build Python data from a composed node, recording marks of keys and list items."""
    _active = set() if _active is None else _active
    _count = [0] if _count is None else _count
    _count[0] += 1
    if _count[0] > _MAX_NODES:
        raise UserError(f"{_mark(node, file)}: YAML error: the document expands to more than "
                        f"{_MAX_NODES} values (aliases nested too deep?)")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        # the safe constructor is never asked to build a tagged collection, so check it here:
        # `!!python/object/apply:os.system [...]` must be an error, not a silently plain list
        if node.tag != _PLAIN_TAGS[type(node)]:
            raise UserError(f"{_mark(node, file)}: {_not_allowed(node.tag)}")
        if id(node) in _active:
            raise UserError(f"{_mark(node, file)}: YAML error: an alias refers to a value that "
                            f"contains it (a recursive structure)")
        _active.add(id(node))
        try:
            return _walk_collection(node, path, ctor, marks, file, _active, _count)
        finally:
            _active.discard(id(node))
    return ctor.construct_object(node, deep=True)


def _walk_collection(node, path, ctor, marks, file, _active, _count) -> Any:
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # YAML merge keys (<<)
        out = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise UserError(f"{_mark(key_node, file)}: a key must be a plain name, got {key!r}")
            if key in out:
                raise UserError(f"{_mark(key_node, file)}: {_fmt(path + (key,))}: "
                                f"key \"{key}\" appears twice")
            marks[path + (key,)] = _mark(key_node, file)
            out[key] = _walk(value_node, path + (key,), ctor, marks, file, _active, _count)
        return out
    out = []
    for i, item in enumerate(node.value):
        marks[path + (i,)] = _mark(item, file)
        out.append(_walk(item, path + (i,), ctor, marks, file, _active, _count))
    return out


def _mark(node: yaml.Node, file: str) -> str:
    m = node.start_mark
    return f"{file}:{m.line + 1}:{m.column + 1}"


def load_yaml(path: str | Path) -> Source:
    """Read a YAML file safely; every problem is a UserError naming file:line:col.

    A Caffe `.prototxt` (net or solver) is converted in memory (layerflow.caffe, the `caffe`
    extra): its Source holds the YAML data, with marks at the prototxt's lines.

    Messages name the file by its absolute path, as they name the files found from it (the
    net of a solver, the data of a net), whether it was given relative or not."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    file = str(path)
    if file.lower().endswith((".prototxt", ".pbtxt")):
        from .caffe.files import load_source

        return load_source(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(file, exc, "a YAML file") from None
    return load_yaml_text(text, file)


def load_yaml_text(text: str, file: str = "<string>") -> Source:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        marks: dict = {}
        data = _walk(node, (), loader, marks, file) if node is not None else None
        if node is not None:
            marks[()] = _mark(node, file)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        loc = f"{file}:{m.line + 1}:{m.column + 1}" if m else file
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in problem:
            tag = problem.split("for the tag")[-1].strip().strip("'")
            raise UserError(f"{loc}: {_not_allowed(tag)}") from None
        cm = exc.context_mark
        if exc.problem and exc.context and cm is not None and (m.line, m.column) != (
                cm.line, cm.column):
            # the culprit is often where the unclosed bracket or quote began
            problem += f" ({exc.context} that starts at {file}:{cm.line + 1}:{cm.column + 1})"
        likely = _likely_mistake(exc, text)
        raise UserError(f"{loc}: YAML error: {problem}"
                        + (f"; likely {likely}" if likely else "")) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{file}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UserError(f"{file}:1:1: expected a mapping of keys at the top of the file, "
                        f"got {type(data).__name__ if data is not None else 'an empty file'}")
    return Source(file, data, marks)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _likely_mistake(exc: yaml.MarkedYAMLError, text: str) -> str:
    """A plain explanation of the usual mistake behind a YAML parser error, or ''."""
    problem, context = exc.problem or "", exc.context or ""
    pm, cm = exc.problem_mark, exc.context_mark
    lines = text.splitlines()
    line_no = pm.line if pm is not None else 0
    line = lines[line_no] if line_no < len(lines) else ""
    if "'\\t'" in problem:
        return "a tab: YAML indents with spaces only, so replace the tab with spaces"
    if "quoted scalar" in context:
        return "a quote that is never closed: end the string with the quote it starts with"
    no_space = re.compile(r"^\s*(- )?[^\s:#'\"]+:[^\s:]")  # `key:value`
    no_space_text = ("a missing space after ':' on line {}: write `key: value`, with a space "
                     "after the colon")
    if "could not find expected ':'" in problem and cm is not None:
        key_line = lines[cm.line] if cm.line < len(lines) else ""
        if no_space.search(key_line):
            return no_space_text.format(cm.line + 1)
        return f"line {cm.line + 1} is not a `key: value` pair (a missing ':'?)"
    if "mapping values are not allowed here" in problem:
        above_no = next((i for i in range(line_no - 1, -1, -1)
                         if lines[i].strip() and not lines[i].lstrip().startswith("#")), None)
        above = lines[above_no] if above_no is not None else None
        if above is not None and no_space.search(above):
            return no_space_text.format(above_no + 1)
        if above is not None and _indent(line) > _indent(above) and \
                not above.rstrip().endswith(":"):
            return (f"line {line_no + 1} is indented more than the line above it, so it reads "
                    f"as the rest of that line's value: keys of one mapping must start in the "
                    f"same column")
        return ("a value that contains ': ' (quote it: name: \"a: b\"), or a comma missing "
                "between two `key: value` pairs on one line")
    if problem.startswith("expected <block end>"):
        return (f"the indentation of line {line_no + 1}: the keys of one mapping, and the "
                f"'- ' items of one list, must start in the same column")
    if "flow mapping" in context:
        if "but got ':'" in problem:
            return ("a comma missing between two `key: value` pairs, or a '}' missing at the "
                    "end of the {...}")
        return "a '}' missing at the end of the {...} (or a comma missing)"
    if "flow sequence" in context:
        return "a ']' missing at the end of the [...] (or a comma missing between its items)"
    return ""


def key_hint(key) -> str:
    """What a key that cannot be a key probably is: ' (a missing space after ':'? write
    `name: a`)' for `name:a`, likewise for `-{...}`; '' otherwise."""
    key = str(key)
    if ":" in key:
        k, _, v = key.partition(":")
        return f" (a missing space after ':'? write `{k}: {v}`)"
    if key.startswith("-"):
        return " (a missing space after '-'? a list item is written `- item`)"
    return ""


def _fmt(path: Path_, layer_names: dict[int, str] | None = None) -> str:
    """('layers', 3, 'num_output') -> 'layers[3] (ip1): num_output'."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and path[0] == "layers" and layer_names and part in layer_names:
                out += f" ({layer_names[part]})"
                if i + 1 < len(path):
                    out += ":"
        else:
            sep = " " if out.endswith(":") else ("." if out else "")
            out += f"{sep}{part}"
    return out


def _model_in(tp) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (Optional[M], list[M], M), if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _keys_at(model: type[BaseModel] | None, loc: Path_) -> list[str]:
    """The keys allowed beside the last part of `loc` (for "did you mean")."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part) if model is not None else None
        if field_info is None:
            return []
        model = _model_in(field_info.annotation)
    return list(model.model_fields) if model is not None else []


def raise_validation(err: ValidationError, src: Source, prefix: Path_ = (),
                     layer_names: dict[int, str] | None = None,
                     model: type[BaseModel] | None = None) -> None:
    """Turn a pydantic ValidationError into one UserError listing each problem with its place.

    `model` (the validated model) lets an unknown key suggest the closest known one.
    """
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds the union member ("list[str]", "str") to loc; drop those labels
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in
                                                                     ("str", "int", "float"))))
        path = prefix + loc
        # our own validators' messages read better without pydantic's label
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = (f"unknown key{key_hint(loc[-1]) or did_you_mean(str(loc[-1]), _keys_at(model, loc))}"
                   if loc else "unknown key")
        elif e["type"] == "missing":
            msg = "missing required key"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{src.locate(path)}: {_fmt(path, layer_names)}: {msg}")
    raise UserError("\n".join(lines))


# ---- the net file ----------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhaseRule(_Strict):
    """One include/exclude rule (Caffe's NetStateRule). It is met when every part given is:
    the phase, min_level <= level <= max_level, every `stage` among the net's stages and no
    `not_stage` among them."""

    phase: Optional[Literal["train", "test"]] = Field(None, description="train | test "
                                                      "(unset: any phase)")
    min_level: Optional[int] = Field(None, description="met only when level >= min_level")
    max_level: Optional[int] = Field(None, description="met only when level <= max_level")
    stage: list[str] = Field(default_factory=list, description="met only when the net has "
                                                               "all these stages (--stage)")
    not_stage: list[str] = Field(default_factory=list, description="met only when the net has "
                                                                   "none of these stages")

    @field_validator("phase", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    _stages = field_validator("stage", "not_stage", mode="before")(
        lambda cls, v: [v] if isinstance(v, str) else v)

    def met(self, phase: str, level: int = 0, stages=()) -> bool:
        """Caffe's StateMeetsRule."""
        return ((self.phase is None or self.phase == phase)
                and (self.min_level is None or level >= self.min_level)
                and (self.max_level is None or level <= self.max_level)
                and all(s in stages for s in self.stage)
                and not any(s in stages for s in self.not_stage))


class NetState(_Strict):
    """The level and stages a net is built with (Caffe's NetState, less the phase)."""

    level: int = Field(0, description="compared with the rules' min_level/max_level")
    stage: list[str] = Field(default_factory=list, description="matched by the rules' "
                                                               "stage/not_stage")

    _stages = field_validator("stage", mode="before")(
        lambda cls, v: [v] if isinstance(v, str) else v)


class ParamSpec(_Strict):
    """One entry of a layer's `param:` list (Caffe's ParamSpec)."""

    name: Optional[str] = Field(None, description="share this param with every layer naming it")
    lr_mult: float = Field(1.0, description="multiplies the solver's learning rate")
    decay_mult: float = Field(1.0, description="multiplies the solver's weight decay")


def _as_list(v):
    if v is None:
        return None
    return [v] if isinstance(v, (str, dict)) or not isinstance(v, list) else v


class LayerSpec(_Strict):
    """The keys every layer takes, whatever its type."""

    name: str = Field(description="unique name of the layer")
    type: str = Field(description="registered layer type")
    bottom: Optional[list[str]] = Field(None, description="input blobs (default: previous top)")
    top: Optional[list[str]] = Field(None, description="output blobs (default: the layer name)")
    include: Optional[list[PhaseRule]] = Field(None, description="phases the layer is in")
    exclude: Optional[list[PhaseRule]] = Field(None, description="phases the layer is not in")
    param: list[ParamSpec] = Field(default_factory=list, description="per-param lr/decay/sharing")
    loss_weight: Optional[list[float]] = Field(None, description="weight of each top in the loss")
    propagate_down: Optional[list[bool]] = Field(
        None, description="per bottom: whether backward computes its diff (Caffe's rule: "
                          "given, it decides; default: where some layer below needs it)")

    _as_lists = field_validator("bottom", "top", "include", "exclude", "loss_weight",
                                "propagate_down", mode="before")(lambda cls, v: _as_list(v))

    @field_validator("param", mode="before")
    @classmethod
    def _params(cls, v):
        return _as_list(v) if v is not None else []


GENERIC_KEYS = tuple(LayerSpec.model_fields)


@dataclass
class LayerConfig:
    """A validated layer entry: generic keys, the layer's own Params, and where it was written."""

    index: int
    spec: LayerSpec
    cls: type
    params: BaseModel
    loc: str

    @property
    def name(self) -> str:
        return self.spec.name


class NetSpec(_Strict):
    name: str = Field("net", description="name of the net")
    layers: list[dict[str, Any]] = Field(description="the layers, in order")
    plugins: list[str] = Field(default_factory=list,
                               description="modules or .py files that register layer types")
    force_backward: bool = Field(False, description="also compute diffs of the input blobs")
    dtype: Literal["float32", "float64"] = Field("float32", description="float type of blobs")


@dataclass
class NetConfig:
    name: str
    layers: list[LayerConfig]
    force_backward: bool
    dtype: str
    source: Source
    # a deploy net (`layerflow.deploy`): for each Input that replaced a data layer, what that
    # data's labels are called in data files (a CSV column, an .npz array)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.source.base_dir


def parse_net(src: Source, extra_plugins: list[str] | None = None) -> NetConfig:
    """Validate a net YAML: net keys, then each layer's generic keys, then its own Params."""
    from .plugins import load_plugin, load_plugins
    from .registry import LAYERS

    data = src.data
    if "layers" not in data and isinstance(data.get("net"), str):
        net_file = Path(src.file).parent / data["net"] if src.file != "<string>" else data["net"]
        raise UserError(f"{src.file}: this is a solver file (it names its net, `net: "
                        f"{data['net']}`), not a net; give the net instead: {net_file}")
    try:
        net = NetSpec.model_validate(data)
    except ValidationError as err:
        raise_validation(err, src, model=NetSpec)
    for i, plugin in enumerate(net.plugins):
        load_plugin(plugin, src.base_dir, context=f"{src.locate(('plugins', i))}: plugins[{i}]")
    load_plugins(extra_plugins)

    names = {i: d.get("name") for i, d in enumerate(net.layers) if isinstance(d.get("name"), str)}
    layers = []
    for i, entry in enumerate(net.layers):
        path = ("layers", i)
        for key in entry:  # `{name:a}` reads as the key "name:a": say what it is first
            if key_hint(key):
                raise UserError(f"{src.locate(path + (key,))}: {_fmt(path + (key,), names)}: "
                                f"not a key{key_hint(key)}")
        generic = {k: v for k, v in entry.items() if k in GENERIC_KEYS}
        try:
            spec = LayerSpec.model_validate(generic)
        except ValidationError as err:
            raise_validation(err, src, path, names, LayerSpec)
        try:
            cls = LAYERS.get(spec.type)
        except UserError as err:
            raise UserError(f"{src.locate(path + ('type',))}: {_fmt(path + ('type',), names)}: "
                            f"{err}") from None
        model = cls.params_model(entry)
        own_fields = set(model.model_fields)
        for key in entry:
            if key not in GENERIC_KEYS and key not in own_fields:
                hint = key_hint(key) or did_you_mean(str(key),
                                                     list(own_fields) + list(GENERIC_KEYS))
                raise UserError(
                    f"{src.locate(path + (key,))}: {_fmt(path + (key,), names)}: unknown key "
                    f"for {a_an(spec.type)} layer{hint}; its keys are: "
                    f"{', '.join(sorted(own_fields)) or '(none)'} and the generic "
                    f"{', '.join(GENERIC_KEYS)}")
        own = {k: v for k, v in entry.items() if k not in GENERIC_KEYS}
        try:
            params = model.model_validate(own)
        except ValidationError as err:
            raise_validation(err, src, path, names, model)
        if spec.include and spec.exclude:
            raise UserError(f"{src.locate(path + ('exclude',))}: {_fmt(path, names)}: give "
                            f"include or exclude, not both")
        layers.append(LayerConfig(i, spec, cls, params, src.locate(path)))
    return NetConfig(net.name, layers, net.force_backward, net.dtype, src)


# ---- the solver file -------------------------------------------------------------------

class SolverSpec(_Strict):
    """solver.yaml: Caffe's SolverParameter, flat, so a solver.prototxt translates line by line."""

    net: str = Field(description="the net YAML (relative to this file)")
    type: str = Field("SGD", description="SGD | Nesterov | AdaGrad | RMSProp | AdaDelta | Adam")
    base_lr: float = Field(0.01, gt=0, description="base learning rate")
    lr_policy: str = Field("fixed", description="fixed | step | exp | inv | multistep | poly | sigmoid")
    gamma: Optional[float] = Field(None, description="lr policy parameter")
    power: Optional[float] = Field(None, description="lr policy parameter (inv, poly)")
    stepsize: Optional[int] = Field(None, gt=0, description="lr policy parameter (step, sigmoid)")
    stepvalue: list[int] = Field(default_factory=list, description="multistep: iterations")
    max_iter: int = Field(gt=0, description="number of training iterations")
    momentum: float = Field(0.0, ge=0, description="momentum (SGD, Nesterov, Adam beta1, AdaDelta)")
    momentum2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    delta: float = Field(1e-8, gt=0, description="AdaGrad/RMSProp/AdaDelta/Adam epsilon")
    rms_decay: float = Field(0.99, ge=0, lt=1, description="RMSProp decay")
    weight_decay: float = Field(0.0, ge=0, description="regularization strength")
    regularization_type: Literal["L2", "L1"] = Field("L2", description="L2 | L1")
    clip_gradients: float = Field(-1.0, description="max global L2 norm of the gradient (<0: off)")
    iter_size: int = Field(1, ge=1, description="forward/backward passes accumulated per update")
    display: int = Field(0, ge=0, description="print the loss every N iterations (0: never)")
    average_loss: int = Field(1, ge=1, description="smooth the displayed loss over N iterations")
    test_interval: int = Field(0, ge=0, description="test every N iterations (0: never)")
    test_iter: int = Field(0, ge=0, description="batches per test (0: exactly one pass over "
                                                "the test data, from its first sample)")
    test_initialization: bool = Field(True, description="test before the first iteration")
    snapshot: int = Field(0, ge=0, description="snapshot every N iterations (0: only at the end)")
    snapshot_prefix: Optional[str] = Field(None, description="path prefix of snapshot files")
    snapshot_after_train: bool = Field(True, description="snapshot when training ends")
    snapshot_keep: int = Field(0, ge=0, description="keep only the newest N snapshots (0: all)")
    random_seed: int = Field(-1, description="seed of every random choice (-1: from the clock)")
    train_state: NetState = Field(default_factory=NetState,
                                  description="level and stages of the train net")
    test_state: NetState = Field(default_factory=NetState,
                                 description="level and stages of the test net")

    @field_validator("type", "lr_policy", mode="before")
    @classmethod
    def _strip(cls, v):
        return v.strip() if isinstance(v, str) else v


def _solvers_naming(net_src: Source) -> str:
    """', e.g. <solver>' for a YAML file beside the net whose `net:` is this net, else how to
    write one."""
    if net_src.file == "<string>":
        return ""
    net_path = Path(net_src.file)
    folder = net_path.parent
    for candidate in sorted(folder.glob("*.y*ml"))[:50]:
        if candidate.resolve() == net_path.resolve():
            continue
        try:
            data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("net"), str) and \
                (folder / data["net"]).resolve() == net_path.resolve():
            return f", e.g. {candidate}"
    return (f" (a solver.yaml with `net: {net_path.name}`, base_lr and max_iter: see "
            f"`layerflow layers SGD` for its keys)")


@dataclass
class SolverConfig:
    """A validated solver file: its keys, where each was written, and its lr policy (the
    registered function `lr_policy` names, looked up once here)."""

    spec: SolverSpec
    source: Source
    lr_policy: Any = None

    @property
    def base_dir(self) -> Path:
        return self.source.base_dir

    @property
    def net_path(self) -> Path:
        return (self.base_dir / self.spec.net).resolve()

    @property
    def snapshot_prefix(self) -> Path:
        prefix = self.spec.snapshot_prefix
        if prefix is None:
            prefix = f"snapshots/{Path(self.source.file).stem}"
        return (self.base_dir / prefix).resolve()


def parse_solver(src: Source) -> SolverConfig:
    if "layers" in src.data and "net" not in src.data:
        raise UserError(f"{src.file}: this is a net file (it has `layers:`), not a solver; "
                        f"give the solver file that names this net{_solvers_naming(src)}")
    try:
        spec = SolverSpec.model_validate(src.data)
    except ValidationError as err:
        for e in err.errors():
            if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
                key = str(e["loc"][0])
                raise UserError(f"{src.locate(e['loc'])}: {key}: unknown solver key"
                                f"{key_hint(key) or did_you_mean(key, SolverSpec.model_fields)}"
                                ) from None
        raise_validation(err, src, model=SolverSpec)
    from .registry import LR_POLICIES

    try:
        policy = LR_POLICIES.get(spec.lr_policy)
    except UserError as err:
        raise UserError(f"{src.locate(('lr_policy',))}: lr_policy: {err}") from None
    cfg = SolverConfig(spec, src, policy)
    check = getattr(policy, "check", None)  # a policy may declare the keys it needs
    if check is not None:
        check(cfg)
    return cfg
