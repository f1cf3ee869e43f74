"""Per-layer timing: `layerflow time` (Caffe's `caffe time`) and `layerflow train --profile`.

`LayerProfiler(net)` wraps the forward and backward of every layer of a net with a clock, so
whatever drives the net (the timing loop below, or the Solver during real training) is
measured layer by layer; `detach()` puts the layers back as they were.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import load_net, table


class LayerProfiler:
    """Accumulates the time spent in each layer's forward and backward."""

    def __init__(self, net):
        self.net = net
        self.layers = list(net.layers)
        self.reset()
        for layer in self.layers:
            layer.forward = self._timed(layer.forward, self.forward_s, self.forward_calls,
                                        layer.name)
            layer.backward = self._timed(layer.backward, self.backward_s, self.backward_calls,
                                         layer.name)

    @staticmethod
    def _timed(fn, seconds: dict, calls: dict, name: str):
        clock = time.perf_counter

        def timed(arg):
            t0 = clock()
            out = fn(arg)
            seconds[name] += clock() - t0
            calls[name] += 1
            return out

        timed.__wrapped__ = fn
        return timed

    def reset(self) -> None:
        names = [layer.name for layer in self.layers]
        self.forward_s = dict.fromkeys(names, 0.0)
        self.backward_s = dict.fromkeys(names, 0.0)
        self.forward_calls = dict.fromkeys(names, 0)
        self.backward_calls = dict.fromkeys(names, 0)
        self.started = time.perf_counter()

    def detach(self) -> None:
        for layer in self.layers:
            for attr in ("forward", "backward"):
                if hasattr(getattr(layer, attr), "__wrapped__"):
                    delattr(layer, attr)  # the class's method shows through again

    def report(self, iterations: int | None = None) -> dict:
        """Per layer: calls, total seconds and mean ms per call of forward and backward.

        With `iterations` (training iterations or timing loops), also ms per iteration.
        """
        rows = []
        for layer in self.layers:
            n = layer.name
            fc, bc = self.forward_calls[n], self.backward_calls[n]
            row = {"name": n, "type": layer.type,
                   "forward_calls": fc, "forward_s": round(self.forward_s[n], 6),
                   "forward_ms": round(1e3 * self.forward_s[n] / fc, 6) if fc else 0.0,
                   "backward_calls": bc, "backward_s": round(self.backward_s[n], 6),
                   "backward_ms": round(1e3 * self.backward_s[n] / bc, 6) if bc else 0.0}
            rows.append(row)
        fwd, bwd = sum(self.forward_s.values()), sum(self.backward_s.values())
        out = {"layers": rows, "forward_s": round(fwd, 6), "backward_s": round(bwd, 6),
               "wall_s": round(time.perf_counter() - self.started, 6)}
        if iterations:
            out["iterations"] = iterations
            for r in rows:
                n = r["name"]
                r["forward_ms_per_iter"] = round(1e3 * self.forward_s[n] / iterations, 6)
                r["backward_ms_per_iter"] = round(1e3 * self.backward_s[n] / iterations, 6)
            out["forward_ms_per_iter"] = round(1e3 * fwd / iterations, 6)
            out["backward_ms_per_iter"] = round(1e3 * bwd / iterations, 6)
        return out


def format_profile(p: dict, title: str = "per-layer time") -> str:
    """The table of a `LayerProfiler.report()` (per iteration when it has `iterations`)."""
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
    prof = LayerProfiler(net)
    fwd = bwd = 0.0
    clock = time.perf_counter
    for _ in range(iterations):
        t0 = clock()
        net.run_forward()
        t1 = clock()
        net.backward()
        t2 = clock()
        fwd, bwd = fwd + t1 - t0, bwd + t2 - t1
    prof.detach()
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
