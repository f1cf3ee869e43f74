"""`layerflow gradcheck NET.yaml`: every layer of a net checked on its actual bottoms (Caffe's
CheckGradientNet), with the checker plugin authors call in their tests (`layerflow.gradcheck`).

The net is built in float64 and run forward once; then each layer's backward is compared with
central differences on the bottoms it just received: |a - n| <= threshold * max(|a|, |n|, 1).
Kinks (Caffe's kink, kink_range): a layer declaring class attributes `kink`/`kink_range` has
elements v with |v - kink| < kink_range skipped. Another layer that fails only at bottom
elements near `kink` (default 0, where ReLU-like layers bend) is checked again with bottom
elements within `kink_range` (default 2 * step) of it skipped; a layer that still fails is
checked once more skipping the failing bottom elements whose one-sided differences disagree
(kinks away from a fixed value: ties of MAX pooling over the uniform background of real
images); params are always checked in full (see `_check`). kink_range 0 skips nothing. Input
blobs are filled with N(0, 1) draws, except those a loss layer reads as labels or targets (its
second and later bottoms), which stay 0. At most `max_checks` elements per bottom and param
are checked (drawn at random; 0 = all).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..gradcheck import check_layer
from . import load_net, table


def check_net(net_path: str | Path, layer: str | None = None, *, phase: str = "train",
              step: float = 1e-3, threshold: float = 1e-6, kink: float | None = 0.0,
              kink_range: float | None = None, max_checks: int = 200, seed: int = 1701,
              plugins: list[str] | None = None) -> dict:
    net = load_net(net_path, phase, plugins, dtype="float64", seed=seed)
    if layer is not None and layer not in net.layer_by_name:
        from ..errors import did_you_mean

        raise UserError(f"{net_path}: no layer \"{layer}\" in the {phase} phase"
                        f"{did_you_mean(layer, net.layer_by_name)}; layers: "
                        f"{', '.join(net.layer_by_name)}")
    _fill_inputs(net, np.random.default_rng(seed))
    net.run_forward()
    reports = []
    for lay, bottoms, _ in net.wiring():
        if layer is not None and lay.name != layer:
            continue
        row = {"name": lay.name, "type": lay.type, "ok": True, "entries": [],
               "no_gradient": [], "problems": []}
        if not bottoms and not lay.params:
            row["skipped"] = "no bottom or param to check"
            reports.append(row)
            continue
        result = _check(lay, [b.data.copy() for b in bottoms], step, threshold, kink,
                        kink_range, max_checks, seed)
        label = {f"bottom[{i}]": f"bottom {b.name}" for i, b in enumerate(bottoms)}
        row["ok"] = result.ok
        row["entries"] = [{"name": label.get(e.name, e.name), "index": e.index,
                           "analytic": e.analytic, "numeric": e.numeric, "error": e.error,
                           "checked": e.checked, "skipped": e.skipped, "note": e.note,
                           "ok": e.error <= threshold} for e in result.entries]
        row["no_gradient"] = [label.get(n, n) for n in result.no_gradient]
        row["problems"] = list(result.problems)
        reports.append(row)
    return {"net": net.name, "phase": phase, "step": step, "threshold": threshold,
            "kink": kink, "kink_range": kink_range if kink_range is not None else 2 * step,
            "max_checks": max_checks, "ok": all(r["ok"] for r in reports), "layers": reports}


def _check(lay, bottoms, step, threshold, kink, kink_range, max_checks, seed):
    """One layer, with Caffe's kink rule applied where the failure is at a kink.

    A layer declaring `kink`/`kink_range` (class attributes) is checked with them. Any other
    layer is first checked with nothing skipped; if it fails only in bottoms whose worst
    element lies within `kink_range` (default 2 * step: a central difference reaches one step
    across) of `kink`, the bottoms are checked again with such elements skipped, so a ReLU
    passes while a wrong backward still fails at its other elements. Params are always
    checked in full (a bias filled with 0 sits exactly at 0).
    """
    common = dict(step=step, threshold=threshold, seed=seed, max_checks=max_checks or None)
    if lay.kink is not None:
        return check_layer(lay, bottoms, kink_range=kink_range, **common)
    first = check_layer(lay, bottoms, **common)
    near = 2 * step if kink_range is None else kink_range
    if first.ok or first.problems or kink is None or near <= 0:
        return first
    if any(e.error > threshold and not e.name.startswith("bottom[") for e in first.entries):
        return first  # a param fails: no kink rule applies to params
    failing = [e for e in first.entries if e.error > threshold]

    def at_kink(e) -> bool:
        if e.index is None:
            return False
        return abs(float(bottoms[int(e.name[7:-1])][e.index]) - kink) < near

    value_kinks = all(at_kink(e) for e in failing)
    second = check_layer(lay, bottoms, kink=kink, kink_range=near, **common) \
        if value_kinks else first
    note = f"elements within {near:g} of the kink at {kink:g} skipped"
    if not second.ok:  # kinks off a fixed value (MAX pooling ties): one-sided differences
        second = check_layer(lay, bottoms, kink=kink if value_kinks else None,
                             kink_range=near, one_sided_kinks=True, **common)
        note = (note + "; " if value_kinks else "") + \
            "failing elements whose one-sided differences disagree (a kink) skipped"
    in_first = {e.name: e for e in first.entries}
    for k, e in enumerate(second.entries):
        if e.name.startswith("bottom["):
            e.note = note
        else:
            second.entries[k] = in_first[e.name]
    return second


def _fill_inputs(net, rng) -> None:
    targets = {b.name for lay, bottoms, _ in net.wiring() if lay.is_loss for b in bottoms[1:]}
    feed = {name: rng.standard_normal(net.blobs[name].shape) for name in net.inputs
            if name not in targets}
    if feed:
        net.feed(feed)


def format_check(r: dict) -> str:
    rows = []
    for lay in r["layers"]:
        if "skipped" in lay:
            rows.append([lay["name"], lay["type"], "-", "", "", "", "", "", lay["skipped"]])
            continue
        if not lay["entries"]:
            rows.append([lay["name"], lay["type"], "-", "", "", "", "", "",
                         "no gradient to check"])
        for e in lay["entries"]:
            index = "-" if e["index"] is None else str(tuple(e["index"]))
            status = "ok" if e["ok"] else "FAIL"
            rows.append([lay["name"], lay["type"], e["name"], f"{e['checked']}/{e['skipped']}",
                         index, f"{e['analytic']:.6e}", f"{e['numeric']:.6e}",
                         f"{e['error']:.2e}", status + (f" ({e['note']})" if e["note"] else "")])
        for p in lay["problems"]:
            rows.append([lay["name"], lay["type"], "", "", "", "", "", "", f"FAIL: {p}"])
    failed = [lay["name"] for lay in r["layers"] if not lay["ok"]]
    head = (f"gradcheck of net {r['net']} ({r['phase']} phase, float64): step {r['step']:g}, "
            f"threshold {r['threshold']:g}, worst element per bottom and param")
    verdict = "all layers OK" if not failed else f"FAILED: {', '.join(failed)}"
    return "\n".join([head, table(["layer", "type", "of", "checked/skipped", "worst index",
                                   "analytic", "numeric", "error", "status"], rows,
                                  "llllrrrrl"), verdict])
