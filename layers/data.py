"""Data: reads a dataset and hands out one batch per forward, as Caffe's Data layer does.

Tops: [data] or [data, label] (for an .npz source, any tops: each names an array of the file).
Shapes: data (batch_size,) + sample shape; label (batch_size,).
Each batch is gathered from the stored arrays (uint8 images stay uint8 in memory) into
preallocated buffers of the net's dtype; the first top is transformed on the way:
    data[i] = (x[index[i]] - mean) * scale          mean: mean_value or mean_file, else 0
Batches follow the stored order, or a fresh permutation every epoch with `shuffle: true`; a batch
that crosses the end of the data continues at the start of the next epoch. For a test pass the
net rewinds the layer to its first sample and may ask for a smaller last batch (`epoch`,
`rewind`, `set_batch_size`: the data-layer part of the contract).

Sources (a registry, `layerflow.sources`; a plugin can add one, with its own keys):
    spiral                  CS231n's 2-D spiral (keys num_classes, points_per_class, noise, seed)
    fashion-mnist           Zalando's Fashion-MNIST, (N, 1, 28, 28); `split` train | test
    x.npz                   the arrays named after the tops
    x.csv                   header row; `label_column` is the label, other columns features
    any other path          an IDX file (raw or .gz) of samples, with `label_source` the IDX
                            file of labels; (N, H, W) images get a channel axis: (N, 1, H, W)
Relative paths are relative to the folder of the net YAML.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layerflow import Layer, UserError, register_layer
from layerflow import data as datasets
from layerflow import sources
from layerflow.errors import as_written
from layerflow.layers.transform import sample_mean


@njit(cache=True)
def gather_transform(x, index, mean, scale, out):
    """out[i, :] = (x[index[i], :] - mean) * scale. x: (N, D) stored dtype; mean: (D,);
    out: (B, D) float, B = len(index)."""
    b, d = out.shape
    for i in range(b):
        r = index[i]
        for j in range(d):
            out[i, j] = (x[r, j] - mean[j]) * scale


@njit(cache=True)
def gather(x, index, out):
    """out[i, :] = x[index[i], :]. x: (N, D) stored dtype; out: (B, D) float."""
    b, d = out.shape
    for i in range(b):
        r = index[i]
        for j in range(d):
            out[i, j] = x[r, j]


@register_layer
class Data(Layer):
    Params = sources.params_for(None)  # every built-in source's keys; see params_model
    num_bottoms = 0
    num_tops = (1, None)
    has_backward = False

    @classmethod
    def params_model(cls, entry):
        """The generic keys plus those of the source this entry reads (`layerflow.sources`)."""
        return sources.params_for(entry)

    def setup(self, bottom_shapes):
        names = list(self.top_names)
        try:
            source_cls = sources.resolve(self.p.source, self.p.backend)
            self.source = source_cls(self.p, base_dir=self.base_dir, phase=self.phase)
            arrays = self.source.load(names)
        except UserError as err:
            raise self._error(str(err)) from None
        n = len(arrays[0])
        if n == 0:
            raise UserError(f"layer {self.name} (Data): the source {self.p.source} has no "
                            f"samples")
        self.num_samples = n
        # stored dtype, one row per sample; a view, never a float copy of the dataset
        self.arrays = [np.ascontiguousarray(a).reshape(n, -1) for a in arrays]
        self.sample_shapes = [a.shape[1:] for a in arrays]
        self.mean = self._mean(self.sample_shapes[0]).astype(self.dtype).reshape(-1)
        self.scale = self.dtype.type(self.p.scale)
        seed = int(self.rng.integers(2**63))
        self.cursor = datasets.Cursor(n, self.p.shuffle, seed)
        # samples drawn per forward by all processes together (batch_size is per process);
        # a test pass may end with a smaller global batch
        self.global_batch = self.p.batch_size * self.shard[1]

    def reshape(self, bottom_shapes):
        lo, hi = datasets.share(self.global_batch, self.shard)
        self.tops = [np.zeros((hi - lo,) + s, self.dtype) for s in self.sample_shapes]
        self.global_index = np.zeros(self.global_batch, np.int64)
        self.index = self.global_index[lo:hi]  # this process's slice of every global batch
        return [t.shape for t in self.tops]

    def epoch(self):
        return self.num_samples, self.p.batch_size * self.shard[1]

    def rewind(self):
        self.cursor.rewind()

    def set_batch_size(self, n):
        """`n`: the global batch (all processes together), as `epoch` counts batches."""
        self.global_batch = int(n)

    def check_labels(self, top, num_classes, ignore_label):
        labels = self.arrays[top]  # (samples, values per sample), as stored
        ok = (labels >= 0) & (labels < num_classes)
        if labels.dtype.kind == "f":
            ok &= labels == np.floor(labels)
        if ignore_label is not None:
            ok |= labels == ignore_label
        if ok.all():
            return
        flat = int(np.argmin(ok.reshape(-1)))
        row, value = flat // max(labels.shape[1], 1), labels.reshape(-1)[flat]
        ignored = f" nor the ignore_label {ignore_label}" if ignore_label is not None else ""
        bad = int((~ok).sum())
        raise self._error(f"{self.source.row(self.top_names[top], row)}: label "
                          f"{as_written(value)} is not a class index in [0, {num_classes})"
                          f"{ignored}" + (f" (the first of {bad} bad labels)" if bad > 1 else ""))

    def forward(self, bottoms):
        self.cursor.next(self.global_index)  # the same global batch in every process
        b = len(self.index)
        gather_transform(self.arrays[0], self.index, self.mean, self.scale,
                         self.tops[0].reshape(b, -1))
        for x, top in zip(self.arrays[1:], self.tops[1:]):
            gather(x, self.index, top.reshape(b, -1))
        return self.tops

    def backward(self, top_diffs):
        return []

    def state(self):
        return self.cursor.state()

    def load_state(self, state):
        self.cursor.load_state(state, context=f"layer {self.name} (Data)")

    # -- helpers ------------------------------------------------------------------------
    def _error(self, message: str) -> UserError:
        return UserError(f"layer {self.name} (Data): {message}")

    def _mean(self, sample_shape: tuple[int, ...]) -> np.ndarray:
        """The mean subtracted from one sample, as a float64 array of the sample's shape."""
        return sample_mean(self.p.mean_value, self.p.mean_file, sample_shape, self.base_dir,
                           f"a sample of {self.p.source}", self._error)

    # -- deploy nets ----------------------------------------------------------------------
    @classmethod
    def deploy(cls, step):
        """An Input of one sample's shape for the first top, then a Transform doing this
        layer's transform when it is not the identity; the other tops are labels."""
        p = step.p
        data, *labels = step.tops
        try:
            source = sources.resolve(p.source, p.backend)(p, base_dir=step.base_dir,
                                                          phase="test")
            shape = source.sample_shapes(step.tops)[0]
        except UserError as err:
            raise UserError(f"layer {step.name} (Data): {err}") from None
        for label in labels:
            step.label(label, of=data, name=getattr(p, "label_column", None) or label)
        out = [{"name": step.name, "type": "Input", "top": [data], "shape": [[1, *shape]]}]
        if p.scale != 1.0 or p.mean_value is not None or p.mean_file is not None:
            keys = {k: getattr(p, k) for k in ("scale", "mean_value", "mean_file")
                    if getattr(p, k) is not None}
            out.append({"name": step.unique(f"{step.name}_transform"), "type": "Transform",
                        "bottom": [data], "top": [data], **keys})
        return out
