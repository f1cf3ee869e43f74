"""The Net: layers wired by blob names, run forward in topological order, backward in reverse.

Building a net (from a validated NetConfig):
  1. keep the layers of the phase (`include`/`exclude`);
  2. name bottoms and tops with the stack rule (no `bottom`: the previous layer's first top;
     no `top`: the layer's name); a top equal to one of the layer's bottoms is in-place and
     starts a new version of that blob, so the graph stays acyclic;
  3. check arity, unknown bottoms, tops produced twice, duplicate names and cycles;
  4. sort topologically; run every layer's `setup` then `reshape` to infer all shapes;
  5. move every param into one contiguous data buffer and one grad buffer (`ParamBuffer`).
Feeding an Input blob of another shape reshapes the whole net in topological order before the
forward (Caffe's `Net::Reshape`); a reshape some layer rejects is undone, so the net stays as it
was. Backward sums diffs where a blob feeds several layers (micrograd's `+=`), and runs only
the layers that lead to a loss and have params or a bottom that needs a diff. Hooks
(`NetHook`) observe each layer's forward and backward (profiling, the divergence guard).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .config import LayerConfig, NetConfig, load_yaml, load_yaml_text, parse_net
from .errors import UserError, a_an, did_you_mean
from .layer import Layer, Param
from .params import ParamBuffer


class Blob:
    """A named array flowing between layers: `data` (forward) and `diff` (d loss / d data)."""

    __slots__ = ("name", "key", "shape", "data", "diff", "_own", "_zeros", "producer")

    def __init__(self, name: str, key: str, producer: int):
        self.name, self.key, self.producer = name, key, producer
        self.shape: tuple[int, ...] = ()
        self.data: np.ndarray | None = None
        self.diff: np.ndarray | None = None
        self._own: np.ndarray | None = None
        self._zeros: np.ndarray | None = None

    def own_diff(self, dtype) -> np.ndarray:
        """A diff buffer owned by the net, for summing several contributions."""
        if self._own is None or self._own.shape != self.shape:
            self._own = np.zeros(self.shape, dtype)
        return self._own

    def zeros(self, dtype) -> np.ndarray:
        """A zero diff of the blob's shape (for a top nothing sends a gradient to)."""
        if self._zeros is None or self._zeros.shape != self.shape:
            self._zeros = np.zeros(self.shape, dtype)
        return self._zeros

    def __repr__(self) -> str:
        return f"Blob({self.name}, shape={self.shape})"


class _Node:
    """A layer in the graph: the layer object and its bottom and top blobs."""

    __slots__ = ("layer", "config", "bottoms", "tops", "loss_weights")

    def __init__(self, layer, config, bottoms, tops, loss_weights):
        self.layer: Layer = layer
        self.config: LayerConfig = config
        self.bottoms: list[Blob] = bottoms
        self.tops: list[Blob] = tops
        self.loss_weights: list[float] = loss_weights


def _located(err: UserError, node: "_Node") -> UserError:
    """`err` of a layer, its message prefixed with where the layer is written (said once)."""
    msg = str(err)
    own = f"layer {node.layer.name} ({node.layer.type}): "
    if msg.startswith(own):
        msg = msg[len(own):]
    c = node.config
    err.args = (f"{c.loc}: layers[{c.index}] ({c.name}): {msg}",)
    return err


def in_phase(cfg: LayerConfig, phase: str, level: int = 0, stages=()) -> bool:
    """Whether a layer is in the net of this phase, level and stages (Caffe's FilterNet): with
    include rules, when any is met; with exclude rules, unless any is met."""
    spec = cfg.spec
    if spec.include is not None and not any(r.met(phase, level, stages) for r in spec.include):
        return False
    if spec.exclude is not None and any(r.met(phase, level, stages) for r in spec.exclude):
        return False
    return True


def _arity_ok(n: int, want) -> bool:
    if isinstance(want, int):
        return n == want
    lo, hi = want
    return n >= lo and (hi is None or n <= hi)


def _arity_str(want) -> str:
    if isinstance(want, int):
        return str(want)
    lo, hi = want
    return f"at least {lo}" if hi is None else f"{lo} to {hi}"


class NetHook:
    """Observes the layers of a net (`Net.add_hook`): override what you need.

    Called around each layer's forward and backward, in the order the net runs them; `tops`
    and `bottom_diffs` are what the layer returned. A hook must not change them.
    """

    def before_forward(self, layer: Layer) -> None:
        """Just before `layer.forward`."""

    def after_forward(self, layer: Layer, tops: list[np.ndarray]) -> None:
        """Just after `layer.forward`, with the tops it returned."""

    def before_backward(self, layer: Layer) -> None:
        """Just before `layer.backward`."""

    def after_backward(self, layer: Layer, bottom_diffs: list) -> None:
        """Just after `layer.backward`, with the bottom diffs it returned."""


class _FirstNonFinite(NetHook):
    """Records the first layer (and its top) whose output holds a NaN or an infinity."""

    def __init__(self):
        self.found: tuple[str, str] | None = None

    def after_forward(self, layer, tops):
        if self.found is None:
            for name, top in zip(layer.top_names, tops):
                if not np.isfinite(top).all():
                    self.found = (layer.name, name)
                    return


class Net:
    """A network built from a net YAML for one phase ("train" or "test").

    Attributes: `layers` (in topological order), `layer_by_name`, `blobs` (public name ->
    Blob, the newest version of an in-place blob), `params` (layer -> param -> Param),
    `param_buffer` (the ParamBuffer holding this net's own params; a test net built with
    `share_params_with` holds only those the train net lacks), `inputs` (blobs the caller
    feeds), `outputs` (blobs no layer consumes), `loss` (the weighted loss of the last forward).
    """

    def __init__(self, config: NetConfig, phase: str = "train", *, seed: int = 0,
                 dtype: str | None = None, share_params_with: "Net | None" = None,
                 level: int = 0, stages=(), shard: tuple[int, int] = (0, 1)):
        if phase not in ("train", "test"):
            raise UserError(f"phase must be train or test, got {phase!r}")
        self.config = config
        self.name = config.name
        self.phase = phase
        self.level = int(level)
        self.stages = tuple(stages)
        self.dtype = np.dtype(dtype or config.dtype)
        self.seed = seed
        self.shard = (int(shard[0]), int(shard[1]))
        self.force_backward = config.force_backward
        self._shared_by_name: dict[str, Param] = {}
        self._hooks: list[NetHook] = []
        self._plans: dict[frozenset, list] = {}
        self.loss = 0.0
        self._build(config)
        foreign = self._share_params(share_params_with) if share_params_with else set()
        self.param_buffer = ParamBuffer(
            [p for p in self.learnable_params() if id(p) not in foreign], self.dtype)
        # params that live in another net's buffer (a test net's shared ones)
        self._foreign_params = [p for p in self.learnable_params() if id(p) in foreign]

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, phase: str = "train", **kw) -> "Net":
        """The net of a YAML file, built for `phase` ("train" or "test").

        Keyword arguments: `plugins` (modules or .py files to load first, as `--plugin`),
        `seed` (of fillers and data order), `dtype` ("float32" or "float64", overriding
        the file's), `share_params_with` (another Net whose params this one uses).
        Every mistake in the file is a UserError naming file:line:col.

            net = lf.Net.from_yaml("models/spiral/deploy.yaml", phase="test")
        """
        plugins = kw.pop("plugins", None)
        return cls(parse_net(load_yaml(path), plugins), phase, **kw)

    @classmethod
    def from_string(cls, text: str, phase: str = "train", file: str = "<string>", **kw) -> "Net":
        """The net of YAML `text` (as `from_yaml`); `file` names it in messages, and relative
        paths in it (data, plugins) are taken from `file`'s folder."""
        plugins = kw.pop("plugins", None)
        return cls(parse_net(load_yaml_text(text, file), plugins), phase, **kw)

    def _build(self, config: NetConfig) -> None:
        cfgs = [c for c in config.layers if in_phase(c, self.phase, self.level, self.stages)]
        if not cfgs:
            state = "".join([f", level {self.level}" if self.level else "",
                             f", stages {list(self.stages)}" if self.stages else ""])
            raise UserError(f"{config.source.file}: the net has no layers in phase "
                            f"{self.phase}{state}")
        seen: dict[str, LayerConfig] = {}
        for c in cfgs:
            if c.name in seen:
                raise UserError(f"{c.loc}: layers[{c.index}]: duplicate layer name "
                                f"\"{c.name}\" (first at {seen[c.name].loc})")
            seen[c.name] = c

        # name bottoms and tops; give in-place tops a new version key
        latest: dict[str, str] = {}
        blobs: dict[str, Blob] = {}
        wiring = []
        prev_top: str | None = None
        for i, c in enumerate(cfgs):
            where = f"{c.loc}: layers[{c.index}] ({c.name})"
            wants_bottom = c.cls.num_bottoms != 0
            if c.spec.bottom is not None:
                bottom_names = list(c.spec.bottom)
            elif wants_bottom:
                if prev_top is None:
                    raise UserError(f"{where}: no bottom given and no previous layer to take "
                                    f"it from; add `bottom: <blob>`")
                bottom_names = [prev_top]
            else:
                bottom_names = []
            top_names = list(c.spec.top) if c.spec.top is not None else [c.name]
            if not _arity_ok(len(bottom_names), c.cls.num_bottoms):
                raise UserError(f"{where}: {a_an(c.spec.type)} layer takes "
                                f"{_arity_str(c.cls.num_bottoms)} bottom(s), got "
                                f"{len(bottom_names)}: {bottom_names}")
            if not _arity_ok(len(top_names), c.cls.num_tops):
                raise UserError(f"{where}: {a_an(c.spec.type)} layer gives "
                                f"{_arity_str(c.cls.num_tops)} top(s), got "
                                f"{len(top_names)}: {top_names}")
            pd = c.spec.propagate_down
            if pd is not None and len(pd) != len(bottom_names):
                raise UserError(f"{where}: propagate_down has {len(pd)} values for "
                                f"{len(bottom_names)} bottom(s); give one per bottom")
            if len(set(top_names)) != len(top_names):
                raise UserError(f"{where}: the same top is listed twice: {top_names}")
            bottom_keys = [latest.get(b) for b in bottom_names]  # None: forward reference
            top_keys = []
            for t in top_names:
                if t in latest:
                    if t not in bottom_names:
                        first = cfgs[blobs[latest[t]].producer]
                        raise UserError(f"{where}: top blob \"{t}\" is already produced by "
                                        f"layer {first.name} ({first.loc}); tops must be unique "
                                        f"unless in-place (top == bottom)")
                    key = f"{t}@{i}"
                else:
                    key = t
                blobs[key] = Blob(t, key, i)
                latest[t] = key
                top_keys.append(key)
            wiring.append((bottom_names, bottom_keys, top_keys))
            prev_top = top_names[0] if top_names else prev_top

        for i, (names, keys, _) in enumerate(wiring):
            for j, (name, key) in enumerate(zip(names, keys)):
                if key is None:
                    # a layer never reads its own top: `{bottom: x, top: x}` with no earlier
                    # producer of x is an unknown bottom, not an in-place layer
                    if name not in latest or blobs[latest[name]].producer == i:
                        c = cfgs[i]
                        known = sorted(b for b in latest if blobs[latest[b]].producer != i)
                        raise UserError(
                            f"{c.loc}: layers[{c.index}] ({c.name}): unknown bottom blob "
                            f"\"{name}\"{did_you_mean(name, known)}; blobs in this phase: "
                            f"{', '.join(known) or '(none)'}")
                    keys[j] = latest[name]

        order = self._toposort(cfgs, wiring, blobs)
        consumers: dict[str, int] = {}
        for _, keys, _ in wiring:
            for k in keys:
                consumers[k] = consumers.get(k, 0) + 1

        self.layers: list[Layer] = []
        self.layer_by_name: dict[str, Layer] = {}
        self._nodes: list[_Node] = []
        for i in order:
            c = cfgs[i]
            _, bkeys, tkeys = wiring[i]
            # each net gets its own copy of the Params, so no layer can change another net's
            layer = c.cls(c.name, c.params.model_copy(deep=True), phase=self.phase,
                          dtype=self.dtype,
                          rng=np.random.default_rng([self.seed, c.index]),
                          base_dir=config.base_dir, param_specs=c.spec.param,
                          shared_params=self._shared_by_name,
                          bottom_names=[blobs[k].name for k in bkeys],
                          top_names=[blobs[k].name for k in tkeys], shard=self.shard)
            layer.propagate_down = [False] * len(bkeys)
            weights = self._loss_weights(c, len(tkeys))
            node = _Node(layer, c, [blobs[k] for k in bkeys], [blobs[k] for k in tkeys], weights)
            self._nodes.append(node)
            self.layers.append(layer)
            self.layer_by_name[c.name] = layer

        self._all_blobs = blobs
        self.blobs: dict[str, Blob] = {b.name: blobs[latest[b.name]] for b in blobs.values()}
        self._input_slots = {t.name: (n, j) for n in self._nodes if n.layer.is_input
                             for j, t in enumerate(n.tops)}
        self.inputs = list(self._input_slots)
        self.outputs = [b.name for k, b in blobs.items()
                        if consumers.get(k, 0) == 0 and latest[b.name] == k]
        self._losses = [(t, w) for n in self._nodes for t, w in zip(n.tops, n.loss_weights)
                        if w != 0]
        for node in self._nodes:  # setup and reshape in order: each needs its bottoms' shapes
            try:
                node.layer.setup([b.shape for b in node.bottoms])
            except UserError as err:
                raise _located(err, node) from None
            self._reshape_node(node)
        self._check_labels()
        self.params: dict[str, dict[str, Param]] = {
            n.layer.name: n.layer.params for n in self._nodes if n.layer.params}

    def _check_labels(self) -> None:
        """Tell each data layer which of its tops some layer reads as class labels, and of how
        many classes (`Layer.label_bottoms`), so it checks them now (`Layer.check_labels`)
        instead of a loss layer finding a bad one batches later."""
        made_by = {id(t): (n, j) for n in self._nodes for j, t in enumerate(n.tops)}
        for node in self._nodes:
            for b, (classes, ignore) in node.layer.label_bottoms().items():
                producer, top = made_by[id(node.bottoms[b])]
                if producer.layer.epoch() is None:
                    continue  # fed or computed labels: the reading layer checks each batch
                try:
                    producer.layer.check_labels(top, classes, ignore)
                except UserError as err:
                    err.args = (f"{err}; layer {node.layer.name} ({node.layer.type}) reads "
                                f"top \"{producer.tops[top].name}\" as labels of "
                                f"{classes} classes",)
                    raise _located(err, producer) from None

    @staticmethod
    def _loss_weights(c: LayerConfig, n_tops: int) -> list[float]:
        if c.spec.loss_weight is not None:
            if len(c.spec.loss_weight) != n_tops:
                raise UserError(f"{c.loc}: layers[{c.index}] ({c.name}): loss_weight has "
                                f"{len(c.spec.loss_weight)} values for {n_tops} top(s)")
            if not c.cls.has_backward and any(w != 0 for w in c.spec.loss_weight):
                raise UserError(f"{c.loc}: layers[{c.index}] ({c.name}): loss_weight on "
                                f"{a_an(c.spec.type)} layer, which has no gradient: its output "
                                f"cannot be trained on; remove loss_weight (or set it to 0)")
            return list(c.spec.loss_weight)
        return [1.0 if (c.cls.is_loss and j == 0) else 0.0 for j in range(n_tops)]

    @staticmethod
    def _toposort(cfgs, wiring, blobs) -> list[int]:
        """Kahn's algorithm, taking the earliest layer in file order whenever there is a choice."""
        n = len(cfgs)
        deps = [set(blobs[k].producer for k in wiring[i][1]) - {i} for i in range(n)]
        users = [[] for _ in range(n)]
        for i, d in enumerate(deps):
            for j in d:
                users[j].append(i)
        remaining = [len(d) for d in deps]
        ready = sorted(i for i in range(n) if remaining[i] == 0)
        order = []
        while ready:
            i = ready.pop(0)
            order.append(i)
            for u in users[i]:
                remaining[u] -= 1
                if remaining[u] == 0:
                    ready.append(u)
                    ready.sort()
        if len(order) < n:
            stuck = [cfgs[i] for i in range(n) if remaining[i] > 0]
            names = ", ".join(f"{c.name} ({c.loc})" for c in stuck)
            raise UserError(f"{stuck[0].loc}: layers[{stuck[0].index}] ({stuck[0].name}): the "
                            f"net has a cycle through layers {names}")
        return order

    def _reshape_node(self, node: _Node) -> None:
        layer = node.layer
        try:
            shapes = layer.reshape([b.shape for b in node.bottoms])
        except UserError as err:
            raise _located(err, node) from None
        if len(shapes) != len(node.tops):
            raise RuntimeError(f"layer {layer.name} ({layer.type}) returned "
                               f"{len(shapes)} top shapes for {len(node.tops)} tops")
        for blob, shape in zip(node.tops, shapes):
            blob.shape = tuple(int(s) for s in shape)

    def reshape(self) -> None:
        """Reshape every layer in topological order (after an input shape changed).

        All or nothing: when a layer rejects its new bottom shapes, every layer and blob is
        put back exactly as it was (buffers included, so the last fed batch is still there)
        and the layer's UserError is raised.
        """
        self._reshape()

    def _reshape(self, change=None) -> None:
        """`reshape`, after calling `change()` (which sets new shapes in some layers) inside
        the same all-or-nothing: a rejection undoes the change too."""
        saved_layers = [dict(vars(n.layer)) for n in self._nodes]
        saved_blobs = [(b, b.shape, b.data) for b in self._all_blobs.values()]
        try:
            if change is not None:
                change()
            for node in self._nodes:
                self._reshape_node(node)
        except BaseException:
            for node, attrs in zip(self._nodes, saved_layers):
                vars(node.layer).clear()
                vars(node.layer).update(attrs)
            for blob, shape, data in saved_blobs:
                blob.shape, blob.data = shape, data
            raise
        self._plans.clear()

    # -- passes over the data (tests) ---------------------------------------------------
    def _data_layers(self) -> list[tuple[Layer, tuple[int, int]]]:
        return [(layer, e) for layer in self.layers if (e := layer.epoch()) is not None]

    def epoch(self) -> tuple[int, int] | None:
        """(samples, batch size) of one pass over this net's data, as its data layers declare
        (`Layer.epoch`); None when no layer reads a data set. Data layers of different sizes
        are a UserError: one pass over both is not defined."""
        found = self._data_layers()
        if not found:
            return None
        (first, e0), *rest = found
        for layer, e in rest:
            if e[0] != e0[0]:
                raise UserError(f"net {self.name} ({self.phase}): data layers {first.name} "
                                f"({e0[0]} samples) and {layer.name} ({e[0]} samples) differ "
                                f"in size, so one pass over the data is not defined; give "
                                f"the number of batches (test_iter, --iterations)")
        return e0[0], self.batch_size()

    def batch_size(self) -> int | None:
        """The batch its data layers read per forward, all processes together; None when no
        layer reads a data set. Data layers of different batch sizes are a UserError."""
        found = self._data_layers()
        if not found:
            return None
        (first, e0), *rest = found
        for layer, e in rest:
            if e[1] != e0[1]:
                raise UserError(f"net {self.name} ({self.phase}): data layers {first.name} "
                                f"(batch_size {e0[1]}) and {layer.name} (batch_size {e[1]}) "
                                f"must read batches of one size")
        return e0[1]

    def rewind(self) -> None:
        """Every data layer starts again at its first sample (`Layer.rewind`)."""
        for layer, _ in self._data_layers():
            layer.rewind()

    def set_batch_size(self, n: int) -> None:
        """Data layers give batches of `n` samples from the next forward on; the net reshapes
        (all or nothing: a size some layer rejects leaves the net as it was)."""
        layers = [layer for layer, _ in self._data_layers()]
        self._reshape(lambda: [layer.set_batch_size(n) for layer in layers])

    def _share_params(self, other: "Net") -> set[int]:
        """Use `other`'s Param objects for every layer of the same name (test nets); returns
        the ids of the params taken from `other` (they live in its buffer, not this net's)."""
        taken = set()
        for name, params in self.params.items():
            src = other.params.get(name)
            if src is None:
                continue
            for pname, param in list(params.items()):
                if pname in src:
                    if src[pname].shape != param.shape:
                        raise UserError(f"layer {name}: param {pname} has shape {param.shape} "
                                        f"in the {self.phase} net but {src[pname].shape} in "
                                        f"the {other.phase} net")
                    params[pname] = src[pname]
                    taken.add(id(src[pname]))
        return taken

    # -- params ---------------------------------------------------------------------------
    def learnable_params(self) -> list[Param]:
        """Every distinct Param (shared params once), in layer order."""
        seen, out = set(), []
        for layer in self.layers:
            for p in layer.params.values():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def clear_param_diffs(self) -> None:
        """Zero the gradients of this net's params: one pass over its grad buffer (and one
        per param it shares from another net's buffer)."""
        self.param_buffer.grad.fill(0)
        for p in self._foreign_params:
            p.grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """`<layer>.<param>` -> data, the keys used in snapshots."""
        return {f"{lname}.{pname}": p.data for lname, ps in self.params.items()
                for pname, p in ps.items()}

    def copy_from(self, weights: dict[str, np.ndarray], source: str = "weights",
                  strict: bool = False) -> list[str]:
        """Copy params by layer name (Caffe's fine-tuning rule). Returns the keys copied.

        A key whose layer is not in this net is ignored unless `strict`. Shapes are checked
        before anything is copied: every mismatch is listed, in the net's order, in one
        UserError naming each layer and both shapes (and nothing is copied).
        """
        mine = self.state_dict()
        order = {key: i for i, key in enumerate(mine)}
        unknown = [key for key in weights if key not in mine]
        if strict and unknown:
            raise UserError(f"{source}: {', '.join(sorted(unknown))} "
                            f"{'has' if len(unknown) == 1 else 'have'} no matching param in "
                            f"net {self.name}")
        known = sorted((key for key in weights if key in mine), key=order.__getitem__)
        wrong = [key for key in known if tuple(weights[key].shape) != mine[key].shape]
        if wrong:
            lines = [f"layer {key.rpartition('.')[0]}: param {key.rpartition('.')[2]} has shape "
                     f"{tuple(weights[key].shape)} in the file but {mine[key].shape} in the net"
                     for key in wrong]
            layers = list(dict.fromkeys(key.rpartition(".")[0] for key in wrong))
            example = f"{layers[0]}_new"
            raise UserError(f"{source}: " + "; ".join(lines)
                            + f"; to initialize {' and '.join(layers)} afresh instead, rename "
                              f"{'it' if len(layers) == 1 else 'them'} in the net (e.g. "
                              f"{example}): weights are matched by layer name")
        for key in known:
            mine[key][...] = weights[key]
        return known

    # -- forward --------------------------------------------------------------------------
    def forward(self, inputs: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Feed `inputs` (blob name -> array, every Input blob) and run every layer; return
        copies of the outputs. Without `inputs`, the blobs keep what was fed last."""
        if inputs:
            self._check_inputs(inputs)
            missing = [name for name in self.inputs if name not in inputs]
            if missing:
                raise UserError(f"net {self.name}: no value given for input "
                                f"{', '.join(repr(m) for m in missing)}; feed every input "
                                f"({', '.join(self.inputs)}) together, so no blob keeps a "
                                f"stale batch")
            self.feed(inputs)
        self.run_forward()
        return {name: np.array(self.blobs[name].data, copy=True) for name in self.outputs}

    def feed(self, inputs: dict[str, Any]) -> None:
        """Copy arrays into Input blobs; a new shape (batch size...) reshapes the net first.

        A shape some layer cannot take is a UserError naming the layer, the new and the old
        input shapes; the net is then left exactly as it was.
        """
        self._check_inputs(inputs)
        arrays, changed = [], {}
        for name, value in inputs.items():
            arr = np.asarray(value)
            node, idx = self._input_slots[name]
            if arr.shape != node.tops[idx].shape:
                changed[name] = arr.shape
            arrays.append((node, idx, arr))
        if changed:
            self._reshape_inputs(changed)
        for node, idx, arr in arrays:
            node.layer.feed(idx, arr)

    def _check_inputs(self, inputs) -> None:
        for name in inputs:
            if name not in self.inputs:
                raise UserError(f"blob \"{name}\" is not an input of net {self.name}"
                                f"{did_you_mean(name, self.inputs)}; inputs: "
                                f"{', '.join(self.inputs) or '(none: the net reads its own data)'}")

    def _reshape_inputs(self, shapes: dict[str, tuple[int, ...]]) -> None:
        old = {name: self.blobs[name].shape for name in shapes}
        nodes = {id(self._input_slots[name][0]): self._input_slots[name][0] for name in shapes}
        saved = {key: [t.shape for t in node.tops] for key, node in nodes.items()}
        for key, node in nodes.items():
            node.layer.feed_shapes([shapes.get(t.name, t.shape) for t in node.tops])
        try:
            self.reshape()
        except UserError as err:
            for key, node in nodes.items():
                node.layer.feed_shapes(saved[key])
            fed = ", ".join(f"\"{n}\" {s}" for n, s in shapes.items())
            was = ", ".join(f"{s}" for s in old.values())
            raise UserError(f"net {self.name} cannot take input {fed} (it has {was}): {err}; "
                            f"the net keeps its previous shapes") from None

    def add_hook(self, hook: NetHook) -> NetHook:
        """Call `hook` around every layer's forward and backward until `remove_hook`."""
        self._hooks.append(hook)
        return hook

    def remove_hook(self, hook: NetHook) -> None:
        """Stop calling a hook given to `add_hook`."""
        self._hooks.remove(hook)

    def run_forward(self, *, rerun: bool = False) -> float:
        """Forward through every layer; sets and returns the weighted loss.

        `rerun`: skip the layers without bottoms (data, inputs), so the layers recompute the
        current batch instead of reading the next.
        """
        hooks = self._hooks
        for node in self._nodes:
            if rerun and not node.bottoms:
                continue
            layer = node.layer
            for h in hooks:
                h.before_forward(layer)
            try:
                tops = layer.forward([b.data for b in node.bottoms])
            except UserError as err:  # bad data at run time (a label out of range...)
                raise _located(err, node) from None
            for h in hooks:
                h.after_forward(layer, tops)
            for blob, top in zip(node.tops, tops):
                blob.data = top
        loss = 0.0
        for blob, w in self._losses:
            loss += w * float(blob.data.sum())
        self.loss = loss
        return loss

    # -- backward -------------------------------------------------------------------------
    def backward(self, diffs: dict[str, Any] | None = None, *, accumulate: bool = False) -> None:
        """Backpropagate from the losses (scaled by loss_weight) or from given output diffs.

        Param gradients are zeroed first unless `accumulate` (the solver's iter_size).
        """
        if not accumulate:
            self.clear_param_diffs()
        if diffs:
            seeds = []
            for name, d in diffs.items():
                if name not in self.blobs:
                    raise UserError(f"backward: no blob \"{name}\" in net {self.name}"
                                    f"{did_you_mean(name, self.blobs)}")
                blob = self.blobs[name]
                d = np.asarray(d, dtype=self.dtype)
                if d.shape != blob.shape:
                    raise UserError(f"backward: diff of \"{name}\" has shape {d.shape}, the "
                                    f"blob has shape {blob.shape}")
                seeds.append((blob, d))
        else:
            seeds = self._losses
        self._run_backward(seeds)

    def _plan(self, seed_blobs: frozenset) -> list:
        """The layers to run backward for these seed blobs, with each one's propagate_down."""
        plan = self._plans.get(seed_blobs)
        if plan is not None:
            return plan
        needs: set[str] = set()  # blob keys whose diff someone needs

        def wanted(node) -> list[bool]:
            # propagate_down, when given, decides per bottom (Caffe's Net::AppendBottom)
            given = node.config.spec.propagate_down
            if given is not None:
                return list(given)
            return [b.key in needs for b in node.bottoms]

        for node in self._nodes:
            if node.layer.params or any(wanted(node)) or (
                    self.force_backward and not node.bottoms):
                needs.update(t.key for t in node.tops)
        reaches: set[str] = set(seed_blobs)
        steps = []
        for node in reversed(self._nodes):
            if not node.layer.has_backward or not any(t.key in reaches for t in node.tops):
                continue
            pd = wanted(node)
            if not (node.layer.params or any(pd)):
                continue
            reaches.update(b.key for b, p in zip(node.bottoms, pd) if p)
            steps.append((node, pd))
        counts: dict[str, int] = {k: 1 for k in seed_blobs}
        for node, pd in steps:
            for b, p in zip(node.bottoms, pd):
                if p:
                    counts[b.key] = counts.get(b.key, 0) + 1
        touched = [b for b in self._all_blobs.values() if b.key in counts or b.key in reaches]
        plan = (steps, {k for k, n in counts.items() if n > 1} | set(seed_blobs), touched)
        self._plans[seed_blobs] = plan
        return plan

    def _run_backward(self, seeds) -> None:
        steps, summed, touched = self._plan(frozenset(b.key for b, _ in seeds))
        for blob in touched:
            blob.diff = None
        dtype = self.dtype
        for blob, d in seeds:
            buf = blob.own_diff(dtype)
            if blob.diff is None:
                np.copyto(buf, d)
                blob.diff = buf
            else:
                buf += d
        hooks = self._hooks
        for node, pd in steps:
            layer = node.layer
            layer.propagate_down = pd
            top_diffs = [t.diff if t.diff is not None else t.zeros(dtype) for t in node.tops]
            for h in hooks:
                h.before_backward(layer)
            bottom_diffs = layer.backward(top_diffs)
            for h in hooks:
                h.after_backward(layer, bottom_diffs)
            for blob, d, p in zip(node.bottoms, bottom_diffs, pd):
                if d is None or not p:
                    continue
                if blob.diff is None:
                    if blob.key in summed:
                        buf = blob.own_diff(dtype)
                        np.copyto(buf, d)
                        blob.diff = buf
                    else:
                        blob.diff = d
                else:
                    np.add(blob.diff, d, out=blob.diff)

    # -- conveniences ---------------------------------------------------------------------
    def forward_backward(self) -> float:
        """Forward, then backward from the losses (param grads zeroed first, as `backward()`);
        returns the weighted loss."""
        loss = self.run_forward()
        self.backward()
        return loss

    def find_nonfinite(self) -> tuple[str, str] | None:
        """(layer, top) of the first layer, in forward order, whose top holds a NaN or inf.

        Checks the batch on hand (the tops of data and input layers as they are), then
        re-runs forward on it with a hook that watches every top. None when all are finite.
        """
        for node in self._nodes:
            if not node.bottoms:
                for blob in node.tops:
                    if blob.data is not None and not np.isfinite(blob.data).all():
                        return node.layer.name, blob.name
        watch = self.add_hook(_FirstNonFinite())
        try:
            self.run_forward(rerun=True)
        finally:
            self.remove_hook(watch)
        return watch.found

    def wiring(self) -> list[tuple[Layer, list[Blob], list[Blob]]]:
        """(layer, bottom blobs, top blobs) in forward order: the exact blob versions each
        layer reads and writes (an in-place top is a new version of its bottom)."""
        return [(n.layer, n.bottoms, n.tops) for n in self._nodes]

    # -- state for resuming -------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """What resuming needs besides the params: each layer's own state (data cursors) as
        `layer.<layer>.<key>` and each layer's random generator as `rng.<layer>`."""
        out = {}
        for layer in self.layers:
            for key, arr in layer.state().items():
                out[f"layer.{layer.name}.{key}"] = np.asarray(arr)
            text = json.dumps(layer.rng.bit_generator.state)
            out[f"rng.{layer.name}"] = np.frombuffer(text.encode(), np.uint8)
        return out

    def load_state(self, state: dict[str, np.ndarray], source: str,
                   required: bool = True) -> None:
        """Restore what `state()` gave. A layer with state that `state` lacks is an error
        naming `source` unless not `required` (a test net added since the snapshot)."""
        layer_states: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in state.items():
            if key.startswith("layer."):
                lname, _, name = key[len("layer."):].rpartition(".")
                layer_states.setdefault(lname, {})[name] = arr
        for layer in self.layers:
            if layer.state():
                if layer.name in layer_states:
                    layer.load_state(layer_states[layer.name])
                elif required:
                    raise UserError(f"{source}: the snapshot has no state for layer "
                                    f"{layer.name} ({self.phase} net); written by a "
                                    f"different net?")
            rng = state.get(f"rng.{layer.name}")
            if rng is not None:
                try:
                    layer.rng.bit_generator.state = json.loads(rng.tobytes().decode())
                except (ValueError, TypeError, KeyError) as exc:
                    raise UserError(f"{source}: bad random state of layer {layer.name}: "
                                    f"{exc}") from None

    def __repr__(self) -> str:
        return f"<Net {self.name} ({self.phase}): {len(self.layers)} layers>"
