"""What the layers that read class indices (SoftmaxLoss, SVMLoss, Accuracy) share: the check of
their (scores, labels) bottoms and of the labels of every batch."""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import Layer, UserError


@njit(cache=True)
def first_bad_label(label, num_classes, ignore, use_ignore):
    """Index of the first label that is not an integer in [0, num_classes), or -1."""
    for i in range(label.size):
        v = label[i]
        if use_ignore and v == ignore:
            continue
        if not (v >= 0 and v < num_classes) or v != np.floor(v):
            return i
    return -1


def check_labels(layer, label: np.ndarray, num_classes: int, ignore_label=None) -> None:
    """Raise a UserError naming the layer and the bad value if a label is not a valid class.

    Runs on every batch: invalid labels are never silently trained on.
    """
    use_ignore = ignore_label is not None
    i = first_bad_label(label, num_classes, ignore_label if use_ignore else 0, use_ignore)
    if i >= 0:
        raise UserError(
            f"layer {layer.name} ({layer.type}): label {label[i].item()!r} at batch index {i} "
            f"is not a class index in [0, {num_classes}) (the scores have {num_classes} classes)")


def scores_and_labels(layer, bottom_shapes) -> tuple[tuple[int, ...], int]:
    """Check the (scores, labels) bottoms of a classifier layer; return (scores shape, C).

    scores: (N, C); labels: (N,) or (N, 1). A mismatch is a UserError naming the layer.
    """
    scores, labels = (tuple(s) for s in bottom_shapes)
    if len(scores) != 2:
        raise UserError(f"layer {layer.name} ({layer.type}): scores must be (N, C), got "
                        f"shape {scores}")
    if labels not in ((scores[0],), (scores[0], 1)):
        raise UserError(f"layer {layer.name} ({layer.type}): labels must be ({scores[0]},) "
                        f"to match scores {scores}, got shape {labels}")
    return scores, scores[1]


class ClassifierLayer(Layer):
    """Base of a layer whose bottoms are scores (N, C) and labels (N,) or (N, 1).

    `reshape` checks the two shapes, sets `num_classes` and calls `reshape_scores(shape)` for
    the subclass's own buffers; `labels(bottom, ignore_label)` gives the labels of a batch as
    a flat array once every one of them is a class index (or `ignore_label`).
    A layer with one top gives a scalar (its loss or accuracy).
    """

    num_bottoms = 2

    def reshape(self, bottom_shapes):
        scores, self.num_classes = scores_and_labels(self, bottom_shapes)
        self.reshape_scores(scores)
        return [()]

    def reshape_scores(self, scores: tuple[int, ...]) -> None:
        """Allocate the buffers for scores of this shape."""

    def label_bottoms(self):
        # SVMLoss has no ignore_label key
        return {1: (self.num_classes, getattr(self.p, "ignore_label", None))}

    def labels(self, label: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
        flat = label.reshape(-1)
        check_labels(self, flat, self.num_classes, ignore_label)
        return flat
