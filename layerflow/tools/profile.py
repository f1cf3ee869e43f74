"""`layerflow time` (Caffe's `caffe time`) and the tables of it and of `train --profile`.

The timing itself is `layerflow.profile.LayerTimer`, a hook the net calls around every layer's
forward and backward, so the layers are measured exactly as they run.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..profile import LayerTimer
from . import load_net, table


def format_profile(p: dict, title: str = "per-layer time") -> str:
    """The table of a `LayerTimer.report()` (per iteration when it has `iterations`)."""
    per_iter = "iterations" in p
    fkey, bkey = ("forward_ms_per_iter", "backward_ms_per_iter") if per_iter else \
        ("forward_ms", "backward_ms")
    total = (p["forward_s"] + p["backward_s"]) or 1.0
    rows = [[r["name"], r["type"], f"{r[fkey]:.4f}",
             f"{r[bkey]:.4f}" if r["backward_calls"] else "-",
             f"{100 * (r['forward_s'] + r['backward_s']) / total:.1f}%"] for r in p["layers"]]
    if per_iter:
        rows.append(["total", "", f"{p['forward_ms_per_iter']:.4f}",
                     f"{p['backward_ms_per_iter']:.4f}", "100.0%"])
    unit = "ms per iteration" if per_iter else "ms per call"
    n = f" over {p['iterations']} iterations" if per_iter else ""
    return (f"{title}{n} ({unit}):\n"
            + table(["layer", "type", "forward", "backward", "share"], rows, "llrrr"))


def time_net(net_path: str | Path, iterations: int = 50, phase: str = "train",
             plugins: list[str] | None = None, warmup: int = 1) -> dict:
    """Caffe's `time`: `warmup` untimed forward+backward passes, then `iterations` timed ones.

    Reports per layer the mean forward and backward time per iteration, and the totals
    (forward, backward, forward-backward) measured around the whole passes.
    """
    from ..errors import UserError

    if iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {iterations}")
    net = load_net(net_path, phase, plugins)
    for _ in range(warmup):  # compiles or loads the Numba kernels, touches the buffers
        net.run_forward()
        net.backward()
    prof = net.add_hook(LayerTimer(net))
    fwd = bwd = 0.0
    clock = time.perf_counter
    for _ in range(iterations):
        t0 = clock()
        net.run_forward()
        t1 = clock()
        net.backward()
        t2 = clock()
        fwd, bwd = fwd + t1 - t0, bwd + t2 - t1
    net.remove_hook(prof)
    out = prof.report(iterations)
    out.update({"net": net.name, "phase": phase, "dtype": str(net.dtype),
                "average_forward_ms": round(1e3 * fwd / iterations, 6),
                "average_backward_ms": round(1e3 * bwd / iterations, 6),
                "average_forward_backward_ms": round(1e3 * (fwd + bwd) / iterations, 6),
                "total_s": round(fwd + bwd, 6)})
    return out


def format_time(t: dict) -> str:
    return "\n".join([
        format_profile(t, f"net {t['net']} ({t['phase']} phase, {t['dtype']})"),
        f"average forward pass: {t['average_forward_ms']:.4f} ms",
        f"average backward pass: {t['average_backward_ms']:.4f} ms",
        f"average forward-backward: {t['average_forward_backward_ms']:.4f} ms",
        f"total time: {t['total_s']:.4f} s"])
