"""Caffe's legacy formats upgraded as Caffe's own upgrade code does (upgrade_proto.cpp):

    V0 (`layers { layer { type: "conv" kernelsize: 5 } }`) -> V1: padding layers folded into
        the conv/pool layer that reads them; fields distributed to the sub-parameters
    V1 data layers: scale/mean_file/crop_size/mirror moved into transform_param
    V1 (`layers { type: CONVOLUTION blobs_lr: 1 }`) -> `layer { type: "Convolution" param {} }`
    `input:` with `input_shape`/`input_dim` -> an Input layer at the front
    BatchNorm with three `param` entries -> their lr_mult and decay_mult set to 0
    solver `solver_type: ADAM` -> `type: "Adam"`

Each upgraded layer remembers where it was written (`origins[i]`, a path of the text index of
`text.positions`), so errors about it still point at its prototxt line.
"""
from __future__ import annotations

from ..errors import UserError

# V1's LayerType enum -> the type string (reference section 8.4)
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V0's type strings -> V1's enum names (reference section 8.5)
V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "innerproduct": "INNER_PRODUCT",
    "infogain_loss": "INFOGAIN_LOSS", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def _where(pos, path) -> str:
    return (pos.mark(path) if pos is not None else None) or (pos.file if pos else "<net>")


# ---- V0 -> V1 --------------------------------------------------------------------------

def _v0_to_v1(v0, v1, pos, path) -> None:
    """Fill the V1 layer `v1` from its nested V0 `layer` (Caffe's UpgradeV0LayerParameter)."""
    t = v0.type
    if t not in V0_TYPES:
        raise UserError(f"{_where(pos, path + ('type', 0))}: layer {v0.name or '?'}: unknown V0 "
                        f"layer type \"{t}\"; known: {', '.join(sorted(V0_TYPES))}")
    v1.name = v0.name
    v1.type = v1.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_name[V0_TYPES[t]].number
    v1.blobs.extend(v0.blobs)
    v1.blobs_lr.extend(v0.blobs_lr)
    v1.weight_decay.extend(v0.weight_decay)
    has = v0.HasField
    if t in ("conv", "innerproduct"):
        sub = v1.convolution_param if t == "conv" else v1.inner_product_param
        if has("num_output"):
            sub.num_output = v0.num_output
        if has("biasterm"):
            sub.bias_term = v0.biasterm
        if has("weight_filler"):
            sub.weight_filler.CopyFrom(v0.weight_filler)
        if has("bias_filler"):
            sub.bias_filler.CopyFrom(v0.bias_filler)
        if t == "conv":
            if has("pad"):
                sub.pad.append(v0.pad)
            if has("kernelsize"):
                sub.kernel_size.append(v0.kernelsize)
            if has("group"):
                sub.group = v0.group
            if has("stride"):
                sub.stride.append(v0.stride)
    elif t == "pool":
        sub = v1.pooling_param
        if has("pool"):
            sub.pool = v0.pool
        if has("kernelsize"):
            sub.kernel_size = v0.kernelsize
        if has("stride"):
            sub.stride = v0.stride
        if has("pad"):
            sub.pad = v0.pad
    elif t == "lrn":
        for f in ("local_size", "alpha", "beta", "k"):
            if has(f):
                setattr(v1.lrn_param, f, getattr(v0, f))
    elif t == "dropout":
        if has("dropout_ratio"):
            v1.dropout_param.dropout_ratio = v0.dropout_ratio
    elif t in ("data", "images", "hdf5_data"):
        sub = {"data": v1.data_param, "images": v1.image_data_param,
               "hdf5_data": v1.hdf5_data_param}[t]
        if has("source"):
            sub.source = v0.source
        if has("batchsize"):
            sub.batch_size = v0.batchsize
        if t != "hdf5_data":
            if has("rand_skip"):
                sub.rand_skip = v0.rand_skip
            tp = v1.transform_param
            if has("scale"):
                tp.scale = v0.scale
            if has("meanfile"):
                tp.mean_file = v0.meanfile
            if has("cropsize"):
                tp.crop_size = v0.cropsize
            if has("mirror"):
                tp.mirror = v0.mirror
        if t == "images":
            if has("shuffle_images"):
                sub.shuffle = v0.shuffle_images
            if has("new_height"):
                sub.new_height = v0.new_height
            if has("new_width"):
                sub.new_width = v0.new_width
    elif t == "concat":
        if has("concat_dim"):
            v1.concat_param.concat_dim = v0.concat_dim
    elif t == "hdf5_output":
        if has("hdf5_output_param"):
            v1.hdf5_output_param.CopyFrom(v0.hdf5_output_param)


def upgrade_v0(net, pos) -> list[tuple]:
    """V0 layers -> V1 in place; padding layers folded into their consumer. Returns the origin
    path of each remaining V1 layer."""
    origins = [("layers", i) for i in range(len(net.layers))]
    if not any(layer.HasField("layer") for layer in net.layers):
        return origins
    padding: dict[str, tuple] = {}  # top blob of a padding layer -> (its bottom, pad)
    kept = []
    for i, old in enumerate(net.layers):
        v0 = old.layer
        path = ("layers", i, "layer", 0)
        if v0.type == "padding":
            if len(old.bottom) != 1 or len(old.top) != 1:
                raise UserError(f"{_where(pos, path)}: padding layer {v0.name}: needs one "
                                f"bottom and one top")
            padding[old.top[0]] = (old.bottom[0], v0.pad)
            continue
        new = type(old)()
        _v0_to_v1(v0, new, pos, path)
        for j, b in enumerate(old.bottom):
            if b in padding:
                if v0.type not in ("conv", "pool") or len(old.bottom) != 1:
                    raise UserError(f"{_where(pos, path)}: layer {v0.name}: reads the padding "
                                    f"layer's output {b}, which only a conv or pool layer "
                                    f"with one input may do")
                b, pad = padding[b]
                if v0.type == "conv":
                    del new.convolution_param.pad[:]
                    new.convolution_param.pad.append(pad)
                else:
                    new.pooling_param.pad = pad
            new.bottom.append(b)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        kept.append((new, ("layers", i)))
    del net.layers[:]
    for new, _ in kept:
        net.layers.add().CopyFrom(new)
    return [o for _, o in kept]


# ---- V1 data transform, V1 -> V2 -----------------------------------------------------

def upgrade_v1_data_transform(net) -> None:
    """Move scale/mean_file/crop_size/mirror of V1 data layers into transform_param."""
    for layer in net.layers:
        for sub_name in ("data_param", "image_data_param", "window_data_param"):
            if not layer.HasField(sub_name):
                continue
            sub = getattr(layer, sub_name)
            for f in ("scale", "mean_file", "crop_size", "mirror"):
                if f in sub.DESCRIPTOR.fields_by_name and sub.HasField(f):
                    setattr(layer.transform_param, f, getattr(sub, f))
                    sub.ClearField(f)


def upgrade_v1(net, layer_cls, pos, origins) -> list[tuple]:
    """`layers` (V1) -> `layer`; returns the origins of the new layers."""
    if not len(net.layers):
        return [("layer", i) for i in range(len(net.layer))]
    if len(net.layer):
        raise UserError(f"{_where(pos, ('layer', 0))}: the net has both `layer` and legacy "
                        f"`layers` entries; Caffe refuses to upgrade such a net: use one form")
    enum = net.layers[0].DESCRIPTOR.fields_by_name["type"].enum_type
    new_layers = []
    for v1, origin in zip(net.layers, origins):
        new = layer_cls()
        new.name = v1.name
        new.bottom.extend(v1.bottom)
        new.top.extend(v1.top)
        new.include.extend(v1.include)
        new.exclude.extend(v1.exclude)
        new.blobs.extend(v1.blobs)
        new.loss_weight.extend(v1.loss_weight)
        if v1.HasField("type"):
            new.type = V1_TYPES[enum.values_by_number[v1.type].name]
        n = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
        for i in range(n):
            spec = new.param.add()
            if i < len(v1.param):
                spec.name = v1.param[i]
            if i < len(v1.blob_share_mode):
                spec.share_mode = v1.blob_share_mode[i]
            if i < len(v1.blobs_lr):
                spec.lr_mult = v1.blobs_lr[i]
            if i < len(v1.weight_decay):
                spec.decay_mult = v1.weight_decay[i]
        for fd, value in v1.ListFields():
            if fd.name.endswith("_param") and fd.name in new.DESCRIPTOR.fields_by_name:
                getattr(new, fd.name).CopyFrom(value)
        new_layers.append(new)
    del net.layers[:]
    for new in new_layers:
        net.layer.add().CopyFrom(new)
    return list(origins)


def upgrade_input(net, origins) -> list[tuple]:
    """`input` + `input_shape`/`input_dim` -> an Input layer named "input" at the front."""
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if has_shape or has_dim:
        layer = type(net.layer.add())()
        del net.layer[-1]
        layer.name = "input"
        layer.type = "Input"
        for i, name in enumerate(net.input):
            layer.top.append(name)
            shape = layer.input_param.shape.add()
            if has_shape:
                if i < len(net.input_shape):
                    shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        rest = [type(layer)() for _ in net.layer]
        for r, l in zip(rest, net.layer):
            r.CopyFrom(l)
        del net.layer[:]
        net.layer.add().CopyFrom(layer)
        for r in rest:
            net.layer.add().CopyFrom(r)
        origins = [("input",)] + list(origins)
    net.ClearField("input")
    net.ClearField("input_dim")
    net.ClearField("input_shape")
    return origins


def upgrade_batch_norm(net) -> None:
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


def upgrade_net(net, pos=None) -> list[tuple]:
    """Upgrade a NetParameter in place (Caffe's UpgradeNetAsNeeded order); returns the origin
    path of each layer in `net.layer`."""
    layer_cls = type(net.layer.add())
    del net.layer[-1]
    origins = upgrade_v0(net, pos)
    upgrade_v1_data_transform(net)
    origins = upgrade_v1(net, layer_cls, pos, origins)
    origins = upgrade_input(net, origins)
    upgrade_batch_norm(net)
    return origins


def upgrade_solver(solver, pos=None) -> None:
    """`solver_type` enum -> `type` string; both given is an error (as in Caffe)."""
    if not solver.HasField("solver_type"):
        return
    name = solver.DESCRIPTOR.fields_by_name["solver_type"].enum_type.values_by_number[
        solver.solver_type].name
    if solver.HasField("type"):
        raise UserError(f"{_where(pos, ('solver_type',))}: give `type` or the legacy "
                        f"`solver_type`, not both")
    solver.type = SOLVER_TYPES[name]
    solver.ClearField("solver_type")
