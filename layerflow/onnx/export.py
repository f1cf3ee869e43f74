"""The exporter: walks a deploy net in forward order and asks each layer type's registered
mapping for the nodes of that layer (see the package docstring for the mapping API).

Values are named after blobs: a graph input keeps its blob's name, a graph output too, and the
versions in between of an in-place blob are `<name>@<layer index>` (the net's blob keys), so the
graph stays in SSA form. Params become initializers named `<layer>.<param>` (a shared param
once); constants are `<layer>/c<k>`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

MIN_OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("exporting to ONNX needs the onnx package: pip install "
                        "'layerflow[onnx]'") from None
    return onnx


class LayerGraph:
    """What a mapping sees of the graph being built, for one layer (see `layerflow.onnx`)."""

    def __init__(self, builder: "_GraphBuilder", layer, bottoms: list[str], tops: list[str],
                 bottom_shapes: list[tuple[int, ...]], top_shapes: list[tuple[int, ...]]):
        self._b = builder
        self.layer = layer
        self.bottoms = bottoms
        self.tops = tops
        self.bottom_shapes = bottom_shapes
        self.top_shapes = top_shapes
        self.opset = builder.opset
        self.dtype = builder.dtype

    def node(self, op: str, inputs: list[str], outputs: list[str] | int | None = None,
             **attrs) -> Any:
        """Add node `op` (ONNX's operator name) reading `inputs`; writes `outputs` (names), or
        that many fresh values (an int; default 1). Returns the output name, or the list of
        them when there are several. An input name "" is an omitted optional input; an
        attribute given as a numpy array becomes a tensor attribute."""
        if outputs is None or isinstance(outputs, int):
            outputs = [self._b.fresh(f"{self.layer.name}/{op}") for _ in range(outputs or 1)]
        self._b.nodes.append((op, list(inputs), list(outputs), attrs, self.layer.name))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def const(self, value, dtype=None) -> str:
        """An initializer holding `value`: floats in the net's dtype (or `dtype`), integers
        as int64. Returns its name."""
        arr = np.asarray(value)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind in "iub":
            arr = arr.astype(np.int64)
        else:
            arr = arr.astype(self.dtype)
        name = self._b.fresh(f"{self.layer.name}/c")
        self._b.initializers[name] = arr
        return name

    def param(self, name: str, shape: tuple[int, ...] | None = None) -> str:
        """The initializer of the layer's param `name` (its data, reshaped to `shape` if
        given). A param shared by several layers is one initializer when not reshaped."""
        p = self.layer.params[name]
        if shape is None:
            if id(p) not in self._b.param_names:
                self._b.param_names[id(p)] = self._b.fresh(p.owner)
                self._b.initializers[self._b.param_names[id(p)]] = np.array(p.data)
            return self._b.param_names[id(p)]
        return self.const(np.asarray(p.data).reshape(shape))

    def shape_const(self, dims) -> str:
        """An int64 shape for Reshape (0 copies an input dim, -1 is inferred)."""
        return self.const(np.asarray(list(dims), np.int64))

    def identity(self, x: str, y: str) -> str:
        return self.node("Identity", [x], [y])

    def next_layer(self) -> "LayerGraph | None":
        """The layer that alone reads this layer's only top (which is no graph output), as
        its own LayerGraph; None otherwise. A mapping may compute that layer too (BatchNorm
        then Scale is one BatchNormalization), writing its tops, and `absorb` it."""
        return self._b.next_layer(self)

    def absorb(self, other: "LayerGraph") -> None:
        """`other` (from `next_layer`) is computed by this mapping: it is not exported again."""
        self._b.absorbed.add(other.layer.name)


class _GraphBuilder:
    def __init__(self, opset: int, dtype):
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes: list[tuple] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.param_names: dict[int, str] = {}
        self.used: set[str] = set()
        self.absorbed: set[str] = set()
        self.graphs: dict[str, LayerGraph] = {}   # layer name -> its LayerGraph
        self.readers: dict[str, list[str]] = {}   # value name -> layers reading it
        self.outputs: set[str] = set()

    def next_layer(self, g: LayerGraph) -> LayerGraph | None:
        if len(g.tops) != 1 or g.tops[0] in self.outputs:
            return None
        readers = self.readers.get(g.tops[0], [])
        return self.graphs[readers[0]] if len(readers) == 1 else None

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}{i}" if base.endswith("/c") else f"{base}_{i}"
        self.used.add(name)
        return name


def _value_names(net) -> dict[str, str]:
    """Blob key -> ONNX value name: the key (the blob's name for its first version,
    `<name>@<i>` for a later one), and an output's plain name when no other value has it."""
    names: dict[str, str] = {}
    for _, bottoms, tops in net.wiring():
        for blob in (*bottoms, *tops):
            names.setdefault(blob.key, blob.key)
    for name in net.outputs:
        key = net.blobs[name].key
        if name not in names:  # the blob's first version is not in the graph
            names[key] = name
    return names


def to_onnx(net, opset: int = MIN_OPSET):
    """The ONNX model of a built (deploy) net: its inputs raw with a free batch axis, its
    outputs, and every layer through its registered mapping. Raises a UserError naming every
    layer whose type has no mapping, or that a mapping rejects."""
    from ..registry import ONNX

    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: the export needs opset {MIN_OPSET} or newer")
    missing = [f"{layer.name} ({layer.type})" for layer in net.layers
               if not layer.is_input and ONNX.lookup(layer.type) is None]
    if missing:
        raise UserError(f"net {net.name}: no ONNX mapping for layer{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)}; a plugin registers one with "
                        f"@layerflow.register_onnx(\"<type>\")")
    elem = {np.dtype(np.float32): TensorProto.FLOAT,
            np.dtype(np.float64): TensorProto.DOUBLE}[net.dtype]
    b = _GraphBuilder(opset, net.dtype)
    names = _value_names(net)
    b.used.update(names.values())
    b.used.update(layer.name for layer in net.layers)
    graph_inputs = []
    b.outputs = {names[net.blobs[o].key] for o in net.outputs}
    for layer, bottoms, tops in net.wiring():
        if not layer.is_input:
            b.graphs[layer.name] = LayerGraph(
                b, layer, [names[x.key] for x in bottoms], [names[t.key] for t in tops],
                [tuple(x.shape) for x in bottoms], [tuple(t.shape) for t in tops])
            for x in bottoms:
                b.readers.setdefault(names[x.key], []).append(layer.name)
    for layer, bottoms, tops in net.wiring():
        if layer.is_input:
            for t in tops:
                graph_inputs.append(helper.make_tensor_value_info(
                    names[t.key], elem, ["N", *t.shape[1:]]))
            continue
        if layer.name in b.absorbed:
            continue
        g = b.graphs[layer.name]
        try:
            ONNX.get(layer.type)(layer, g)
        except UserError as err:
            raise UserError(f"layer {layer.name} ({layer.type}): cannot export to ONNX: "
                            f"{err}") from None
        made = {o for node in b.nodes if node[4] == layer.name for o in node[2]}
        lacking = [t for t in g.tops if t not in made and not any(
            b.graphs[r].layer.name in b.absorbed for r in b.readers.get(t, []))]
        if lacking:
            raise UserError(f"layer {layer.name} ({layer.type}): its ONNX mapping "
                            f"({ONNX.origin_of(layer.type)}) made no value for top(s) "
                            f"{', '.join(lacking)}")
    graph_outputs = [helper.make_tensor_value_info(
        names[net.blobs[o].key], elem, ["N", *net.blobs[o].shape[1:]]) for o in net.outputs]
    nodes = [helper.make_node(op, inputs, outputs, name=f"{lname}/{op}_{i}",
                              **{k: numpy_helper.from_array(v) if isinstance(v, np.ndarray)
                                 else v for k, v in attrs.items()})
             for i, (op, inputs, outputs, attrs, lname) in enumerate(b.nodes)]
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), name)
             for name, v in b.initializers.items()]
    graph = helper.make_graph(nodes, net.name, graph_inputs, graph_outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="layerflow",
                              doc_string=f"layerflow deploy net {net.name}")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    from .. import __version__
    model.producer_version = __version__
    return model


def export(net_path: str | Path, weights: str | Path, output: str | Path, *,
           opset: int = MIN_OPSET, plugins: list[str] | None = None) -> dict:
    """Engine of `layerflow export`: the deploy net of `net_path` with `weights`, as an ONNX
    model checked by onnx's checker (with shape inference) and written atomically to
    `output`. Returns {output, opset, inputs, outputs, nodes, initializers, bytes}."""
    from ..builder import deploy_net
    from ..snapshot import atomic_write

    onnx = _onnx()
    net = deploy_net(net_path, weights, plugins=plugins)
    model = to_onnx(net, opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:  # a mapping's bug, not the user's
        raise RuntimeError(f"the exported model of {net_path} fails onnx's checker: "
                           f"{exc}") from exc
    output = Path(output)
    if output.parent and not output.parent.is_dir():
        raise UserError(f"{output}: folder {output.parent} does not exist")
    data = model.SerializeToString()
    atomic_write(output, data)
    return {"output": str(output), "opset": opset, "net": net.name,
            "inputs": {i.name: [d.dim_param or d.dim_value for d in
                                i.type.tensor_type.shape.dim] for i in model.graph.input},
            "outputs": {o.name: [d.dim_param or d.dim_value for d in
                                 o.type.tensor_type.shape.dim] for o in model.graph.output},
            "nodes": len(model.graph.node), "initializers": len(model.graph.initializer),
            "bytes": len(data)}
