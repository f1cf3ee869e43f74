"""InfogainLoss: softmax then a cross-entropy weighted by an infogain matrix H (C x C), whose
row y says how much each predicted class is worth when the truth is y (H = I: SoftmaxLoss,
up to the log clipping).

As Caffe master does (since Mar 2016), the layer applies the softmax itself: feed it logits.
Shapes: scores x: (N, C) with labels (N,) or (N, 1), or with the class axis `axis` (default 1)
x: (N, C, H, W) with labels (N, H, W) or (N, 1, H, W); H from an optional third bottom (C*C
values: (C, C) or Caffe's (1, 1, C, C)) or from `source`, a .npy file of shape (C, C) (or
(1, 1, C, C)), relative to the net YAML (Caffe reads a binaryproto). Viewed as (outer, C,
inner), positions k = (o, i):
    p[o, :, i] = softmax(x[o, :, i])
    loss       = -(1 / D) sum_{k counted} sum_l H[y_k, l] log(max(p[o, l, i], 1e-20))
    dx[o, l, i] = dloss * (p[o, l, i] * sum_j H[y_k, j] - H[y_k, l]) / D, 0 at ignored positions
D = normalizer(normalization), default VALID; FULL, BATCH_SIZE, NONE as SoftmaxLoss. Caffe
aborts on the legacy `normalize` key here, so it is not a key of this layer. H gets no
gradient (Caffe aborts if asked for one).
Source: Caffe's src/caffe/layers/infogain_loss_layer.cpp.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import UserError, register_layer
from layerflow.layers.labels import (ClassifierLayer, Normalization, normalization_field,
                                     normalizer)
from layerflow.layers.softmax import softmax_forward


@njit(cache=True, error_model="numpy")
def infogain_loss_forward(prob, label, h, ignore):
    """Return (sum over counted positions of -sum_l h[y, l] log(max(p_l, 1e-20)), counted).
    prob: (outer, C, inner); label: (outer * inner,); h: (C, C)."""
    outer, c, inner = prob.shape
    thr = prob.dtype.type(1e-20)
    loss = 0.0
    count = 0
    for o in range(outer):
        for i in range(inner):
            y = int(label[o * inner + i])
            if y == ignore:
                continue
            for j in range(c):
                loss -= h[y, j] * np.log(max(prob[o, j, i], thr))
            count += 1
    return loss, count


@njit(cache=True)
def infogain_loss_backward(prob, label, h, ignore, scale, dx):
    """dx (outer, C, inner) = scale * (p * sum_j h[y, j] - h[y, :]), 0 at ignored positions."""
    outer, c, inner = prob.shape
    zero = prob.dtype.type(0)
    hsum = np.zeros(c, prob.dtype)
    for r in range(c):
        for j in range(c):
            hsum[r] += h[r, j]
    for o in range(outer):
        for i in range(inner):
            y = int(label[o * inner + i])
            if y == ignore:
                for j in range(c):
                    dx[o, j, i] = zero
            else:
                for j in range(c):
                    dx[o, j, i] = scale * (prob[o, j, i] * hsum[y] - h[y, j])


class InfogainLossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Optional[str] = Field(None, description="a .npy file holding H (C x C), relative "
                                                    "to the net YAML; or give H as bottom 2")
    axis: int = Field(1, description="the class axis of the scores; every other axis indexes "
                                     "one prediction")
    ignore_label: Optional[int] = Field(None, description="positions with this label count for "
                                                           "nothing (loss and gradient)")
    normalization: Optional[Normalization] = normalization_field("VALID")


@register_layer
class InfogainLoss(ClassifierLayer):
    Params = InfogainLossParams
    num_bottoms = (2, 3)
    is_loss = True

    def _where(self) -> str:
        return f"layer {self.name} (InfogainLoss)"

    def _square(self, shape, what: str) -> int:
        """C of an H of `shape`: (C, C), with any leading axes of size 1."""
        shape = tuple(shape)
        if len(shape) < 2 or shape[-1] != shape[-2] or any(d != 1 for d in shape[:-2]):
            raise UserError(f"{self._where()}: {what} must be a C x C matrix ((C, C) or "
                            f"(1, 1, C, C)), got shape {shape}")
        return shape[-1]

    def setup(self, bottom_shapes):
        self.axis = self.p.axis
        self.ignore = -(2 ** 62) if self.p.ignore_label is None else self.p.ignore_label
        self.mode = self.p.normalization or "VALID"
        self.top = np.zeros((), self.dtype)
        self.h_file = None
        if len(bottom_shapes) == 3:
            if self.p.source is not None:
                raise UserError(f"{self._where()}: source: H is given twice, as bottom 2 and "
                                f"as source {self.p.source!r}; give one of them")
        elif self.p.source is None:
            raise UserError(f"{self._where()}: source: the infogain matrix H is missing; give "
                            f"a .npy file as source, or H as a third bottom")
        else:
            self.h_file = self._load(self.p.source)

    def _load(self, source: str) -> np.ndarray:
        path = self.base_dir / source
        if path.suffix != ".npy":
            raise UserError(f"{self._where()}: source: {str(path)!r} is not a .npy file; this "
                            f"layer reads H from a .npy (C, C) array (np.save)")
        try:
            h = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{self._where()}: source: cannot read {str(path)!r}: {exc}") from None
        if not np.issubdtype(h.dtype, np.number):
            raise UserError(f"{self._where()}: source: {str(path)!r} holds {h.dtype} values, "
                            f"not numbers")
        c = self._square(h.shape, f"H in {str(path)!r}")
        return np.ascontiguousarray(h, self.dtype).reshape(c, c)

    def reshape(self, bottom_shapes):
        tops = super().reshape(bottom_shapes)
        c = self.num_classes
        if len(bottom_shapes) == 3:
            name = self.bottom_names[2] if len(self.bottom_names) > 2 else "bottom[2]"
            got = self._square(bottom_shapes[2], f"H (bottom {name})")
        else:
            got = self.h_file.shape[0]
        if got != c:
            raise UserError(f"{self._where()}: H is {got} x {got} but the scores "
                            f"{tuple(bottom_shapes[0])} have {c} classes on axis {self.axis}")
        return tops

    def reshape_scores(self, scores):
        self.prob = np.zeros(scores, self.dtype)
        self.dx = np.zeros(scores, self.dtype)
        self.scratch = np.zeros((2, self.inner), self.dtype)  # Softmax's running max and sum

    def forward(self, bottoms):
        x, label = bottoms[:2]
        c = self.num_classes
        self.h = self.h_file if len(bottoms) == 2 else bottoms[2].reshape(c, c)
        self.label = self.labels(label, self.p.ignore_label)
        prob = self.scores3(self.prob)
        softmax_forward(self.scores3(x), prob, self.scratch)
        loss, count = infogain_loss_forward(prob, self.label, self.h, self.ignore)
        self.norm = normalizer(self.mode, self.outer, self.inner, count)
        self.top[()] = loss / self.norm
        return [self.top]

    def backward(self, top_diffs):
        out = [None] * (2 if self.h_file is not None else 3)
        if self.propagate_down[0]:
            scale = self.dtype.type(float(top_diffs[0]) / self.norm)
            infogain_loss_backward(self.scores3(self.prob), self.label, self.h, self.ignore,
                                   scale, self.scores3(self.dx))
            out[0] = self.dx
        return out

    def flops(self, bottom_shapes):
        return 6 * int(np.prod(bottom_shapes[0]))
