"""Split: hands one bottom to K >= 1 tops; backward sums their diffs.

Shapes: every top has the bottom's shape. Forward copies nothing: every top IS the bottom
array (Caffe shares the data). Backward: dx = sum_k dout_k (with one top, dx is its diff).
The net already sums diffs where a blob feeds several layers, so a net never needs a Split;
it is here for nets written for Caffe, where it appears in snapshots and net dumps.

Caffe forbids Split in place (a top with the bottom's name), and so does this layer (UserError).
Source: Caffe's split_layer.cpp.
"""
from __future__ import annotations

import numpy as np

from layerflow import Layer, UserError, register_layer


def check_not_in_place(layer) -> None:
    """Caffe's rule for the layers whose top shares the bottom's memory (Split, Flatten,
    Reshape): a top may not have the bottom's name."""
    same = [t for t in layer.top_names if t in layer.bottom_names]
    if same:
        raise UserError(f"layer {layer.name} ({layer.type}): top {same[0]!r} is also its "
                        f"bottom; {layer.type} does not work in place (as in Caffe): give the "
                        f"top another name")


@register_layer
class Split(Layer):
    num_tops = (1, None)

    def setup(self, bottom_shapes):
        check_not_in_place(self)
        self.n_tops = max(len(self.top_names), 1)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if self.n_tops > 1:
            self.dx = np.zeros(shape, self.dtype)
        return [shape] * self.n_tops

    def forward(self, bottoms):
        return [bottoms[0]] * self.n_tops

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        if self.n_tops == 1:
            return [top_diffs[0]]
        np.copyto(self.dx, top_diffs[0])
        for d in top_diffs[1:]:
            np.add(self.dx, d, out=self.dx)
        return [self.dx]
