"""The layer contract: every layer type is a `Layer` subclass registered under its YAML name.

A layer declares its own YAML keys as a pydantic `Params` model and how many bottoms and tops it
takes. The net calls, in this order (Caffe's LayerSetUp / Reshape / Forward / Backward):

    setup(bottom_shapes)                   once, at build time: validate what does not depend
                                           on the batch, create params (`add_param`), constants
    reshape(bottom_shapes) -> top_shapes   at build time and whenever an input shape changes
                                           (a fed batch of another size): check the shapes,
                                           allocate buffers, return the top shapes
    forward(bottoms) -> tops               compute tops, cache what backward needs
    backward(top_diffs) -> bottom_diffs    one diff per bottom (None where no gradient is
                                           needed, see `propagate_down`); ADD param gradients
                                           into `param.grad` (the net zeroes them each step)

`reshape` may run many times, with the shapes going back and forth: it must allocate new
buffers rather than resize old ones in place, because the net undoes a rejected reshape by
restoring each layer's attributes as they were (Caffe cannot; layerflow must not lose a net
to one bad batch). After setup the net moves every param into its one contiguous buffer, so a
layer reads `param.data` and `param.grad` when it uses them, never a copy kept from setup.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import UserError
from .fillers import FillerSpec, fill


class NoParams(BaseModel):
    """A layer without keys of its own."""

    model_config = ConfigDict(extra="forbid")


class Param:
    """A learnable array: `data` and its gradient `grad` (same shape and dtype).

    `lr_mult` and `decay_mult` scale the solver's learning rate and weight decay for this param
    (from the layer's `param:` list in the net YAML). `owner` is the qualified name
    `<layer>.<param>` of the layer that created it (shared params keep their first owner).
    `learnable` is False for values the layer sets itself (BatchNorm's statistics): they have
    no gradient, and the solver leaves them as they are (lr_mult = decay_mult = 0).
    """

    __slots__ = ("name", "owner", "data", "grad", "lr_mult", "decay_mult", "share_name",
                 "learnable")

    def __init__(self, owner: str, name: str, data: np.ndarray, lr_mult: float = 1.0,
                 decay_mult: float = 1.0, share_name: str | None = None,
                 learnable: bool = True):
        self.owner = owner
        self.name = name
        self.data = data
        self.grad = np.zeros_like(data)
        self.learnable = learnable
        self.lr_mult = lr_mult if learnable else 0.0
        self.decay_mult = decay_mult if learnable else 0.0
        self.share_name = share_name

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `data` (and of `grad`)."""
        return self.data.shape

    def __repr__(self) -> str:
        return f"Param({self.owner}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base of all layers. Subclasses set the class attributes and the contract's methods.

    Class attributes (what the engine reads of a layer type; all declared here):
        Params: pydantic model of the layer's own YAML keys (extra="forbid").
        num_bottoms, num_tops: an exact count, or (min, max) with max None for "any".
        is_loss: its first top is a loss (loss_weight 1 by default).
        has_backward: False for layers that give no gradient at all (Accuracy, data layers):
            a loss_weight on them is an error, and the net never runs their backward.
        is_input: its tops are fed by the caller (`Net.forward({blob: x})`); such a layer
            implements `feed_shapes` and `feed`.
        (A data layer, which reads a data set batch by batch, implements `epoch`, `rewind`
        and `set_batch_size`, so tests can make exactly one pass over its data, and
        `check_labels`, so labels outside the classes of the layers that read them
        (`label_bottoms`) are an error when the net is built.)
        kink, kink_range: where the layer's function bends (ReLU: 0), so gradient checks skip
            bottom elements that close to it; None: no fixed kink.
        probabilities: its tops are probabilities (Softmax, Sigmoid), so `layerflow predict`
            reports its output as such rather than as scores.

    Instance attributes set by the net before `setup`:
        name, p (the validated Params), phase ("train" | "test"), dtype, rng (numpy Generator),
        base_dir (folder of the net YAML, for relative paths), bottom_names and top_names (the
        blob names it reads and writes), propagate_down (one bool per bottom, set before each
        backward), shard ((rank, processes) of data-parallel training: a data layer's
        batch_size is per process, and process r reads the r-th slice of each global batch of
        batch_size x processes samples; (0, 1) in one process).
    """

    type: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    num_bottoms: ClassVar[int | tuple[int, int | None]] = 1
    num_tops: ClassVar[int | tuple[int, int | None]] = 1
    is_loss: ClassVar[bool] = False
    has_backward: ClassVar[bool] = True
    is_input: ClassVar[bool] = False
    kink: ClassVar[float | None] = None
    kink_range: ClassVar[float | None] = None
    probabilities: ClassVar[bool] = False

    def __init__(self, name: str, p: BaseModel | None = None, *, phase: str = "train",
                 dtype=np.float32, rng: np.random.Generator | None = None,
                 base_dir: Path | str = ".", param_specs=None, shared_params=None,
                 bottom_names: list[str] | None = None, top_names: list[str] | None = None,
                 shard: tuple[int, int] = (0, 1)):
        self.name = name
        self.shard = (int(shard[0]), int(shard[1]))
        self.p = p if p is not None else self.Params()
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.base_dir = Path(base_dir)
        self.params: dict[str, Param] = {}
        self.bottom_names: list[str] = list(bottom_names or [])
        self.top_names: list[str] = list(top_names or [])
        self.propagate_down: list[bool] = []
        self._param_specs = list(param_specs or [])
        self._shared = shared_params if shared_params is not None else {}

    @classmethod
    def params_model(cls, entry: dict) -> type[BaseModel]:
        """The pydantic model that validates this layer's own keys of one YAML entry.

        `Params` for almost every layer; a layer whose keys depend on another key (the Data
        layer: the keys of its `source`) returns the model for this entry.
        """
        return cls.Params

    # -- the contract -------------------------------------------------------------------
    def setup(self, bottom_shapes: list[tuple[int, ...]]) -> None:
        """Once, at build time: check what does not depend on the batch, create params."""

    def reshape(self, bottom_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Check the bottom shapes, allocate buffers, return the top shapes."""
        raise NotImplementedError

    def forward(self, bottoms: list[np.ndarray]) -> list[np.ndarray]:
        """Compute the tops from the bottoms (into buffers from `reshape`); keep what
        backward needs."""
        raise NotImplementedError

    def backward(self, top_diffs: list[np.ndarray]) -> list[np.ndarray | None]:
        """One diff per bottom (None where `propagate_down` is False); ADD param gradients
        into `param.grad`."""
        raise NotImplementedError

    @classmethod
    def unimplemented(cls) -> list[str]:
        """The contract's methods this class leaves to the base, which only raises: `reshape`
        and `forward`, and `backward` unless `has_backward` is False. `register_layer`
        refuses a class that leaves any, so the mistake shows when the plugin loads, not as
        a NotImplementedError in the middle of a run."""
        needed = ["reshape", "forward"] + (["backward"] if cls.has_backward else [])
        return [m for m in needed if getattr(cls, m) is getattr(Layer, m)]

    def build(self, bottom_shapes) -> list[tuple[int, ...]]:
        """`setup` then `reshape`, as the net does at build time; returns the top shapes.

        For using a layer on its own (tests, `gradcheck`); a net calls the two itself.
        """
        shapes = [tuple(int(d) for d in s) for s in bottom_shapes]
        self.setup(shapes)
        return [tuple(s) for s in self.reshape(shapes)]

    # -- input layers (is_input) ---------------------------------------------------------
    def feed_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        """Input layers: the shapes of the arrays the caller feeds next, one per top (the
        net reshapes after this, and restores the old shapes if the new ones are rejected)."""
        raise NotImplementedError(f"{self.type} is not an input layer")

    def feed(self, index: int, value: np.ndarray) -> None:
        """Input layers: copy `value` (already of the top's shape) into top `index`."""
        raise NotImplementedError(f"{self.type} is not an input layer")

    # -- optional hooks -----------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that resuming must restore besides params (a data layer's cursor...)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state()` returned."""

    # -- data layers (they read a data set, one batch per forward) -----------------------
    def epoch(self) -> tuple[int, int] | None:
        """Data layers: (samples in one pass over the data, samples per batch); None for every
        other layer. The net reads it to run exactly one pass (`Net.epoch`)."""
        return None

    def batches_per_epoch(self) -> int | None:
        """Batches in one pass over the data (the last may be partial); None if no data."""
        epoch = self.epoch()
        return None if epoch is None else -(-epoch[0] // epoch[1])

    def rewind(self) -> None:
        """Data layers: the next batch starts at the first sample of the data, in the order
        of the first epoch (a test pass starts there every time)."""

    def set_batch_size(self, n: int) -> None:
        """Data layers: give batches of `n` samples from the next `reshape` on (the net
        reshapes right after, and puts the old size back if some layer rejects the new one).
        Only called on layers whose `epoch()` is not None."""
        raise NotImplementedError(f"{self.type} reads no data set")

    def check_labels(self, top: int, num_classes: int, ignore_label: int | None) -> None:
        """Data layers: raise a UserError naming the file, the row and the value (as written:
        4, not 4.0) of the first label of top `top` that is not a class index in
        [0, num_classes) nor `ignore_label`. The net calls it once it is built, for each top
        some layer reads as labels (`label_bottoms`), so bad labels are found when the data
        is read, not batches later."""

    # -- layers that read class labels --------------------------------------------------
    def label_bottoms(self) -> dict[int, tuple[int, int | None]]:
        """{bottom index: (number of classes, ignore_label or None)} for the bottoms this
        layer reads as class indices (a classifier's labels); called after `reshape`, so the
        classes may come from the shapes. Default: none."""
        return {}

    # -- deploy nets ----------------------------------------------------------------------
    @classmethod
    def deploy(cls, step) -> list[dict] | None:
        """What this layer becomes in the deploy net derived from a train/test net
        (`layerflow.deploy`): None keeps it as it is, [] leaves it out, a list of YAML layer
        entries (with explicit `bottom` and `top`) replaces it. `step` (a `DeployStep`) gives
        the layer's entry, validated Params, bottoms and tops; `step.label(blob)` declares a
        blob a label (a data layer's label top, a classifier's label bottom): every layer
        reading it is then left out, and `step.is_label(blob)` tells an Input which tops to
        drop. Default: a loss is left out, every other layer kept.
        """
        return [] if cls.is_loss else None

    def flops(self, bottom_shapes: list[tuple[int, ...]]) -> int:
        """Forward floating-point operations for these bottom shapes (for `summary`)."""
        return 0

    # -- helpers for subclasses ---------------------------------------------------------
    def add_param(self, name: str, shape: tuple[int, ...], filler: FillerSpec | None, *,
                  learnable: bool = True) -> Param:
        """Create (once) the param `name` of `shape`, filled by `filler`.

        Call it from `setup`. Calling it again with the same shape returns the existing param.
        A `param: [{name: shared}]` entry in the YAML makes layers share one Param.
        `learnable=False`: a param the layer itself updates (BatchNorm's running statistics):
        its lr_mult and decay_mult are 0 whatever the YAML says (Caffe's rule), so the solver
        leaves it exactly as it is; it is still saved in snapshots and weights files.
        """
        shape = tuple(int(s) for s in shape)
        if name in self.params:
            if self.params[name].shape != shape:
                raise UserError(f"layer {self.name}: param {name} would change shape from "
                                f"{self.params[name].shape} to {shape}")
            return self.params[name]
        index = len(self.params)
        spec = self._param_specs[index] if index < len(self._param_specs) else None
        lr_mult = spec.lr_mult if spec is not None else 1.0
        decay_mult = spec.decay_mult if spec is not None else 1.0
        if not learnable:
            lr_mult = decay_mult = 0.0  # what Param does too; equal here for the share check
        share = spec.name if spec is not None else None
        if share and share in self._shared:
            param = self._shared[share]
            if param.shape != shape:
                raise UserError(
                    f"layers {param.owner.rsplit('.', 1)[0]} and {self.name} share param "
                    f"\"{share}\" but their shapes differ: {param.shape} ({param.owner}) vs "
                    f"{shape} ({self.name}.{name})")
            if (param.lr_mult, param.decay_mult) != (lr_mult, decay_mult):
                raise UserError(
                    f"layers {param.owner.rsplit('.', 1)[0]} and {self.name} share param "
                    f"\"{share}\" but give it different lr_mult/decay_mult")
        else:
            data = fill(filler or FillerSpec(), shape, self.dtype, self.rng)
            param = Param(f"{self.name}.{name}", name, data, lr_mult, decay_mult, share,
                          learnable)
            if share:
                self._shared[share] = param
        self.params[name] = param
        return param

    def check_bottoms(self, bottom_shapes, min_axes: int | None = None) -> None:
        """Raise a UserError naming this layer if a bottom has fewer than `min_axes` axes."""
        if min_axes is not None:
            for i, s in enumerate(bottom_shapes):
                if len(s) < min_axes:
                    raise UserError(f"layer {self.name} ({self.type}): bottom {i} has shape "
                                    f"{tuple(s)}, needs at least {min_axes} axes")

    def __repr__(self) -> str:
        return f"<{self.type} {self.name}>"


class NeuronLayer(Layer):
    """Base of the elementwise layers: one bottom x, one top y of x's shape, and each element
    of y a function of the element of x at the same place, y = f(x) (Caffe's NeuronLayer:
    ReLU, Sigmoid, TanH, AbsVal, ...).

    A subclass writes its Numba kernels over flat arrays and calls them from two methods; the
    base keeps the buffers (y and dx, both of x's shape, new on every reshape), keeps x for the
    backward pass, and runs no backward when the bottom takes no gradient (a layer that gives
    none at all, `has_backward = False` as Threshold, writes no backward_kernel and gets no dx):

        forward_kernel(x, y)                y = f(x)
        backward_kernel(x, y, dout, dx)     dx = dout * f'(x), from x or from y = f(x),
                                            whichever is cheaper (Sigmoid: y (1 - y))

    x, y, dout, dx: 1-D views of the same length and dtype (a non-contiguous bottom is
    copied). `flops_per_element`: forward operations per element, for `summary`.
    """

    flops_per_element: ClassVar[int] = 1

    @classmethod
    def unimplemented(cls) -> list[str]:
        """The kernel methods missing: forward_kernel, and backward_kernel unless
        `has_backward` is False, each needed unless the class overrides the forward (resp.
        backward) that calls it."""
        pairs = [("forward", "forward_kernel")] + ([("backward", "backward_kernel")]
                                                   if cls.has_backward else [])
        return [kernel for method, kernel in pairs
                if getattr(cls, method) is getattr(NeuronLayer, method)
                and getattr(cls, kernel) is getattr(NeuronLayer, kernel)]

    def forward_kernel(self, x: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def backward_kernel(self, x: np.ndarray, y: np.ndarray, dout: np.ndarray,
                        dx: np.ndarray) -> None:
        raise NotImplementedError

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.top = np.zeros(shape, self.dtype)
        if self.has_backward:
            self.dx = np.zeros(shape, self.dtype)
        return [shape]

    def forward(self, bottoms):
        # an in-place top (top: x) is a new blob version with its own buffer in layerflow, so
        # the x kept here is never overwritten before backward (Caffe forbids in-place for
        # the layers whose backward reads x; here it is always allowed)
        self.x = bottoms[0]
        self.forward_kernel(self.x.reshape(-1), self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        if not (self.has_backward and self.propagate_down[0]):
            return [None]
        self.backward_kernel(self.x.reshape(-1), self.top.reshape(-1),
                             top_diffs[0].reshape(-1), self.dx.reshape(-1))
        return [self.dx]

    def flops(self, bottom_shapes):
        return self.flops_per_element * int(np.prod(bottom_shapes[0]))
