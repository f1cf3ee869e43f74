"""One contiguous buffer for every param of a net: `Param.data` and `Param.grad` are views into it.

    data (P,)  every param's values, param after param, in the net's layer order
    grad (P,)  their gradients, same layout
    offsets    (n + 1,) int64: param i is data[offsets[i]:offsets[i + 1]]
    lr_mult, decay_mult  (n,) float64, one per param (per segment)

With the params in one place, zeroing the gradients, the global L2 norm of clipping, the
regularization and the update are each one pass over one array (tinygrad's fused optimizer,
Caffe's multi-GPU `params_` buffer), and a data-parallel allreduce is one call on `grad`.
"""
from __future__ import annotations

import numpy as np

from .layer import Param


class ParamBuffer:
    """Moves `params` (distinct Param objects) into one data and one grad array of `dtype`.

    The values and gradients the params held are copied in; afterwards each `param.data` and
    `param.grad` is a view of its segment, with its own shape (the public API is unchanged).
    """

    def __init__(self, params: list[Param], dtype):
        self.params = list(params)
        self.dtype = np.dtype(dtype)
        sizes = [p.data.size for p in self.params]
        self.offsets = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        total = int(self.offsets[-1])
        self.data = np.empty(total, self.dtype)
        self.grad = np.zeros(total, self.dtype)
        for i, p in enumerate(self.params):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            self.data[lo:hi] = p.data.reshape(-1)
            self.grad[lo:hi] = p.grad.reshape(-1)
            p.data = self.data[lo:hi].reshape(p.shape)
            p.grad = self.grad[lo:hi].reshape(p.shape)
        self.lr_mult = np.array([p.lr_mult for p in self.params], np.float64)
        self.decay_mult = np.array([p.decay_mult for p in self.params], np.float64)

    @property
    def size(self) -> int:
        """Number of values in the buffer (all params together)."""
        return int(self.offsets[-1])

    def segment(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def zeros_like(self) -> np.ndarray:
        """A new zeroed array of the buffer's layout (solver history: momentum...)."""
        return np.zeros(self.size, self.dtype)

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        """`flat` (an array of the buffer's layout) cut into one view per param, param-shaped."""
        return [flat[self.segment(i)].reshape(p.shape) for i, p in enumerate(self.params)]

    def __repr__(self) -> str:
        return f"ParamBuffer({len(self.params)} params, {self.size} values, {self.dtype})"
