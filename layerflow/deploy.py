"""Deploy nets: the net a trained model is used with, derived from its train/test net.

Caffe users wrote a `deploy.prototxt` by hand; layerflow derives it from the net YAML
(`derive`), as a new YAML document, never by editing a built net:

  1. the layers of the test phase, with every bottom and top written out (the stack rule no
     longer holds once layers are left out), without include/exclude and loss_weight;
  2. each layer's `Layer.deploy` hook says what it becomes: kept (the default), left out (the
     default for a loss) or replaced. Built in: a Data layer becomes an Input of one sample's
     shape (batch 1: the net reshapes to any batch on feed) and, when its transform is not the
     identity, a Transform layer doing that transform (scale, mean), so the deploy net takes
     raw samples and they get exactly what training saw; its other tops are labels.
     SoftmaxLoss becomes Softmax (its axis kept), SigmoidCrossEntropyLoss Sigmoid; a layer
     that reads class labels (SoftmaxLoss, Accuracy, the other classifier losses) declares its
     label bottom, and an Input drops the tops that hold labels;
  3. a layer that reads a label, or a blob that only a left-out layer made, is left out as well
     (Accuracy, or anything a plugin computes from the labels). Labels are found in a first
     pass over the layers, so this holds wherever the reader stands in the file.
A net that already is a deploy net (Input layers, no losses) comes out as it went in.

The new document's layers point at the lines of the original file, so an error in the deploy
net still names where the culprit was written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import NetConfig, Source, parse_net
from .errors import UserError
from .net import in_phase

# keys of a layer entry that do not carry over to a deploy net
_DROPPED_KEYS = ("include", "exclude", "loss_weight")


@dataclass
class DeployStep:
    """One layer of the test net, as `Layer.deploy` sees it.

    name, type: the layer's; entry: its YAML entry (a copy, with explicit `bottom` and `top`,
    and without include/exclude/loss_weight), the one kept when the hook returns None;
    p: its validated Params; bottoms, tops: blob names; base_dir: folder of the net YAML.
    """

    name: str
    type: str
    entry: dict[str, Any]
    p: Any
    bottoms: list[str]
    tops: list[str]
    base_dir: Path
    _deriving: "_Derivation"

    def label(self, top: str, *, of: str | None = None, name: str | None = None) -> None:
        """Declare `top` a label: every layer that reads it is left out of the deploy net.
        `of`: the input blob it labels, `name`: what the labels are called in data files (a
        CSV column, an .npz array), so `layerflow predict` can find them beside new inputs."""
        self._deriving.dead.add(top)
        self._deriving.marked.add(top)
        if of is not None:
            self._deriving.labels[of] = name or top

    def unique(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`... : a name no layer or blob of the net has yet."""
        return self._deriving.unique(base)

    def is_label(self, top: str) -> bool:
        """Whether some layer of the net declared `top` a label (an Input drops such tops)."""
        return top in self._deriving.known_labels


@dataclass
class _Derivation:
    taken: set[str]
    known_labels: set[str]                           # labels found by the first pass
    dead: set[str] = field(default_factory=set)     # labels, and tops of left-out layers
    marked: set[str] = field(default_factory=set)   # labels declared in this pass
    labels: dict[str, str] = field(default_factory=dict)

    def unique(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name


def wiring(config: NetConfig, phase: str) -> list[tuple[Any, list[str] | None, list[str]]]:
    """(layer config, bottom names, top names) of the layers in `phase`, in file order, with
    the net's stack rule applied: no `bottom` means the previous layer's first top, no `top`
    the layer's name. Bottoms are None where the rule finds nothing (the net reports it)."""
    out = []
    prev: str | None = None
    for c in config.layers:
        if not in_phase(c, phase):
            continue
        if c.spec.bottom is not None:
            bottoms: list[str] | None = list(c.spec.bottom)
        elif c.cls.num_bottoms == 0:
            bottoms = []
        else:
            bottoms = [prev] if prev is not None else None
        tops = list(c.spec.top) if c.spec.top is not None else [c.name]
        out.append((c, bottoms, tops))
        prev = tops[0] if tops else prev
    return out


def derive(config: NetConfig) -> NetConfig:
    """The deploy net of `config` (see the module docstring), as a validated NetConfig.

    Two passes over the layers: the first finds every label (a data layer's, or a bottom a
    classifier reads as labels), so that the second leaves out whatever reads one wherever it
    stands in the file, and an Input drops its label tops. Its `labels` maps each Input that
    replaced a data layer to the name of that data's labels. Raises a UserError naming the file
    when nothing is left to run.
    """
    src = config.source
    wired = wiring(config, "test")
    if not wired:
        raise UserError(f"{src.file}: the net has no layers in phase test, so no deploy net")
    first = _derive_pass(src, wired, set())
    second = _derive_pass(src, wired, first[1].marked)
    entries, deriving, computes = second
    if not computes:
        raise UserError(f"{src.file}: every layer of the test phase but the data is left out "
                        f"of the deploy net (losses, and layers that read labels); nothing "
                        f"would compute a prediction")
    deployed = parse_net(_source(src, entries))
    for (index, _), layer in zip(entries, deployed.layers):
        layer.index = index  # messages name the layer the user wrote
    deployed.labels = dict(deriving.labels)
    return deployed


def _derive_pass(src: Source, wired, known_labels: set[str]
                 ) -> tuple[list[tuple[int, dict]], _Derivation, bool]:
    """(the new entries with the index of the layer each comes from, the derivation's state,
    whether a layer that computes something is kept)."""
    raw_layers = src.data["layers"]
    taken = {c.name for c, _, _ in wired} | {t for _, _, tops in wired for t in tops}
    deriving = _Derivation(taken, set(known_labels), dead=set(known_labels))
    entries: list[tuple[int, dict]] = []
    computes = False
    for c, bottoms, tops in wired:
        entry = {k: v for k, v in raw_layers[c.index].items() if k not in _DROPPED_KEYS}
        if bottoms:
            entry["bottom"] = list(bottoms)
        entry["top"] = list(tops)
        step = DeployStep(c.name, c.spec.type, dict(entry), c.params.model_copy(deep=True),
                          list(bottoms or []), list(tops), src.base_dir, deriving)
        try:
            replacement = c.cls.deploy(step)
        except UserError as err:
            msg = str(err).removeprefix(f"layer {c.name} ({c.spec.type}): ")
            raise UserError(f"{c.loc}: layers[{c.index}] ({c.name}): {msg}") from None
        new = [entry] if replacement is None else list(replacement)
        reads = {b for e in new for b in e.get("bottom") or []}
        if not new or reads & deriving.dead:
            deriving.dead.update(tops)  # left out: whatever reads its tops goes too
            continue
        made = {t for e in new for t in e.get("top") or [e["name"]]}
        deriving.dead.update(t for t in tops if t not in made)
        deriving.dead.difference_update(made)
        deriving.taken.update(e["name"] for e in new)
        entries += [(c.index, e) for e in new]
        computes = computes or bool(bottoms)
    return entries, deriving, computes


def _source(src: Source, entries: list[tuple[int, dict]]) -> Source:
    """A YAML document of the deploy net whose positions are those of the original layers."""
    data = {k: v for k, v in src.data.items() if k not in ("layers", "force_backward")}
    data["layers"] = [e for _, e in entries]
    marks = {k: v for k, v in src.marks.items() if not (k and k[0] == "layers")}
    layer_marks: dict[int, list] = {}
    for path, mark in src.marks.items():
        if len(path) > 2 and path[0] == "layers":
            layer_marks.setdefault(path[1], []).append((path[2:], mark))
    for j, (i, e) in enumerate(entries):
        base = src.marks.get(("layers", i), src.locate(("layers",)))
        marks[("layers", j)] = base
        for rest, mark in layer_marks.get(i, []):
            if rest[0] in e:  # keys the entry still has (a replacement has its own)
                marks[("layers", j) + rest] = mark
    return Source(src.file, data, marks)

