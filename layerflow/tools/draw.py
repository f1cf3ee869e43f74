"""`layerflow draw NET.yaml -o FILE`: the graph of a net (Caffe's draw_net.py).

By the output's extension: .dot/.gv Graphviz DOT text, .mmd Mermaid text, .md Mermaid in a
fenced block (GitHub renders it), .svg/.png rendered by Graphviz's `dot` program when it is
installed. Layers are boxes (losses in red, data in green) labelled with their name, type and
the keys set in the YAML; blobs are ellipses labelled with their name and shape. An in-place
top is its own node, so the drawing shows the order of the in-place steps.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import UserError
from . import load_net, output_path
from .types import yaml_flow

TEXT_FORMATS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".md": "markdown"}
RENDERED_FORMATS = {".svg": "svg", ".png": "png"}


def graph(net) -> dict:
    """{'layers': [{id, name, type, label_keys, loss, data}], 'blobs': [{id, name, shape}],
    'edges': [(from id, to id)]} in forward order."""
    layers, blobs, edges, blob_ids = [], [], [], {}

    def blob_id(blob) -> str:
        if blob.key not in blob_ids:
            blob_ids[blob.key] = f"b{len(blob_ids)}"
            blobs.append({"id": blob_ids[blob.key], "name": blob.name,
                          "shape": list(blob.shape)})
        return blob_ids[blob.key]

    for i, (layer, bottoms, tops) in enumerate(net.wiring()):
        lid = f"l{i}"
        keys = {k: v for k, v in layer.p.model_dump(exclude_defaults=True).items()
                if isinstance(v, (int, float, str, bool))}
        layers.append({"id": lid, "name": layer.name, "type": layer.type,
                       "keys": dict(list(keys.items())[:3]), "loss": bool(layer.is_loss),
                       "data": not bottoms})
        for b in bottoms:
            edges.append((blob_id(b), lid))
        for t in tops:
            edges.append((lid, blob_id(t)))
    return {"name": net.name, "phase": net.phase, "layers": layers, "blobs": blobs,
            "edges": edges}


def _layer_lines(layer: dict) -> list[str]:
    """Name, (type), then the keys as the YAML spells them: `shuffle: true`, not True."""
    lines = [layer["name"], f"({layer['type']})"]
    lines += [f"{k}: {yaml_flow(v)}" for k, v in layer["keys"].items()]
    return lines


def _blob_lines(blob: dict) -> list[str]:
    return [blob["name"], str(tuple(blob["shape"]))]


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: dict, rankdir: str = "TB") -> str:
    out = [f"digraph {_dot_str(g['name'])} {{",
           f"  graph [rankdir={rankdir}, label={_dot_str(g['name'] + ' (' + g['phase'] + ')')}"
           f", fontname=Helvetica];",
           "  node [fontname=Helvetica, fontsize=11];", "  edge [arrowsize=0.7];"]
    for layer in g["layers"]:
        fill = "#f4b6b6" if layer["loss"] else "#b6e3b6" if layer["data"] else "#b6cdf4"
        label = "\\n".join(_dot_str(x)[1:-1] for x in _layer_lines(layer))
        out.append(f'  {layer["id"]} [shape=box, style="rounded,filled", fillcolor="{fill}", '
                   f'label="{label}"];')
    for blob in g["blobs"]:
        label = "\\n".join(_dot_str(x)[1:-1] for x in _blob_lines(blob))
        out.append(f'  {blob["id"]} [shape=ellipse, color="#888888", fontsize=10, '
                   f'label="{label}"];')
    out += [f"  {a} -> {b};" for a, b in g["edges"]]
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_str(s: str) -> str:
    return s.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(g: dict, rankdir: str = "TB") -> str:
    out = [f"flowchart {rankdir}"]
    for layer in g["layers"]:
        label = "<br/>".join(_mermaid_str(x) for x in _layer_lines(layer))
        out.append(f'  {layer["id"]}["{label}"]')
    for blob in g["blobs"]:
        label = "<br/>".join(_mermaid_str(x) for x in _blob_lines(blob))
        out.append(f'  {blob["id"]}(["{label}"])')
    out += [f"  {a} --> {b}" for a, b in g["edges"]]
    out.append("  classDef loss fill:#f4b6b6,stroke:#a33;")
    out.append("  classDef data fill:#b6e3b6,stroke:#3a3;")
    out.append("  classDef layer fill:#b6cdf4,stroke:#36a;")
    for cls in ("loss", "data", "layer"):
        ids = [x["id"] for x in g["layers"] if
               (x["loss"] if cls == "loss" else x["data"] and not x["loss"] if cls == "data"
                else not x["loss"] and not x["data"])]
        if ids:
            out.append(f"  class {','.join(ids)} {cls};")
    return "\n".join(out) + "\n"


def draw(net_path: str | Path, output: str | Path, phase: str = "train",
         rankdir: str = "TB", plugins: list[str] | None = None) -> dict:
    """Write the drawing of the net to `output`; returns {output, format, layers, blobs}.
    `phase` "deploy" draws the deploy net derived from it (`layerflow.deploy`)."""
    output = Path(output)
    ext = output.suffix.lower()
    if ext not in TEXT_FORMATS and ext not in RENDERED_FORMATS:
        raise UserError(f"{output}: cannot tell the format from the extension \"{ext}\"; use "
                        f".dot or .gv (Graphviz), .mmd or .md (Mermaid), .svg or .png")
    if rankdir not in ("TB", "BT", "LR", "RL"):
        raise UserError(f"--rankdir must be TB, BT, LR or RL, got {rankdir!r}")
    dot_exe = None
    if ext in RENDERED_FORMATS:
        dot_exe = shutil.which("dot")
        if dot_exe is None:
            raise UserError(f"{output}: rendering {ext} needs Graphviz's `dot` program, which "
                            f"is not installed (apt-get install graphviz, brew install "
                            f"graphviz); or write {output.with_suffix('.dot')} or "
                            f"{output.with_suffix('.mmd')} instead")
    g = graph(load_net(net_path, phase, plugins))
    g["phase"] = phase  # "deploy": the deploy net, built in the test phase
    if ext in (".dot", ".gv") or dot_exe:
        text = to_dot(g, rankdir)
    elif ext == ".mmd":
        text = to_mermaid(g, rankdir)
    else:
        text = f"```mermaid\n{to_mermaid(g, rankdir)}```\n"
    output = output_path(output)
    if dot_exe:
        proc = subprocess.run([dot_exe, f"-T{RENDERED_FORMATS[ext]}", "-o", str(output)],
                              input=text.encode(), capture_output=True)
        if proc.returncode != 0:
            raise UserError(f"{output}: Graphviz's dot failed: "
                            f"{proc.stderr.decode(errors='replace').strip()}")
    else:
        output.write_text(text, encoding="utf-8")
    return {"output": str(output), "format": TEXT_FORMATS.get(ext) or RENDERED_FORMATS[ext],
            "layers": len(g["layers"]), "blobs": len(g["blobs"]), "edges": len(g["edges"])}
