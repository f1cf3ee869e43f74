"""What the layers that read class indices share (SoftmaxLoss, InfogainLoss, HingeLoss,
MultinomialLogisticLoss, SVMLoss, Accuracy): where the classes are in the scores, the check of
the (scores, labels) shapes and of the labels of every batch; and Caffe's loss normalization
(LossLayer::get_normalizer), which SigmoidCrossEntropyLoss uses too.

Where the classes are (`scores_and_labels`), three layouts:
    axis None       scores exactly (N, C), labels (N,) or (N, 1)             (SVMLoss)
    axis a          Caffe's class axis (SoftmaxWithLoss, Accuracy, InfogainLoss): C = shape[a],
                    every other axis indexes one prediction: outer = prod(shape[:a]),
                    inner = prod(shape[a+1:]); scores (N, C, H, W), axis 1 -> labels (N, H, W)
                    or (N, 1, H, W)
    flatten         classes are every axis from 1 on (Caffe's HingeLoss and
                    MultinomialLogisticLoss: dim = count / num): C = prod(shape[1:]), labels (N,)
Caffe only compares label counts; here the labels must have the scores' shape without the class
axis (or with it as 1), and trailing axes of size 1 may be added or left out (a (N, C, 1, 1)
score blob takes (N,) labels, as Caffe nets with global pooling feed it), so a transposed or
mis-wired label blob is an error rather than a silent reinterpretation.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

import numpy as np
from numba import njit
from pydantic import Field

from layerflow import Layer, UserError

Normalization = Literal["FULL", "VALID", "BATCH_SIZE", "NONE"]


def normalization_field(default: str):
    """The `normalization` key of a loss whose Caffe default is `default`."""
    return Field(None, description=f"FULL | VALID | BATCH_SIZE | NONE: what the summed loss is "
                                   f"divided by (all positions, the non-ignored ones, the batch "
                                   f"size N, nothing; never less than 1); default {default}")


def normalize_field(default: str):
    """Caffe's legacy `normalize` key (LossParameter field 2)."""
    return Field(None, description=f"legacy Caffe key, read only when normalization is not "
                                   f"given: true = VALID, false = BATCH_SIZE (neither given: "
                                   f"{default})")


def resolve_normalization(normalization: Optional[str], normalize: Optional[bool],
                          default: str) -> str:
    """Caffe's rule: `normalization` if given, else legacy `normalize` (true: VALID, false:
    BATCH_SIZE), else the layer's default. Caffe ignores `normalize` when both are given."""
    if normalization is not None:
        return normalization
    if normalize is not None:
        return "VALID" if normalize else "BATCH_SIZE"
    return default


def normalizer(mode: str, outer: int, inner: int, valid: int) -> float:
    """Caffe's LossLayer::get_normalizer: FULL = outer * inner, VALID = the counted
    (non-ignored) positions, BATCH_SIZE = outer, NONE = 1; clamped to at least 1, so a batch
    whose labels are all ignored gives a loss of 0, not a NaN."""
    if mode == "FULL":
        n = outer * inner
    elif mode == "VALID":
        n = valid
    elif mode == "BATCH_SIZE":
        n = outer
    else:
        n = 1
    return float(max(n, 1))


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


class ClassLayout(NamedTuple):
    """Scores viewed as (outer, classes, inner); labels hold outer * inner class indices."""

    outer: int
    classes: int
    inner: int


def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def canonical_axis(layer, axis: int, shape: tuple[int, ...], key: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end; out of range is a
    UserError naming the layer, the key and the shape."""
    n = len(shape)
    if not -n <= axis < n:
        raise UserError(f"layer {layer.name} ({layer.type}): {key}: {axis} is out of range "
                        f"for bottom shape {shape} ({n} axes)")
    return axis + n if axis < 0 else axis


def scores_and_labels(layer, bottom_shapes, axis: int | None = None,
                      flatten: bool = False) -> ClassLayout:
    """Check the (scores, labels) bottoms of a classifier layer; return their ClassLayout.

    axis None: scores must be (N, C); an int: Caffe's class axis; flatten: classes are every
    axis from 1 on (see the module docstring). A mismatch is a UserError naming the layer.
    """
    scores, labels = (tuple(int(d) for d in s) for s in bottom_shapes[:2])
    where = f"layer {layer.name} ({layer.type})"
    if axis is None and not flatten:
        if len(scores) != 2:
            raise UserError(f"{where}: scores must be (N, C), got shape {scores}")
        axis = 1
    if flatten:
        if len(scores) < 2:
            raise UserError(f"{where}: scores must be (N, C) or (N, C, ...), got shape {scores}")
        a = 1
        layout = ClassLayout(scores[0], int(np.prod(scores[1:])), 1)
        sample, with_one = scores[:1], (scores[0], 1)
    else:
        a = canonical_axis(layer, axis, scores)
        layout = ClassLayout(int(np.prod(scores[:a])), scores[a], int(np.prod(scores[a + 1:])))
        sample, with_one = scores[:a] + scores[a + 1:], scores[:a] + (1,) + scores[a + 1:]
    if labels != with_one and _strip_ones(labels) != _strip_ones(sample):
        classes = "every axis from 1 on" if flatten else f"axis {a}"
        raise UserError(f"{where}: labels must be {sample} or {with_one} to match scores "
                        f"{scores} (classes: {classes}), got shape {labels}")
    return layout


class ClassifierLayer(Layer):
    """Base of a layer whose bottoms are scores and labels (class indices), see above.

    `reshape` checks the two shapes, sets `outer`, `num_classes`, `inner` and calls
    `reshape_scores(shape)` for the subclass's own buffers; `labels(bottom, ignore_label)` gives
    the labels of a batch as a flat array of outer * inner once every one of them is a class
    index (or `ignore_label`); `scores3(x)` views scores as (outer, C, inner).
    A layer with one top gives a scalar (its loss or accuracy).

    `axis`: None (scores exactly (N, C)) or the class axis; a layer with an `axis` key sets it
    in `setup`. `flatten_classes`: Caffe's HingeLoss/MultinomialLogisticLoss layout.
    """

    num_bottoms = 2
    axis: int | None = None
    flatten_classes = False

    def reshape(self, bottom_shapes):
        self.outer, self.num_classes, self.inner = scores_and_labels(
            self, bottom_shapes, self.axis, self.flatten_classes)
        self.reshape_scores(tuple(bottom_shapes[0]))
        return [()]

    def reshape_scores(self, scores: tuple[int, ...]) -> None:
        """Allocate the buffers for scores of this shape."""

    def scores3(self, x: np.ndarray) -> np.ndarray:
        """The scores as (outer, C, inner), a view of a C-contiguous bottom."""
        return x.reshape(self.outer, self.num_classes, self.inner)

    @classmethod
    def deploy(cls, step):
        """Left out of a deploy net; bottom 1 holds labels, so whatever else reads them (an
        Accuracy beside a loss) is left out too, and an Input feeding them drops them."""
        step.label(step.bottoms[1])
        return []

    def label_bottoms(self):
        # SVMLoss has no ignore_label key
        return {1: (self.num_classes, getattr(self.p, "ignore_label", None))}

    def labels(self, label: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
        flat = label.reshape(-1)
        check_labels(self, flat, self.num_classes, ignore_label)
        return flat
