"""Accuracy: the fraction of samples whose label is among the top_k scores. Not a loss.

Shapes: scores x: (N, C); labels: (N,) or (N, 1), class indices stored as floats or ints;
top: () = hits / V, V = samples whose label != ignore_label (0 when V is 0).
A sample is a hit when fewer than top_k classes score strictly higher than its label
(Caffe's rule: ties count in the label's favour). No backward.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from layerflow import UserError, register_layer
from layerflow.layers.labels import ClassifierLayer


@njit(cache=True)
def accuracy_count(x, label, top_k, ignore, use_ignore):
    """Return (hits, counted) for scores x (N, C) and labels (N,)."""
    n, c = x.shape
    hits = 0
    count = 0
    for i in range(n):
        if use_ignore and label[i] == ignore:
            continue
        sy = x[i, int(label[i])]
        higher = 0
        for j in range(c):
            if x[i, j] > sy:
                higher += 1
        if higher < top_k:
            hits += 1
        count += 1
    return hits, count


class AccuracyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: int = Field(1, gt=0, description="a sample counts when its label is among the top_k "
                                            "scores")
    ignore_label: Optional[int] = Field(None, description="samples with this label are not "
                                                           "counted")


@register_layer
class Accuracy(ClassifierLayer):
    Params = AccuracyParams
    has_backward = False

    def setup(self, bottom_shapes):
        self.use_ignore = self.p.ignore_label is not None
        self.ignore = self.p.ignore_label if self.use_ignore else 0
        self.top = np.zeros((), self.dtype)

    def reshape_scores(self, scores):
        if self.p.top_k > scores[1]:
            raise UserError(f"layer {self.name} (Accuracy): top_k={self.p.top_k} is more than "
                            f"the {scores[1]} classes of scores {scores}")

    def forward(self, bottoms):
        x, label = bottoms
        label = self.labels(label, self.p.ignore_label)
        hits, count = accuracy_count(x, label, self.p.top_k, self.ignore, self.use_ignore)
        self.top[()] = hits / count if count else 0.0
        return [self.top]

    def backward(self, top_diffs):
        return [None, None]

    def flops(self, bottom_shapes):
        return int(np.prod(bottom_shapes[0]))
