"""Deconvolution: Caffe's transposed convolution, the adjoint of Convolution (its forward is
the convolution's data gradient), e.g. for learned or bilinear upsampling.

Shapes (G = group, k = kernel, per spatial axis; same keys as Convolution):
    bottom x (N, C, *in), weight w (C, O/G, *k) (Caffe swaps the first two axes of a
    convolution's weight), bias b (O,), top y (N, O, *out) with
    out = stride (in - 1) + dilation (k - 1) + 1 - 2 pad.

    y = b + conv^T(x): every input x[n, c, z] adds w[c, o, t] x[n, c, z] to
        y[n, o, z * stride - pad + t * dilation] (o in the group of c), dropped outside y.

So a Convolution with the same keys maps y's shape back to x's, and <conv(y), x> = <y, deconv(x)>
for the same weight. Computed as Caffe does (deconv_layer.cpp): per image col = w^T @ x[n], then
y[n] = col2im(col) + b. Backward: dx[n] = w @ im2col(dy[n]), dW += x[n] @ im2col(dy[n])^T,
db += sum of dy. The kernels are Convolution's (layers/convolution.py), in the roles swapped.

Bilinear upsampling by an integer factor f (Caffe's recipe): kernel_size 2f - f % 2, stride f,
pad ceil((f - 1) / 2), num_output = group = C, bias_term false, weight_filler {type: bilinear}
and `param: [{lr_mult: 0}]`.
"""
from __future__ import annotations

import numpy as np

from layerflow import Layer, register_layer
from layerflow.blas import serial_blas
from layerflow.layers.bias import bias_backward

from .convolution import (
    ConvolutionParams,
    add_transposed,
    check_bottoms_alike,
    conv_geometry,
    conv_gemm_col2im,
    conv_im2col_gemm,
    param_error,
    thread_slots,
)


def deconv_output_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """stride (size - 1) + dilation (k - 1) + 1 - 2 pad (Caffe's compute_output_shape)."""
    return s * (size - 1) + d * (k - 1) + 1 - 2 * p


@register_layer
class Deconvolution(Layer):
    Params = ConvolutionParams
    num_bottoms = (1, None)
    num_tops = (1, None)

    def setup(self, bottom_shapes):
        p = self.p
        self.geom = geom = conv_geometry(self, tuple(bottom_shapes[0]))
        self.add_param("weight", (geom.channels, p.num_output // p.group) + geom.kernel,
                       p.weight_filler)
        if p.bias_term:
            self.add_param("bias", (p.num_output,), p.bias_filler)
        self.zero_bias = np.zeros(p.num_output, self.dtype)  # forward without a bias term
        self.zero_bias_dx = np.zeros(geom.channels, self.dtype)  # dx gets no bias

    def reshape(self, bottom_shapes):
        g, p = self.geom, self.p
        shape = check_bottoms_alike(self, bottom_shapes, g)
        spatial = shape[g.axis + 1:]
        out = []
        for i, size in enumerate(spatial):
            o = deconv_output_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
            if o < 1:
                raise param_error(self, "pad", f"the output would have size {o} on spatial axis "
                                  f"{i}: {g.stride[i]} * ({size} - 1) + {g.dilation[i]} * "
                                  f"({g.kernel[i]} - 1) + 1 - 2 * {g.pad[i]} (bottom shape "
                                  f"{shape})")
            out.append(o)
        self.batch = int(np.prod(shape[:g.axis], dtype=np.int64))
        self.bottom_shape = shape
        # The convolution whose adjoint this is: its image is the top, its columns the bottom.
        lead = (1,) * (3 - len(spatial))
        self.top5 = (self.batch, p.num_output) + lead + tuple(out)
        self.in3 = lead + spatial
        groups, cg = p.group, g.channels // p.group
        k = p.num_output // groups * int(np.prod(g.kernel))
        positions = int(np.prod(spatial))
        self.slots = thread_slots(self.batch)
        self.w3 = (groups, cg, k)
        self.in4 = (self.batch, groups, cg, positions)
        top_shape = shape[:g.axis] + (p.num_output,) + tuple(out)
        self.tops = [np.zeros(top_shape, self.dtype) for _ in bottom_shapes]
        self.dxs = [np.zeros(shape, self.dtype) for _ in bottom_shapes]
        self.cols = np.zeros((self.slots, groups, k, 0 if g.one_by_one else positions),
                             self.dtype)
        self.dwt = np.zeros((self.slots, groups, k, cg), self.dtype)
        return [top_shape] * len(bottom_shapes)

    def forward(self, bottoms):
        w = self.params["weight"].data.reshape(self.w3)
        b = self.params["bias"].data if self.p.bias_term else self.zero_bias
        k, s, p, d = self.geom.padded()
        self.xs = [np.ascontiguousarray(x, self.dtype).reshape(self.in4) for x in bottoms]
        with serial_blas(self.slots > 1):
            for x, top in zip(self.xs, self.tops):
                conv_gemm_col2im(x, w, b, k, s, p, d, self.in3, self.geom.one_by_one,
                                 self.cols, top.reshape(self.top5))
        return self.tops

    def backward(self, top_diffs):
        weight = self.params["weight"]
        w = weight.data.reshape(self.w3)
        k, s, p, d = self.geom.padded()
        dxs = []
        with serial_blas(self.slots > 1):
            for i, (x, dtop) in enumerate(zip(self.xs, top_diffs)):
                dy = np.ascontiguousarray(dtop, self.dtype)
                down = bool(self.propagate_down[i])
                dx = self.dxs[i].reshape(self.in4)
                conv_im2col_gemm(dy.reshape(self.top5), w, self.zero_bias_dx, k, s, p, d,
                                 self.in3, self.geom.one_by_one, self.cols, dx, x, self.dwt,
                                 down, True)
                add_transposed(self.dwt, weight.grad.reshape(self.w3))
                if self.p.bias_term:
                    bias_backward(dy.reshape(self.batch, self.p.num_output, -1),
                                  self.params["bias"].grad)
                dxs.append(self.dxs[i] if down else None)
        return dxs

    def flops(self, bottom_shapes):
        """2 flops per weight tap and input position, plus the bias per output, per bottom."""
        g, shape = self.geom, tuple(bottom_shapes[0])
        batch = int(np.prod(shape[:g.axis], dtype=np.int64))
        positions = int(np.prod(shape[g.axis + 1:]))
        outputs = 1
        for i, size in enumerate(shape[g.axis + 1:]):
            outputs *= deconv_output_size(size, g.kernel[i], g.stride[i], g.pad[i],
                                          g.dilation[i])
        taps = 2 * g.channels * (self.p.num_output // self.p.group) * int(np.prod(g.kernel))
        bias = self.p.num_output * outputs if self.p.bias_term else 0
        return len(bottom_shapes) * batch * (taps * positions + bias)
