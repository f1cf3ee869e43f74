"""Accuracy: the fraction of predictions whose label is among the top_k scores. Not a loss.

Shapes: scores x: (N, C) with labels (N,) or (N, 1); or, with the class axis `axis` (default
1), x: (N, C, H, W) with labels (N, H, W) or (N, 1, H, W): one prediction per position.
Labels are class indices stored as floats or ints.
Tops: () = hits / V, V = positions whose label != ignore_label (0 when V is 0); optional
second top (C,): per-class accuracy, hits / positions of that class (0 for a class with none).
A position is a hit when fewer than top_k OTHER classes score greater than or equal to its
label's score (Caffe's rule since its PR 5836): ties count against the label, so with all
scores equal even top_k = C - 1 gives 0. No backward.
Source: Caffe's src/caffe/layers/accuracy_layer.cpp.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import UserError, register_layer
from layerflow.layers.labels import ClassifierLayer


@njit(cache=True)
def accuracy_count(x, label, top_k, ignore, use_ignore, class_hits, class_count):
    """Return (hits, counted) for scores x (outer, C, inner) and labels (outer * inner,);
    class_count[k] (C,) = counted positions of class k, class_hits[k] (C,) = their hits."""
    outer, c, inner = x.shape
    class_hits[:] = 0
    class_count[:] = 0
    hits = 0
    count = 0
    for o in range(outer):
        for i in range(inner):
            y = int(label[o * inner + i])
            if use_ignore and y == ignore:
                continue
            sy = x[o, y, i]
            # classes scoring >= the label's, less the label itself (Caffe's count from -1):
            # a tie counts against the label
            rivals = -1
            for j in range(c):
                if x[o, j, i] >= sy:
                    rivals += 1
            class_count[y] += 1
            if rivals < top_k:
                hits += 1
                class_hits[y] += 1
            count += 1
    return hits, count


class AccuracyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: int = Field(1, gt=0, description="a prediction counts when its label is among the "
                                            "top_k scores (ties count against it)")
    ignore_label: Optional[int] = Field(None, description="positions with this label are not "
                                                           "counted")
    axis: int = Field(1, description="the class axis of the scores; every other axis indexes "
                                     "one prediction")


@register_layer
class Accuracy(ClassifierLayer):
    Params = AccuracyParams
    num_tops = (1, 2)
    has_backward = False

    def setup(self, bottom_shapes):
        self.axis = self.p.axis
        self.use_ignore = self.p.ignore_label is not None
        self.ignore = self.p.ignore_label if self.use_ignore else 0
        self.top = np.zeros((), self.dtype)

    def reshape(self, bottom_shapes):
        tops = super().reshape(bottom_shapes)
        if len(self.top_names) > 1:
            tops.append((self.num_classes,))
        return tops

    def reshape_scores(self, scores):
        if self.p.top_k > self.num_classes:
            raise UserError(f"layer {self.name} (Accuracy): top_k={self.p.top_k} is more than "
                            f"the {self.num_classes} classes of scores {scores}")
        self.class_hits = np.zeros(self.num_classes, np.int64)
        self.class_count = np.zeros(self.num_classes, np.int64)
        self.per_class = np.zeros(self.num_classes, self.dtype)

    def forward(self, bottoms):
        x, label = bottoms
        label = self.labels(label, self.p.ignore_label)
        hits, count = accuracy_count(self.scores3(x), label, self.p.top_k, self.ignore,
                                     self.use_ignore, self.class_hits, self.class_count)
        self.top[()] = hits / count if count else 0.0
        if len(self.top_names) == 1:
            return [self.top]
        np.divide(self.class_hits, np.maximum(self.class_count, 1), out=self.per_class,
                  casting="unsafe")
        return [self.top, self.per_class]

    def backward(self, top_diffs):
        return [None, None]

    def flops(self, bottom_shapes):
        return int(np.prod(bottom_shapes[0]))
