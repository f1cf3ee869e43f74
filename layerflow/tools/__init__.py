"""The tools around a net, one module each; every `layerflow` tool command is a thin call here.

    gradcheck_net.check_net   layerflow gradcheck NET.yaml   layer-by-layer gradient check
    types.list_types          layerflow layers [TYPE]        registered types and their params
    summary.summarize         layerflow summary NET.yaml     shapes, params, FLOPs, memory
    profile.time_net          layerflow time NET.yaml        Caffe's `time`
    profile.format_profile    layerflow train --profile      per-layer time while training
    draw.draw                 layerflow draw NET.yaml -o F   DOT / Mermaid / SVG / PNG
    plot.plot_metrics         layerflow plot M.jsonl -o F    loss, lr and tests over iterations
    schema.schema             layerflow schema [net|solver]  JSON Schema of the YAML formats
"""
from __future__ import annotations

from pathlib import Path


def load_net(path: str | Path, phase: str = "train", plugins: list[str] | None = None,
             dtype: str | None = None, seed: int = 0):
    """Build the net of a YAML file for one phase (the tools' common first step); phase
    "deploy" is the deploy net derived from it (`layerflow.deploy`)."""
    from ..builder import build_net

    if phase == "deploy":
        return build_net(path, plugins=plugins, dtype=dtype, seed=seed, deploy=True)
    return build_net(path, phase, plugins=plugins, dtype=dtype, seed=seed)


def output_path(path: str | Path) -> Path:
    """An output file of a tool (`-o`): its folders are created as needed; a folder that
    cannot be made is a UserError naming it."""
    from ..errors import UserError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create its folder {path.parent}: "
                        f"{exc.strerror or exc}") from None
    return path


def fmt_int(n: int) -> str:
    """12345678 -> '12.35M' (k, M, G, T), small numbers as they are."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def fmt_bytes(n: int) -> str:
    for unit, div in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain text table; `align` has one 'l' or 'r' per column (default: first left)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)
    out = []
    for k, r in enumerate(cells):
        line = "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(r, widths, align))
        out.append(line.rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
