"""Transform: a data layer's test-phase transform as a layer; the first layer of a deploy net,
so it takes raw samples (pixels 0-255, uncropped) and they get exactly what testing saw.

Shapes: bottom x (N, ...) raw samples; top y (N, ...) of the same shape, or (N, C, crop_size,
crop_size) with a crop of (N, C, H, W) samples. With the centre window (h_off, w_off) =
((H - crop_size) // 2, (W - crop_size) // 2) (the whole sample without a crop):
    y[n, c, i, j] = (x[n, c, i + h_off, j + w_off] - mean[c, i + h_off, j + w_off]) * scale
    mean: mean_file (full-size: one uncropped sample's shape) or mean_value (one number, or
          one per channel: the first axis of a sample), else 0
    dx = dout * scale inside the window, 0 outside it
The computation is the Data layer's own (`layerflow.transformer`: one implementation for both),
in its test phase: centre crop, never Caffe's random mirror (inference is deterministic; a
deploy net derived from a net with `mirror: true` leaves the flip out). The keys are the Data
layer's transform keys, so a deploy net derived from a net (`layerflow.deploy`) carries them
over unchanged. A mean_value follows a new sample size on reshape; a mean_file fixes it.
Source: Caffe's DataTransformer (data_transformer.cpp), test phase, without mirror.
Errors (UserError naming the layer): a mean_file that cannot be read or has another shape than
a sample, a mean_value with neither one value nor one per channel, a crop_size larger than the
samples or of samples that are not (C, H, W).
"""
from __future__ import annotations

import numpy as np

from layerflow import Layer, UserError, register_layer
from layerflow.transformer import TransformKeys, Transformer, as_chw


@register_layer
class Transform(Layer):
    Params = TransformKeys

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, min_axes=1)
        self.transformer = Transformer(self.p, phase="test", dtype=self.dtype,
                                       base_dir=self.base_dir, mirror=False,
                                       what=f"a sample of bottom {self.bottom_names[0]}",
                                       error=self._error)
        self.sample_shape: tuple[int, ...] | None = None  # the shape self.mean was made for

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.check_bottoms(bottom_shapes, min_axes=1)
        sample = shape[1:]
        out = (shape[0],) + self.transformer.out_shape(sample)
        self.mean = self.transformer.mean(sample)  # (C, H, W), full-size
        self.sample_shape = sample
        self.window = self.transformer.window(sample)
        self.top = np.zeros(out, self.dtype)
        return [out]

    def forward(self, bottoms):
        self.transformer.apply(bottoms[0], self.top)
        return [self.top]

    def backward(self, top_diffs):
        if not self.propagate_down[0]:
            return [None]
        n = top_diffs[0].shape[0]
        ho, wo, h, w = self.window
        chw = as_chw(self.sample_shape)
        dx = np.zeros((n,) + chw, self.dtype)
        dx[:, :, ho:ho + h, wo:wo + w] = top_diffs[0].reshape((n, chw[0], h, w)) * \
            self.transformer.scale
        return [dx.reshape((n,) + self.sample_shape)]

    def flops(self, bottom_shapes):
        n = bottom_shapes[0][0]
        return 2 * n * int(np.prod(self.transformer.out_shape(tuple(bottom_shapes[0][1:]))))

    def _error(self, message: str) -> UserError:
        return UserError(f"layer {self.name} (Transform): {message}")
