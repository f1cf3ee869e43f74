"""ONNX export of a trained model's deploy net (`layerflow export`), with the `onnx` package
(`pip install 'layerflow[onnx]'`), opset 17 or newer.

    to_onnx(net, opset=17) -> onnx.ModelProto     a built deploy net (lf.deploy_net)
    export(net_path, weights, output)             the command's engine: derive, export, check,
                                                  write atomically

The graph takes the deploy net's inputs raw, with a free batch dimension ("N"): the Transform
layer (the data layer's scale and mean) is exported as its first nodes. Each layer is exported
by the mapping registered for its type (`layerflow.register_onnx`); the built-in ones are in
`layerflow.onnx.ops`. A mapping is a function `f(layer, g)` given the built layer and a
`LayerGraph` `g`: `g.bottoms` and `g.tops` are the ONNX value names of its bottoms and of the
tops it must produce, `g.bottom_shapes`/`g.top_shapes` their shapes in the built net (axis 0
is the batch, free in the graph), and it adds nodes with `g.node(op, inputs, outputs, **attrs)`,
constants with `g.const(array)` and the layer's params with `g.param(name)`:

    @layerflow.register_onnx("Swish")
    def swish(layer, g):                      # y = x * sigmoid(beta * x)
        (x,), (y,) = g.bottoms, g.tops
        bx = g.node("Mul", [x, g.param("beta")])
        g.node("Mul", [x, g.node("Sigmoid", [bx])], [y])

A layer whose type has no mapping is an error naming the layer and its type.
"""
from __future__ import annotations

from .export import LayerGraph, export, to_onnx

__all__ = ["LayerGraph", "export", "to_onnx"]
