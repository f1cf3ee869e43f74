"""Per-layer timing as a net hook: what `layerflow train --profile` and `layerflow time` measure.

    timer = net.add_hook(LayerTimer(net))   # every forward and backward of every layer is timed
    ...                                      # whatever drives the net: a timing loop, a Solver
    net.remove_hook(timer); timer.report(iterations)
"""
from __future__ import annotations

import time

from .net import NetHook


class LayerTimer(NetHook):
    """Accumulates the wall time of each layer's forward and backward (perf_counter)."""

    def __init__(self, net):
        self.layers = list(net.layers)
        self._clock = time.perf_counter
        self._t0 = 0.0
        self.reset()

    def reset(self) -> None:
        names = [layer.name for layer in self.layers]
        self.forward_s = dict.fromkeys(names, 0.0)
        self.backward_s = dict.fromkeys(names, 0.0)
        self.forward_calls = dict.fromkeys(names, 0)
        self.backward_calls = dict.fromkeys(names, 0)
        self.started = time.perf_counter()

    def before_forward(self, layer):
        self._t0 = self._clock()

    def after_forward(self, layer, tops):
        self.forward_s[layer.name] += self._clock() - self._t0
        self.forward_calls[layer.name] += 1

    def before_backward(self, layer):
        self._t0 = self._clock()

    def after_backward(self, layer, bottom_diffs):
        self.backward_s[layer.name] += self._clock() - self._t0
        self.backward_calls[layer.name] += 1

    def report(self, iterations: int | None = None) -> dict:
        """Per layer: calls, total seconds and mean ms per call of forward and backward.

        With `iterations` (training iterations or timing loops), also ms per iteration.
        """
        rows = []
        for layer in self.layers:
            n = layer.name
            fc, bc = self.forward_calls[n], self.backward_calls[n]
            rows.append({"name": n, "type": layer.type,
                         "forward_calls": fc, "forward_s": round(self.forward_s[n], 6),
                         "forward_ms": round(1e3 * self.forward_s[n] / fc, 6) if fc else 0.0,
                         "backward_calls": bc, "backward_s": round(self.backward_s[n], 6),
                         "backward_ms": round(1e3 * self.backward_s[n] / bc, 6) if bc else 0.0})
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
