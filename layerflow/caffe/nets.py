"""Caffe nets (NetParameter messages) to layerflow's net YAML and back.

Each Caffe layer becomes one YAML layer: the generic keys (name, type, bottom, top, param,
loss_weight, include/exclude with their NetStateRules, propagate_down) and the fields of the
sub-messages its type reads, flattened, since layerflow's layer keys carry Caffe's field names
(`convolution_param { kernel_size: 5 }` -> `kernel_size: 5`). Enums become their names, fillers
and shapes become mappings and lists. Where Caffe's default differs from layerflow's (fillers:
Caffe's default is constant 0, layerflow's InnerProduct and Convolution default to xavier), the
YAML says Caffe's value explicitly, so the converted net is the net Caffe would build. Fields
that only choose Caffe's implementation (`engine`, `force_nd_im2col`) are dropped; any other
field is carried over, and a key layerflow's layer does not have is then reported by the net's
validation at the prototxt line it came from.

Caffe's data layers map onto layerflow's Data layer and its source registry: `Data` reads the
`backend` of its data_param (lmdb, leveldb), `HDF5Data` the "hdf5" source, `ImageData` the
"images" source; transform_param's fields are the Data layer's own keys.
"""
from __future__ import annotations

from typing import Any, Callable, get_args, get_origin

import numpy as np

from ..errors import UserError

# Caffe type -> (layerflow type, the sub-messages Caffe's layer reads)
TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AbsVal": ("AbsVal", ()),
    "Accuracy": ("Accuracy", ("accuracy_param",)),
    "BatchNorm": ("BatchNorm", ("batch_norm_param",)),
    "Bias": ("Bias", ("bias_param",)),
    "BNLL": ("BNLL", ()),
    "Concat": ("Concat", ("concat_param",)),
    "ContrastiveLoss": ("ContrastiveLoss", ("contrastive_loss_param",)),
    "Convolution": ("Convolution", ("convolution_param",)),
    "Crop": ("Crop", ("crop_param",)),
    "Deconvolution": ("Deconvolution", ("convolution_param",)),
    "Dropout": ("Dropout", ("dropout_param",)),
    "Eltwise": ("Eltwise", ("eltwise_param",)),
    "ELU": ("ELU", ("elu_param",)),
    "EuclideanLoss": ("EuclideanLoss", ()),
    "Exp": ("Exp", ("exp_param",)),
    "Flatten": ("Flatten", ("flatten_param",)),
    "HingeLoss": ("HingeLoss", ("hinge_loss_param",)),
    "InfogainLoss": ("InfogainLoss", ("infogain_loss_param", "loss_param")),
    "InnerProduct": ("InnerProduct", ("inner_product_param",)),
    "Input": ("Input", ("input_param",)),
    "Log": ("Log", ("log_param",)),
    "LRN": ("LRN", ("lrn_param",)),
    "MultinomialLogisticLoss": ("MultinomialLogisticLoss", ()),
    "Pooling": ("Pooling", ("pooling_param",)),
    "Power": ("Power", ("power_param",)),
    "PReLU": ("PReLU", ("prelu_param",)),
    "ReLU": ("ReLU", ("relu_param",)),
    "Reshape": ("Reshape", ("reshape_param",)),
    "Scale": ("Scale", ("scale_param",)),
    "Sigmoid": ("Sigmoid", ("sigmoid_param",)),
    "SigmoidCrossEntropyLoss": ("SigmoidCrossEntropyLoss", ("loss_param",)),
    "Slice": ("Slice", ("slice_param",)),
    "Softmax": ("Softmax", ("softmax_param",)),
    "SoftmaxWithLoss": ("SoftmaxLoss", ("softmax_param", "loss_param")),
    "Split": ("Split", ()),
    "TanH": ("TanH", ("tanh_param",)),
    "Threshold": ("Threshold", ("threshold_param",)),
}
# Caffe's data layers -> layerflow's Data layer, reading this source (`backend`)
DATA_SOURCES = {"Data": None, "HDF5Data": "hdf5", "ImageData": "images"}
DATA_PARAMS = {"Data": "data_param", "HDF5Data": "hdf5_data_param",
               "ImageData": "image_data_param"}
# fields that choose Caffe's implementation, not the result: one answer here
DROPPED = {"engine", "force_nd_im2col", "prefetch"}
# Data: Caffe's DataLayer ignores rand_skip (deprecated, unused)
DROPPED_DATA = {"Data": {"rand_skip"}}
# path-valued fields (resolved as Caffe resolves them, written relative to the YAML)
PATH_FIELDS = {("data_param", "source"), ("hdf5_data_param", "source"),
               ("image_data_param", "source"), ("image_data_param", "root_folder"),
               ("transform_param", "mean_file"), ("infogain_loss_param", "source")}
# layer-specific defaults of filler fields when unset (Caffe's layer code, not the proto)
FILLER_DEFAULTS = {("Scale", "filler"): {"type": "constant", "value": 1.0},
                   ("PReLU", "filler"): {"type": "constant", "value": 0.25}}
GENERIC = ("name", "type", "bottom", "top", "include", "exclude", "param", "loss_weight",
           "propagate_down")


def repeated(fd) -> bool:
    """Whether a field is repeated (`is_repeated` since protobuf 6, `label` before)."""
    flag = getattr(fd, "is_repeated", None)
    return flag if flag is not None else fd.label == fd.LABEL_REPEATED


def f32(v: float) -> float:
    """A float32 field's value as the shortest decimal that reads back to it (0.1, not
    0.10000000149011612)."""
    return float(str(np.float32(v)))


def _caffe_types() -> list[str]:
    return sorted(set(TYPES) | set(DATA_SOURCES))


def _lf_type_of(caffe_type: str, where: str, name: str) -> str:
    from ..registry import LAYERS

    if caffe_type in DATA_SOURCES:
        return "Data"
    lf = TYPES.get(caffe_type, (caffe_type, ()))[0]
    if LAYERS.lookup(lf) is None:
        known = ", ".join(t for t in _caffe_types() if t in DATA_SOURCES or
                          LAYERS.lookup(TYPES[t][0]) is not None)
        raise UserError(f"{where}: layer {name}: type \"{caffe_type}\" has no layerflow "
                        f"counterpart (layerflow reads these Caffe types: {known}; a plugin "
                        f"can register more)")
    return lf


def check_types(pos, prefix: tuple = ()) -> None:
    """Before parsing: a layer whose type layerflow lacks is an error naming the type, the
    layer and its line (its parameters, e.g. python_param, would not parse otherwise)."""
    from .text import unquote
    from .upgrade import V1_TYPES

    n = len(prefix)
    for path, token in pos.values.items():
        if len(path) != n + 4 or path[:n] != prefix or path[n + 2:n + 4] != ("type", 0):
            continue
        kind, i = path[n], path[n + 1]
        if kind == "layer":
            caffe_type = unquote(token)
        elif kind == "layers":
            caffe_type = V1_TYPES.get(token, token)
        else:
            continue
        name = unquote(pos.values.get(prefix + (kind, i, "name", 0), "?"))
        _lf_type_of(caffe_type, pos.mark(path) or pos.file, name)


# ---- Caffe -> YAML -------------------------------------------------------------------------

def _accepts_list(annotation) -> bool:
    if get_origin(annotation) is list or annotation is list:
        return True
    return any(_accepts_list(a) for a in get_args(annotation))


def _value(fd, value) -> Any:
    """A protobuf field's value as YAML data (repeated fields as lists)."""
    if repeated(fd):
        return [_scalar(fd, v) for v in value]
    return _scalar(fd, value)


def _scalar(fd, v) -> Any:
    if fd.type == fd.TYPE_ENUM:
        return fd.enum_type.values_by_number[v].name
    if fd.type == fd.TYPE_FLOAT:
        return f32(v)
    if fd.type == fd.TYPE_MESSAGE:
        if fd.message_type.name == "BlobShape":
            return [int(d) for d in v.dim]
        if fd.message_type.name == "FillerParameter":
            return filler_dict(v)
        return {f.name: _value(f, x) for f, x in v.ListFields()}
    return v


def filler_dict(msg) -> dict:
    """A FillerParameter as layerflow's filler mapping, its type always written."""
    out = {"type": msg.type}
    for f, x in msg.ListFields():
        if f.name != "type":
            out[f.name] = _scalar(f, x)
    return out


def _default(fd) -> Any:
    if fd.type == fd.TYPE_ENUM:
        return fd.enum_type.values_by_number[fd.default_value].name
    if fd.type == fd.TYPE_FLOAT:
        return f32(fd.default_value)
    return fd.default_value


def _rule(msg) -> dict:
    out = {f.name: _value(f, x) for f, x in msg.ListFields()}
    if "phase" in out:
        out["phase"] = out["phase"].lower()
    return out


class _Layer:
    """One YAML layer being built: the entry and, per key, the text path it came from."""

    def __init__(self, origin: tuple):
        self.origin = origin
        self.entry: dict[str, Any] = {}
        self.from_: dict[tuple, tuple] = {}

    def put(self, key: str, value, rel: tuple, where: Callable[[tuple], str], name: str):
        if key in self.entry and self.entry[key] != value:
            raise UserError(f"{where(rel)}: layer {name}: {'.'.join(map(str, rel[::2]))} "
                            f"gives {key} a second value ({value!r}, first {self.entry[key]!r})")
        self.entry[key] = value
        self.from_[(key,)] = rel
        if isinstance(value, list):
            for i in range(len(value)):
                self.from_[(key, i)] = rel + (i,)


def net_to_yaml(net, origins: list[tuple], pos, fix_path: Callable[[str], str],
                warn: Callable[[str], None]) -> tuple[dict, dict]:
    """(YAML data, marks) of an upgraded NetParameter. `origins[i]` is the text path of layer i
    (for marks), `fix_path` turns a path as Caffe reads it into the one to write."""
    from ..registry import LAYERS

    marks: dict[tuple, str] = {}
    file = pos.file if pos is not None else "<net>"

    def mark(path: tuple) -> str:
        return (pos.mark(path) if pos is not None else None) or f"{file}:1:1"

    data: dict[str, Any] = {"name": net.name or "net"}
    marks[("name",)] = mark(("name",))
    for f in ("state", "debug_info"):
        if net.HasField(f):
            warn(f"{mark((f,))}: {f}: ignored (layerflow takes the net state from --stage and "
                 f"--level, and has no per-blob debug output)")
    if net.force_backward:
        data["force_backward"] = True
        marks[("force_backward",)] = mark(("force_backward",))
    layers = []
    for k, (lp, origin) in enumerate(zip(net.layer, origins)):
        def where(rel, origin=origin):
            return mark(origin + rel)

        layer = _Layer(origin)
        name = lp.name
        ctype = lp.type
        lf_type = _lf_type_of(ctype, where(("type", 0)), name)
        cls = LAYERS.get(lf_type)
        layer.put("name", name, ("name", 0), where, name)
        layer.put("type", lf_type, ("type", 0), where, name)
        if len(lp.bottom) or cls.num_bottoms != 0:
            # Caffe has no stack rule: a layer without bottoms has none
            layer.put("bottom", list(lp.bottom), ("bottom",), where, name)
        if len(lp.top):
            layer.put("top", list(lp.top), ("top",), where, name)
        if len(lp.loss_weight):
            layer.put("loss_weight", [f32(w) for w in lp.loss_weight], ("loss_weight",), where,
                      name)
        if len(lp.param):
            specs = []
            for i, ps in enumerate(lp.param):
                spec = {}
                if ps.HasField("name"):
                    spec["name"] = ps.name
                if ps.HasField("share_mode") and ps.share_mode != 0:
                    raise UserError(f"{where(('param', i))}: layer {name}: param "
                                    f"share_mode: PERMISSIVE is not supported (layerflow "
                                    f"shares params of equal shape only, Caffe's STRICT)")
                spec["lr_mult"] = f32(ps.lr_mult)
                spec["decay_mult"] = f32(ps.decay_mult)
                specs.append(spec)
            layer.put("param", specs, ("param",), where, name)
        for rule_kind in ("include", "exclude"):
            rules = getattr(lp, rule_kind)
            if len(rules):
                layer.put(rule_kind, [_rule(r) for r in rules], (rule_kind,), where, name)
        if len(lp.propagate_down):
            layer.put("propagate_down", list(lp.propagate_down), ("propagate_down",), where,
                      name)
        if lp.HasField("phase"):
            warn(f"{where(('phase', 0))}: layer {name}: phase: ignored (layerflow runs every "
                 f"layer in the net's phase)")
        if len(lp.blobs):
            warn(f"{where(('blobs',))}: layer {name}: blobs in a net file are ignored (load "
                 f"weights with --weights)")
        if ctype in DATA_SOURCES:
            _data_layer(lp, ctype, layer, where, name, fix_path)
        else:
            _own_keys(lp, ctype, lf_type, cls, layer, where, name, fix_path)
        if ctype == "Input" and len(lp.input_param.shape) == 1 and len(lp.top) > 1:
            # Caffe: one shape is shared by every top
            layer.entry["shape"] = layer.entry["shape"] * len(lp.top)
        i = len(layers)
        marks[("layers", i)] = mark(origin)
        for key_path, rel in layer.from_.items():
            marks[("layers", i) + key_path] = mark(origin + rel)
        layers.append(layer.entry)
    if not layers:
        raise UserError(f"{file}: the net has no layers")
    _rename_duplicates(layers, marks, warn)
    data["layers"] = layers
    marks[("layers",)] = marks[("layers", 0)]
    marks[()] = f"{file}:1:1"
    return data, marks


def _met(rule: dict, phase: str, level: int, stages: set) -> bool:
    return ((rule.get("phase") in (None, phase))
            and rule.get("min_level", level) <= level <= rule.get("max_level", level)
            and all(s in stages for s in rule.get("stage", []))
            and not any(s in stages for s in rule.get("not_stage", [])))


def _kept(entry: dict, phase: str, level: int, stages: set) -> bool:
    if "include" in entry:
        return any(_met(r, phase, level, stages) for r in entry["include"])
    return not any(_met(r, phase, level, stages) for r in entry.get("exclude", []))


def _states(layers: list[dict]):
    """The net states a net is built in: both phases, the levels at and around each bound,
    and no stage or one of the stages named (alternative data layers chosen by stage, as in
    the MNIST autoencoder, are each kept with their own stage)."""
    rules = [r for e in layers for k in ("include", "exclude") for r in e.get(k, [])]
    levels = {0}
    for r in rules:
        for k in ("min_level", "max_level"):
            if k in r:
                levels |= {r[k] - 1, r[k], r[k] + 1}
    names = sorted({s for r in rules for k in ("stage", "not_stage") for s in r.get(k, [])})
    subsets = [set()] + [{n} for n in names]
    return [(p, lv, st) for p in ("train", "test") for lv in sorted(levels) for st in subsets]


def _rename_duplicates(layers: list[dict], marks: dict, warn) -> None:
    """Caffe lets two layers share a name (the MNIST autoencoder's two "loss" layers);
    layerflow names each layer of a net once. A later layer that is in the same net as an
    earlier one of its name (some state of `_states` keeps both) gets `_<n>` appended."""
    by_name: dict[str, list[int]] = {}
    for i, e in enumerate(layers):
        by_name.setdefault(e["name"], []).append(i)
    dups = {n: idx for n, idx in by_name.items() if len(idx) > 1}
    if not dups:
        return
    states = _states(layers)
    taken = set(by_name)
    for name, idx in dups.items():
        for j, i in enumerate(idx[1:], start=1):
            clash = any(_kept(layers[i], *st) and _kept(layers[k], *st)
                        for k in idx[:j] for st in states)
            if not clash:
                continue
            n = 1
            while f"{name}_{n}" in taken:
                n += 1
            new = f"{name}_{n}"
            taken.add(new)
            layers[i]["name"] = new
            warn(f"{marks.get(('layers', i), '?')}: layer {name}: a second layer of this name "
                 f"in the same net; renamed {new} (layerflow names each layer once)")


def _sub_path(sub: str, field: str) -> tuple:
    return (sub, 0, field)


def _own_keys(lp, ctype, lf_type, cls, layer: _Layer, where, name, fix_path) -> None:
    subs = TYPES.get(ctype, (lf_type, ()))[1]
    params = cls.Params.model_fields
    for sub in subs:
        if not lp.HasField(sub):
            continue
        for fd, value in getattr(lp, sub).ListFields():
            if fd.name in DROPPED:
                continue
            v = _value(fd, value)
            if (sub, fd.name) in PATH_FIELDS:
                v = fix_path(v)
            f = params.get(fd.name)
            if isinstance(v, list) and len(v) == 1 and f is not None and \
                    not _accepts_list(f.annotation) and fd.message_type is None:
                v = v[0]
            layer.put(fd.name, v, _sub_path(sub, fd.name), where, name)
    # Caffe's defaults where layerflow's differ, written explicitly
    for key, f in params.items():
        if key in layer.entry or f.is_required():
            continue
        lf_default = f.get_default(call_default_factory=True)
        if lf_default is None:  # layerflow applies Caffe's rule for an unset key
            continue
        for sub in subs:
            fd = getattr(lp, sub).DESCRIPTOR.fields_by_name.get(key)
            if fd is None:
                continue
            if fd.message_type is not None and fd.message_type.name == "FillerParameter":
                # always explicit: Caffe's unset filler is constant 0 (Scale's 1, PReLU's
                # 0.25), layerflow's differ for some layers and may change
                caffe = FILLER_DEFAULTS.get((lf_type, key), {"type": "constant", "value": 0.0})
                layer.entry[key] = dict(caffe)
                layer.from_[(key,)] = (sub, 0)
            elif fd.has_default_value and not repeated(fd):
                caffe = _default(fd)
                mine = lf_default.value if hasattr(lf_default, "value") else lf_default
                if caffe != mine:
                    layer.entry[key] = caffe
                    layer.from_[(key,)] = (sub, 0)
            break


def _data_layer(lp, ctype, layer: _Layer, where, name, fix_path) -> None:
    sub = DATA_PARAMS[ctype]
    dropped = DROPPED | DROPPED_DATA.get(ctype, set())
    msg = getattr(lp, sub)
    for fd, value in msg.ListFields():
        if fd.name in dropped:
            continue
        v = _value(fd, value)
        if fd.name == "backend":
            v = v.lower()
        if (sub, fd.name) in PATH_FIELDS:
            v = fix_path(v)
        layer.put(fd.name, v, _sub_path(sub, fd.name), where, name)
    if ctype == "Data" and "backend" not in layer.entry:
        # Caffe's default backend is LEVELDB (trap: prototxts must say `backend: LMDB`)
        layer.entry["backend"] = "leveldb"
        layer.from_[("backend",)] = (sub, 0)
    elif DATA_SOURCES[ctype] is not None:
        layer.entry["backend"] = DATA_SOURCES[ctype]
        layer.from_[("backend",)] = ("type", 0)
    if ctype == "ImageData" and "batch_size" not in layer.entry:
        layer.entry["batch_size"] = 1  # ImageDataParameter's default
    if lp.HasField("transform_param"):
        for fd, value in lp.transform_param.ListFields():
            v = _value(fd, value)
            if fd.name == "mean_file":
                v = fix_path(v)
            if fd.name == "mean_value" and len(v) == 1:
                v = v[0]
            layer.put(fd.name, v, _sub_path("transform_param", fd.name), where, name)


# ---- YAML -> Caffe -------------------------------------------------------------------------

def _lf_to_caffe_type(lf_type: str, entry: dict) -> str:
    for ctype, (lf, _) in TYPES.items():
        if lf == lf_type:
            return ctype
    if lf_type == "Data":
        backend = entry.get("backend")
        for ctype, source in DATA_SOURCES.items():
            if source is not None and backend == source:
                return ctype
        return "Data"
    raise UserError(f"type {lf_type} has no Caffe counterpart (Caffe types layerflow writes: "
                    f"{', '.join(sorted(TYPES))}, Data, HDF5Data, ImageData)")


def _set(msg, fd_name: str, value, where: str) -> None:
    fd = msg.DESCRIPTOR.fields_by_name[fd_name]
    if repeated(fd):
        values = value if isinstance(value, list) else [value]
        target = getattr(msg, fd_name)
        for v in values:
            if fd.type == fd.TYPE_MESSAGE:
                _fill(target.add(), fd, v, where)
            else:
                target.append(_to_proto(fd, v, where))
    elif fd.type == fd.TYPE_MESSAGE:
        _fill(getattr(msg, fd_name), fd, value, where)
    else:
        setattr(msg, fd_name, _to_proto(fd, value, where))


def _fill(sub, fd, value, where: str) -> None:
    if fd.message_type.name == "BlobShape":
        sub.dim.extend(int(d) for d in value)
        return
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    for k, v in value.items():
        sfd = sub.DESCRIPTOR.fields_by_name.get(k)
        if sfd is None:
            raise UserError(f"{where}: {fd.name}.{k} has no Caffe counterpart")
        if k != "type" and sfd.has_default_value and _same(_default(sfd), v):
            continue  # the proto's default: leave unset
        _set(sub, k, v, where)


def _to_proto(fd, v, where: str):
    if fd.type == fd.TYPE_ENUM:
        if isinstance(v, str):
            ev = fd.enum_type.values_by_name.get(v.upper())
            if ev is None:
                raise UserError(f"{where}: {fd.name}: {v!r} is not one of Caffe's "
                                f"{', '.join(fd.enum_type.values_by_name)}")
            return ev.number
        return int(v)
    if fd.type in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return float(v)
    if fd.type == fd.TYPE_BOOL:
        return bool(v)
    if fd.type == fd.TYPE_STRING:
        return str(v)
    return int(v)


def explicit_bottoms(config) -> list[list[str]]:
    """Each layer's bottoms with layerflow's stack rule spelled out (Caffe has none): a layer
    without `bottom` that takes bottoms reads the first top of the layer before it in the
    file (in each phase, as long as the phases' layers name their tops alike)."""
    out, prev = [], None
    for lc in config.layers:
        if lc.spec.bottom is not None:
            out.append(list(lc.spec.bottom))
        elif lc.cls.num_bottoms != 0 and prev is not None:
            out.append([prev])
        else:
            out.append([])
        tops = lc.spec.top if lc.spec.top is not None else [lc.name]
        prev = tops[0] if tops else prev
    return out


def yaml_to_net(config, msgs, path_out: Callable[[str], str]):
    """A NetParameter of a validated NetConfig, every key of every layer written, and Caffe's
    defaults made explicit where layerflow's differ (an InnerProduct's xavier filler)."""
    net = msgs.NetParameter()
    net.name = config.name
    if config.force_backward:
        net.force_backward = True
    bottoms = explicit_bottoms(config)
    for lc, bottom in zip(config.layers, bottoms):
        where = f"{lc.loc}: layers[{lc.index}] ({lc.name})"
        lp = net.layer.add()
        spec = lc.spec
        params = lc.params.model_dump()
        try:
            ctype = _lf_to_caffe_type(lc.cls.type, params)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        lp.name = spec.name
        lp.type = ctype
        lp.bottom.extend(bottom)
        lp.top.extend(spec.top if spec.top is not None else [spec.name])
        if spec.loss_weight is not None:
            lp.loss_weight.extend(spec.loss_weight)
        for ps in spec.param:
            p = lp.param.add()
            if ps.name:
                p.name = ps.name
            p.lr_mult = ps.lr_mult
            p.decay_mult = ps.decay_mult
        for kind in ("include", "exclude"):
            for rule in getattr(spec, kind) or []:
                r = getattr(lp, kind).add()
                for k, v in rule.model_dump().items():
                    if v is None or v == []:
                        continue
                    _set(r, k, v.upper() if k == "phase" else v, where)
        if spec.propagate_down is not None:
            lp.propagate_down.extend(spec.propagate_down)
        if ctype in DATA_SOURCES:
            _data_to_proto(lp, ctype, params, where, path_out)
            continue
        subs = TYPES.get(ctype, (lc.cls.type, ()))[1]
        if lc.cls.type == "Data":
            subs = ()
        for key, value in params.items():
            if value is None:
                continue
            target = None
            for sub in subs:
                if key in getattr(lp, sub).DESCRIPTOR.fields_by_name:
                    target = sub
                    break
            default = lc.cls.Params.model_fields[key].get_default(call_default_factory=True)
            if hasattr(default, "model_dump"):
                default = default.model_dump()
            if target is None:
                if value == default:
                    continue
                raise UserError(f"{where}: {key}: {value!r} has no counterpart in Caffe's "
                                f"{ctype} layer")
            msg = getattr(lp, target)
            fd = msg.DESCRIPTOR.fields_by_name[key]
            if fd.message_type is None and not repeated(fd) and \
                    fd.has_default_value and _same(_default(fd), value):
                continue  # Caffe's default: leave the field unset
            if (target, key) in PATH_FIELDS:
                value = path_out(value)
            _set(msg, key, value, where)
    return net


def _same(caffe_default, value) -> bool:
    if isinstance(caffe_default, float) or isinstance(value, float):
        try:
            return f32(caffe_default) == f32(value)
        except (TypeError, ValueError):
            return False
    return caffe_default == value


def _data_to_proto(lp, ctype, params: dict, where: str, path_out) -> None:
    if ctype == "Data" and str(params.get("backend")).lower() not in ("lmdb", "leveldb"):
        raise UserError(f"{where}: source {params.get('source')!r} has no Caffe counterpart: "
                        f"Caffe's data layers read lmdb, leveldb, hdf5 and image lists "
                        f"(backend: lmdb, hdf5, images)")
    sub = getattr(lp, DATA_PARAMS[ctype])
    tp = lp.transform_param
    for key, value in params.items():
        if value is None or (key == "backend" and ctype != "Data"):
            continue
        if key in ("source", "mean_file", "root_folder"):
            value = path_out(value)
        if key == "backend":
            if value.upper() not in ("LMDB", "LEVELDB"):
                raise UserError(f"{where}: backend: source type {value!r} has no Caffe "
                                f"counterpart (Caffe reads lmdb, leveldb, hdf5 and image lists)")
            value = value.upper()
        if key in sub.DESCRIPTOR.fields_by_name and key not in ("scale", "mean_file",
                                                                 "crop_size", "mirror"):
            _set(sub, key, value, where)
        elif key in tp.DESCRIPTOR.fields_by_name:
            fd = tp.DESCRIPTOR.fields_by_name[key]
            if fd.has_default_value and _same(_default(fd), value):
                continue
            _set(tp, key, value, where)
        elif key == "shuffle" and not value:
            continue
        else:
            raise UserError(f"{where}: {key}: {value!r} has no counterpart in Caffe's {ctype} "
                            f"layer")
