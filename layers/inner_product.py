"""InnerProduct: a fully connected layer, y = x W^T + b.

Shapes: the bottom is flattened from `axis` on, x: (N, K) with N = prod(shape[:axis]) and
K = prod(shape[axis:]); W: (num_output, K), b: (num_output,); top: shape[:axis] + (num_output,).
Backward: dx = dout W, dW += dout^T x, db += sum_n dout[n].
"""
from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import FillerSpec, Layer, UserError, register_layer
from layerflow.blas import gemm


@njit(cache=True)
def inner_product_forward(x, w, b, out):
    """out (N, M) = x (N, K) @ w.T (K, M) + b (M,). Every row of out starts as b and BLAS adds
    the product onto it (beta = 1): one sweep over out fewer than adding b afterwards."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = b[j]
    gemm(x, w, out, False, True, 1.0, 1.0)


@njit(cache=True)
def inner_product_forward_nobias(x, w, out):
    """out (N, M) = x (N, K) @ w.T (K, M)."""
    gemm(x, w, out, False, True, 1.0, 0.0)


@njit(cache=True)
def inner_product_backward_params(x, dout, dw, db):
    """dw (M, K) += dout.T (M, N) @ x (N, K), in one BLAS pass (beta = 1); db (M,) += column
    sums of dout (N, M)."""
    gemm(dout, x, dw, True, False, 1.0, 1.0)
    n, m = dout.shape
    for i in range(n):
        for j in range(m):
            db[j] += dout[i, j]


@njit(cache=True)
def inner_product_backward_weight(x, dout, dw):
    """dw (M, K) += dout.T (M, N) @ x (N, K)."""
    gemm(dout, x, dw, True, False, 1.0, 1.0)


@njit(cache=True)
def inner_product_backward_data(dout, w, dx):
    """dx (N, K) = dout (N, M) @ w (M, K)."""
    gemm(dout, w, dx, False, False, 1.0, 0.0)


class InnerProductParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_output: int = Field(gt=0, description="number of outputs M")
    bias_term: bool = Field(True, description="add a learned bias b")
    weight_filler: FillerSpec = Field(default_factory=lambda: FillerSpec(type="xavier"),
                                      description="filler of W (default xavier)")
    bias_filler: FillerSpec = Field(default_factory=FillerSpec,
                                    description="filler of b (default constant 0)")
    axis: int = Field(1, description="first axis flattened into the K inputs")


@register_layer
class InnerProduct(Layer):
    Params = InnerProductParams

    def _axis(self, shape) -> int:
        axis = self.p.axis if self.p.axis >= 0 else len(shape) + self.p.axis
        if not 1 <= axis <= len(shape):
            raise UserError(f"layer {self.name} (InnerProduct): axis {self.p.axis} is out of "
                            f"range for bottom shape {shape}")
        return axis

    def setup(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        k = int(np.prod(shape[self._axis(shape):]))
        m = self.p.num_output
        self.add_param("weight", (m, k), self.p.weight_filler)
        if self.p.bias_term:
            self.add_param("bias", (m,), self.p.bias_filler)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        axis = self._axis(shape)
        m, k = self.params["weight"].shape
        if int(np.prod(shape[axis:])) != k:
            raise UserError(f"layer {self.name} (InnerProduct): bottom shape {shape} has "
                            f"{int(np.prod(shape[axis:]))} inputs from axis {axis} on, but the "
                            f"weight {(m, k)} was made for {k}")
        self.n = int(np.prod(shape[:axis]))
        self.k = k
        self.bottom_shape = shape
        self.top = np.zeros((self.n, m), self.dtype)
        self.dx = np.zeros((self.n, self.k), self.dtype)
        self.top_view = self.top.reshape(shape[:axis] + (m,))
        return [self.top_view.shape]

    def forward(self, bottoms):
        self.x = np.ascontiguousarray(bottoms[0], self.dtype).reshape(self.n, self.k)
        w = self.params["weight"].data
        if self.p.bias_term:
            inner_product_forward(self.x, w, self.params["bias"].data, self.top)
        else:
            inner_product_forward_nobias(self.x, w, self.top)
        return [self.top_view]

    def backward(self, top_diffs):
        dout = np.ascontiguousarray(top_diffs[0], self.dtype).reshape(self.n, self.p.num_output)
        weight = self.params["weight"]
        if self.p.bias_term:
            inner_product_backward_params(self.x, dout, weight.grad, self.params["bias"].grad)
        else:
            inner_product_backward_weight(self.x, dout, weight.grad)
        if not self.propagate_down[0]:
            return [None]
        inner_product_backward_data(dout, weight.data, self.dx)
        return [self.dx.reshape(self.bottom_shape)]

    def flops(self, bottom_shapes):
        return 2 * self.n * self.k * self.p.num_output
