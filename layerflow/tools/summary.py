"""`layerflow summary`: per layer its tops' shapes, param count, forward FLOPs and activation
memory, and the totals (Caffe's summarize.py, plus what a modern model summary shows).

FLOPs come from each layer's `flops(bottom_shapes)` hook (0 when a layer does not say).
Activation memory is the bytes of the layer's tops in the net's dtype (forward only: training
keeps a diff of the same size for most of them). A param shared by several layers is counted
once, at the first layer that holds it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import fmt_bytes, fmt_int, load_net, table


def summarize(net_path: str | Path, phase: str = "train",
              plugins: list[str] | None = None) -> dict:
    """The summary of the net of one phase; "deploy": of its deploy net (`layerflow.deploy`)."""
    net = load_net(net_path, phase, plugins)
    itemsize = net.dtype.itemsize
    seen: set[int] = set()
    layers = []
    for layer, bottoms, tops in net.wiring():
        count, shapes, shared = 0, {}, []
        for pname, p in layer.params.items():
            shapes[pname] = list(p.shape)
            if id(p) in seen:
                shared.append(pname)
            else:
                seen.add(id(p))
                count += int(np.prod(p.shape))
        top_elems = sum(int(np.prod(t.shape)) for t in tops)
        layers.append({
            "name": layer.name, "type": layer.type,
            "bottoms": [b.name for b in bottoms],
            "tops": [{"name": t.name, "shape": list(t.shape)} for t in tops],
            "params": count, "param_shapes": shapes, "shared_params": shared,
            "flops": int(layer.flops([tuple(b.shape) for b in bottoms])),
            "activation_bytes": top_elems * itemsize,
        })
    total = {"params": sum(r["params"] for r in layers),
             "flops": sum(r["flops"] for r in layers),
             "activation_bytes": sum(r["activation_bytes"] for r in layers)}
    total["param_bytes"] = total["params"] * itemsize
    return {"net": net.name, "phase": phase, "dtype": str(net.dtype), "layers": layers,
            "total": total, "inputs": net.inputs, "outputs": net.outputs}


def format_summary(s: dict) -> str:
    rows = []
    for r in s["layers"]:
        tops = ", ".join(f"{t['name']} {tuple(t['shape'])}" for t in r["tops"]) or "-"
        params = fmt_int(r["params"]) + (" +shared" if r["shared_params"] else "")
        rows.append([r["name"], r["type"], tops, params, fmt_int(r["flops"]),
                     fmt_bytes(r["activation_bytes"])])
    t = s["total"]
    rows.append(["total", "", "", fmt_int(t["params"]), fmt_int(t["flops"]),
                 fmt_bytes(t["activation_bytes"])])
    head = f"net {s['net']} ({s['phase']} phase, {s['dtype']})"
    foot = (f"params: {t['params']:,} ({fmt_bytes(t['param_bytes'])}); forward FLOPs: "
            f"{t['flops']:,}; activations: {fmt_bytes(t['activation_bytes'])}")
    return "\n".join([head, table(["layer", "type", "tops (shape)", "params", "FLOPs",
                                   "memory"], rows, "lllrrr"), foot])
