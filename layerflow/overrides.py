"""Command-line overrides: `--set KEY=VALUE`, applied to the YAML before it is validated.

    --set base_lr=0.05                     a solver key (any key of solver.yaml)
    --set stepvalue=[1000,2000]            VALUE is YAML: numbers, true/false, lists, maps
    --set layers.ip1.num_output=200        a key of the layer named ip1 (every layer of that
                                           name: the train and test Data layers often share
                                           one, and the run says so)
    --set layers.data@test.batch_size=50   only the layer of that name in one phase
    --set layers.ip1.weight_filler.std=0.1 a nested key
    --set layers.ip1.param.0.lr_mult=2     a list item by index
    --set net.dtype=float64                a net-level key (name, dtype, force_backward...)

VALUE is parsed with yaml.safe_load (`1e-3` is a number too, as YAML 1.2 reads it). An
overridden key's location becomes the `--set ...` argument itself, so a bad value is reported
as `--set base_lr=-1: base_lr: Input should be greater than 0`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from .config import Source
from .errors import UserError, did_you_mean

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


@dataclass
class Override:
    arg: str          # "--set layers.ip1.num_output=200", as typed
    key: str          # "layers.ip1.num_output"
    value: object     # 200


def parse_value(text: str, arg: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{arg}: the value is not valid YAML: {problem}") from None
    if isinstance(value, str) and _FLOAT.match(value):
        value = float(value)  # YAML 1.1 reads 1e-3 as a string
    return value


class Overrides:
    """The `--set` arguments of one command, applied with `apply_solver` and `apply_net`."""

    def __init__(self, items: list[str] | None):
        self.items: list[Override] = []
        self.notices: list[str] = []  # what the user should know (a name matching 2 layers)
        for item in items or []:
            arg = f"--set {item}"
            key, eq, text = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise UserError(f"{arg}: expected KEY=VALUE, e.g. --set base_lr=0.05 or "
                                f"--set layers.ip1.num_output=200")
            if any(part == "" for part in key.split(".")):
                raise UserError(f"{arg}: empty part in the key \"{key}\"")
            self.items.append(Override(arg, key, parse_value(text, arg)))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    # -- the solver file -----------------------------------------------------------------
    def apply_solver(self, src: Source) -> None:
        """Set every solver key (a key without dots, other than layers./net.)."""
        for o in self.items:
            if _is_net_key(o.key):
                continue
            if "." in o.key:
                raise UserError(f"{o.arg}: solver keys have no dots; a layer key is "
                                f"layers.<layer name>.<key> and a net key net.<key>")
            _set(src, (o.key,), o.value, o.arg)

    # -- the net file --------------------------------------------------------------------
    def apply_net(self, src: Source) -> None:
        """Set layer keys (`layers.<name>.<key>...`) and net keys (`net.<key>...`)."""
        for o in self.items:
            if o.key.startswith("net."):
                _set(src, _path(o.key.split(".")[1:]), o.value, o.arg)
            elif o.key.startswith("layers."):
                self._apply_layer(src, o)

    def _apply_layer(self, src: Source, o: Override) -> None:
        layers = src.data.get("layers") if isinstance(src.data, dict) else None
        if not isinstance(layers, list):
            raise UserError(f"{o.arg}: {src.file} has no list of layers")
        rest = o.key[len("layers."):]
        names = [d.get("name") for d in layers if isinstance(d, dict)]
        names = [n for n in names if isinstance(n, str)]
        # the longest layer name that prefixes the rest, so names may contain dots
        match = max((n for n in names if rest.startswith(n + ".") or rest.startswith(n + "@")),
                    key=len, default=None)
        if match is None:
            target = rest.split(".")[0].split("@")[0]
            if target in names:
                raise UserError(f"{o.arg}: give a key of layer {target}, e.g. "
                                f"layers.{target}.<key>=VALUE")
            raise UserError(f"{o.arg}: the net {src.file} has no layer \"{target}\""
                            f"{did_you_mean(target, names)}; its layers: {', '.join(names)}")
        rest = rest[len(match):]  # ".<key>" or "@<phase>.<key>"
        phase = None
        if rest.startswith("@"):
            phase, dot, rest = rest[1:].partition(".")
            if phase not in ("train", "test") or not dot:
                raise UserError(f"{o.arg}: after {match}@ comes a phase, train or test, then "
                                f"the key: layers.{match}@test.<key>=VALUE")
        else:
            rest = rest[1:]
        path = _path(rest.split("."))
        targets = [i for i, entry in enumerate(layers) if isinstance(entry, dict)
                   and entry.get("name") == match and (phase is None or _in_phase(entry, phase))]
        if not targets:
            raise UserError(f"{o.arg}: the net {src.file} has no layer \"{match}\" in the "
                            f"{phase} phase")
        for i in targets:
            _set(src, ("layers", i) + path, o.value, o.arg)
        if len(targets) > 1:
            key = ".".join(map(str, path))
            which = " and ".join(f"layers[{i}] ({_phases(layers[i])})" for i in targets)
            self.notices.append(
                f"{o.arg}: {len(targets)} layers are named {match}; it sets each: {which}; "
                f"to set one, name its phase: --set layers.{match}@train.{key}=... or "
                f"layers.{match}@test.{key}=...")


def _phase_rules(entry: dict, key: str) -> list[str] | None:
    """The phases of an include/exclude entry as written ({phase: test} or a list of them)."""
    rules = entry.get(key)
    if rules is None:
        return None
    rules = rules if isinstance(rules, list) else [rules]
    return [str(r.get("phase", "")).lower() for r in rules if isinstance(r, dict)]


def _in_phase(entry: dict, phase: str) -> bool:
    """Whether a layer entry (as written, before validation) is in `phase`: the net's rule."""
    include, exclude = _phase_rules(entry, "include"), _phase_rules(entry, "exclude")
    if include is not None and phase not in include:
        return False
    return not (exclude is not None and phase in exclude)


def _phases(entry: dict) -> str:
    phases = [p for p in ("train", "test") if _in_phase(entry, p)]
    return "both phases" if len(phases) == 2 else f"{phases[0]} phase" if phases else "no phase"


def _is_net_key(key: str) -> bool:
    return key.startswith("layers.") or key.startswith("net.")


def _path(parts: list[str]) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _set(src: Source, path: tuple, value, arg: str) -> None:
    """data[path] = value, creating maps on the way; marks of the path become `arg`."""
    node = src.data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                raise UserError(f"{arg}: {'.'.join(map(str, path[:depth]))} has "
                                f"{len(node)} items, no item {part}")
            node = node[part]
        else:
            raise UserError(f"{arg}: {'.'.join(map(str, path[:depth + 1]))} is not a map "
                            f"(it is {node!r})")
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int):
        if last > len(node):
            raise UserError(f"{arg}: {'.'.join(map(str, path[:-1]))} has {len(node)} items, "
                            f"cannot set item {last}")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        raise UserError(f"{arg}: {'.'.join(map(str, path[:-1]))} is not a map "
                        f"(it is {node!r})")
    for p in [p for p in src.marks if p[:len(path)] == path]:
        del src.marks[p]
    for depth in range(1, len(path) + 1):
        if path[:depth] not in src.marks or depth == len(path):
            src.marks[path[:depth]] = arg
