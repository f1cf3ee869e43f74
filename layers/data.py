"""Data: reads a dataset and hands out one batch per forward, as Caffe's data layers do.

Tops: [data] or [data, label] (for an .npz or .h5 source, any tops: each names an array).
Shapes: data (batch_size,) + sample shape (C, crop_size, crop_size with a crop); label
(batch_size,) + the label's shape (() for class indices).
Each batch is read from the source in the stored dtype (uint8 images stay uint8) and
transformed on the way into fresh buffers of the net's dtype by Caffe's DataTransformer
(`layerflow.transformer`, shared with the deploy net's Transform layer), in Caffe's order:
    crop (random in train, centre in test) -> subtract the mean (mean_file, full-size, at the
    uncropped position; or mean_value) -> multiply by scale; mirror flips at random in both
    phases (Caffe's rule).
Batches follow the stored order, or a fresh permutation every epoch with `shuffle: true`; a batch
that crosses the end of the data continues at the start of the next epoch. For a test pass the
net rewinds the layer to its first sample and may ask for a smaller last batch (`epoch`,
`rewind`, `set_batch_size`: the data-layer part of the contract).

Prefetch (`prefetch`; on by default for sources that read from disk batch by batch, as Caffe's
data layers prefetch theirs; off by default for data held in memory, whose batch is a gather
cheaper than a hand-over between threads): while the net computes batch k, a background thread
reads and transforms batch k+1. The thread works from a copy of the cursor's position and of
the layer's random generator, and the layer takes the batch (and with it the cursor and
generator state after it) only when the net asks for the next batch, so the batches, their
order and their random crops/flips are those of a run without prefetch, and a snapshot saves
the state of the batch the net consumed, never of the one prefetched. A batch made for another
state (after a rewind, a new batch size, a restored snapshot) is dropped and made again. An
error in the thread (a bad record) is raised by the forward that would have used that batch,
in the main thread, naming the file and record.

Sources (a registry, `layerflow.sources`; a plugin can add one, with its own keys):
    spiral                  CS231n's 2-D spiral (keys num_classes, points_per_class, noise, seed)
    fashion-mnist           Zalando's Fashion-MNIST, (N, 1, 28, 28); `split` train | test
    x.npz                   the arrays named after the tops
    x.csv                   header row; `label_column` is the label, other columns features
    any other path          an IDX file (raw or .gz) of samples, with `label_source` the IDX
                            file of labels; (N, H, W) images get a channel axis: (N, 1, H, W)
    backend: lmdb           an LMDB folder of Caffe Datum records, read in key order   (caffe
    backend: hdf5 / x.h5    a text file listing .h5 files, datasets named after the     extra)
                            tops (or one .h5 file)
    backend: images         a list file of `path label` lines (Caffe's ImageData)
Relative paths are relative to the folder of the net YAML.
"""
from __future__ import annotations

import numpy as np

from layerflow import Layer, UserError, register_layer
from layerflow import data as datasets
from layerflow import sources
from layerflow.errors import as_written
from layerflow.transformer import Transformer


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
        p = self.p
        try:
            source_cls = sources.resolve(p.source, p.backend)
            self.source = source_cls(p, base_dir=self.base_dir, phase=self.phase)
            if (p.force_color or p.force_gray) and not source_cls.decodes_images:
                key = "force_color" if p.force_color else "force_gray"
                raise UserError(f"{key} applies to sources that decode images (lmdb, images); "
                                f"{source_cls.described()} holds arrays")
            self.source.open(names)
        except UserError as err:
            raise self._error(str(err)) from None
        n = self.source.num_samples
        if n == 0:
            raise UserError(f"layer {self.name} (Data): the source {p.source} has no "
                            f"samples")
        self.num_samples = n
        stored = self.source.shapes()
        self.transformer = Transformer(p, phase=self.phase, dtype=self.dtype,
                                       base_dir=self.base_dir,
                                       what=f"a sample of {p.source}", error=self._error)
        self.sample_shapes = [self.transformer.out_shape(stored[0])] + stored[1:]
        self.transformer.mean(stored[0])  # a bad mean file is an error now, not batches later
        seed = int(self.rng.integers(2**63))
        self.cursor = datasets.Cursor(n, p.shuffle, seed,
                                      order=self.source.order if p.shuffle else None)
        self.cursor.position = self.source.first_position(self.rng)
        # samples drawn per forward by all processes together (batch_size is per process;
        # process r reads the r-th slice, `datasets.share`); a test pass may end with a smaller
        # global batch
        self.global_batch = p.batch_size * self.shard[1]
        self.label_checks: dict[int, tuple[int, int | None]] = {}  # streamed sources
        prefetch = self.source.streams if p.prefetch is None else p.prefetch
        self.prefetcher = datasets.Prefetcher(self.name) if prefetch else None

    def reshape(self, bottom_shapes):
        lo, hi = datasets.share(self.global_batch, self.shard)
        self.tops = [np.zeros((hi - lo,) + s, self.dtype) for s in self.sample_shapes]
        return [t.shape for t in self.tops]

    def epoch(self):
        return self.num_samples, self.p.batch_size * self.shard[1]

    def rewind(self):
        self.cursor.rewind()

    def set_batch_size(self, n):
        """`n`: the global batch (all processes together), as `epoch` counts batches."""
        self.global_batch = int(n)

    def check_labels(self, top, num_classes, ignore_label):
        if self.source.streams:  # not in memory: each batch is checked as it is read
            self.label_checks[top] = (num_classes, ignore_label)
            return
        labels = self.source.arrays[top].reshape(self.num_samples, -1)  # as stored
        self._check(labels, np.arange(self.num_samples), top, num_classes, ignore_label)

    def _check(self, labels, index, top, num_classes, ignore_label):
        """labels: (samples, values per sample) of the samples `index` of the source."""
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
        many = f" (the first of {bad} bad labels" + (
            " in this batch)" if self.source.streams else ")")
        raise self._error(f"{self.source.row(self.top_names[top], int(index[row]))}: label "
                          f"{as_written(value)} is not a class index in [0, {num_classes})"
                          f"{ignored}" + (many if bad > 1 else ""))

    # -- batches ------------------------------------------------------------------------
    def _start(self):
        """What a batch depends on: where the cursor is, the global batch size, and the
        random generator's state when the transform draws from it."""
        rng = self.rng.bit_generator.state if self.transformer.random else None
        c = self.cursor
        return c.position, c.epoch, c.seed, self.global_batch, rng

    def _make(self, start):
        """The batch that starts at `start` (`_start`) and the state after it: (tops,
        (position, epoch, random state)). Touches nothing of the layer's state, so a prefetch
        thread can run it while the net computes."""
        position, epoch, _, global_batch, rng_state = start
        # the same global batch in every process; this one reads its slice
        everyone, position, epoch = self.cursor.peek(position, epoch, global_batch)
        lo, hi = datasets.share(global_batch, self.shard)
        index, b = everyone[lo:hi], hi - lo
        try:
            raw = self.source.read(index)
        except UserError as err:
            raise self._error(str(err)) from None
        rng = None
        if rng_state is not None:
            rng = np.random.Generator(type(self.rng.bit_generator)())
            rng.bit_generator.state = rng_state
        tops = [np.empty((b,) + s, self.dtype) for s in self.sample_shapes]
        data_top = self.top_names[0]
        self.transformer.apply(raw[0], tops[0], rng, where=lambda i: self.source.row(
            data_top, int(index[i])), part=(lo, global_batch))
        for k, (x, top) in enumerate(zip(raw[1:], tops[1:]), 1):
            x = np.asarray(x)
            if x.shape[1:] != top.shape[1:]:
                raise self._error(f"{self.source.row(self.top_names[k], int(index[0]))}: top "
                                  f"\"{self.top_names[k]}\" has samples of shape "
                                  f"{x.shape[1:]}, expected {top.shape[1:]}")
            top[...] = x
            if k in self.label_checks:
                self._check(x.reshape(b, -1), index, k, *self.label_checks[k])
        after = rng.bit_generator.state if rng is not None else None
        return tops, (position, epoch, after)

    def forward(self, bottoms):
        start = self._start()
        made = self.prefetcher.take(start) if self.prefetcher is not None else None
        if made is None:
            made = self._make(start)
        self.tops, (position, epoch, rng_state) = made
        self.cursor.position, self.cursor.epoch = position, epoch
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        if self.prefetcher is not None:
            self.prefetcher.submit(self._start(), self._make)
        return self.tops

    def backward(self, top_diffs):
        return []

    def state(self):
        return self.cursor.state()

    def load_state(self, state):
        self.cursor.load_state(state, context=f"layer {self.name} (Data)")

    def close(self) -> None:
        """Wait for a batch being prefetched, and drop it."""
        if getattr(self, "prefetcher", None) is not None:
            self.prefetcher.close()

    # -- helpers ------------------------------------------------------------------------
    def _error(self, message: str) -> UserError:
        return UserError(f"layer {self.name} (Data): {message}")

    # -- deploy nets ----------------------------------------------------------------------
    @classmethod
    def deploy(cls, step):
        """An Input of one stored sample's shape for the first top, then a Transform doing
        this layer's test-phase transform (centre crop, mean, scale; never the random mirror)
        when it is not the identity; the other tops are labels."""
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
        if (p.scale != 1.0 or p.mean_value is not None or p.mean_file is not None
                or p.crop_size):
            keys = {k: getattr(p, k) for k in ("scale", "mean_value", "mean_file", "crop_size")
                    if getattr(p, k) is not None and (k != "crop_size" or p.crop_size)}
            out.append({"name": step.unique(f"{step.name}_transform"), "type": "Transform",
                        "bottom": [data], "top": [data], **keys})
        return out
