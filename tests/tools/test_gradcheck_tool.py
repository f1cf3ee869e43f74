"""`layerflow gradcheck NET.yaml`: catches a wrong backward (exit 1), passes a right one."""
from __future__ import annotations

import json

import numpy as np
import pytest

PLUGIN = '''
"""Cube: y = x^3, and two deliberately wrong variants."""
import numpy as np
from layerflow import FillerSpec, Layer, register_layer


@register_layer
class Cube(Layer):
    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.x = bottoms[0]
        return [self.x ** 3]

    def backward(self, top_diffs):
        return [3 * self.x ** 2 * top_diffs[0]]


@register_layer
class BadCube(Cube):
    def backward(self, top_diffs):
        return [2 * self.x ** 2 * top_diffs[0]]  # wrong: the derivative of x^3 is 3 x^2


@register_layer
class BadScale(Layer):
    """y = a x with a learned scalar a; its param gradient is off by a factor 2."""
    def setup(self, bottom_shapes):
        self.add_param("a", (1,), FillerSpec(type="constant", value=1.5))

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.x = bottoms[0]
        return [self.params["a"].data[0] * self.x]

    def backward(self, top_diffs):
        self.params["a"].grad[0] += 2 * np.sum(self.x * top_diffs[0])  # wrong: no 2
        return [self.params["a"].data[0] * top_diffs[0]]
'''

NET = """\
name: cubes
layers:
  - {{name: input, type: Input, top: [x, label], shape: [[3, 4], [3]]}}
  - {{name: cube, type: {cube}, bottom: x}}
  - {{name: scale, type: {scale}}}
  - {{name: ip, type: InnerProduct, num_output: 3}}
  - {{name: loss, type: SoftmaxLoss, bottom: [ip, label]}}
"""


@pytest.fixture
def nets(tmp_path):
    (tmp_path / "cube.py").write_text(PLUGIN)
    for name, cube, scale in [("good", "Cube", "ReLU"), ("bad", "BadCube", "ReLU"),
                              ("badparam", "Cube", "BadScale")]:
        (tmp_path / f"{name}.yaml").write_text("plugins: [cube.py]\n" +
                                               NET.format(cube=cube, scale=scale))
    return tmp_path


def test_correct_backward_passes(nets, cli):
    r = cli("gradcheck", nets / "good.yaml")
    assert r.code == 0, r.out + r.err
    assert "all layers OK" in r.out
    for layer in ("cube", "ip", "loss"):
        assert any(line.startswith(layer + " ") and line.rstrip().endswith("ok")
                   for line in r.out.splitlines()), layer


def test_wrong_bottom_gradient_fails_with_the_worst_element(nets, cli):
    r = cli("gradcheck", nets / "bad.yaml", "--json")
    assert r.code == 1
    result = json.loads(r.out)
    assert not result["ok"]
    layers = {x["name"]: x for x in result["layers"]}
    assert not layers["cube"]["ok"] and layers["ip"]["ok"] and layers["loss"]["ok"]
    (entry,) = layers["cube"]["entries"]
    assert entry["name"] == "bottom x" and entry["checked"] == 12 and not entry["ok"]
    # analytic 2 x^2 u against numeric 3 x^2 u, at the worst element
    assert entry["numeric"] == pytest.approx(1.5 * entry["analytic"], rel=1e-5)
    assert entry["error"] > 1e-6
    text = cli("gradcheck", nets / "bad.yaml")
    assert text.code == 1 and "FAILED: cube" in text.out and "FAIL" in text.out


def test_wrong_param_gradient_fails_naming_the_param(nets, cli):
    r = cli("gradcheck", nets / "badparam.yaml", "--json")
    assert r.code == 1
    scale = next(x for x in json.loads(r.out)["layers"] if x["name"] == "scale")
    entries = {e["name"]: e for e in scale["entries"]}
    assert entries["bottom cube"]["ok"] and not entries["a"]["ok"]
    assert entries["a"]["analytic"] == pytest.approx(2 * entries["a"]["numeric"], rel=1e-6)


def test_layer_option_checks_one_layer(nets, cli):
    r = cli("gradcheck", nets / "bad.yaml", "--layer", "ip", "--json")
    assert r.code == 0
    assert [x["name"] for x in json.loads(r.out)["layers"]] == ["ip"]
    r = cli("gradcheck", nets / "bad.yaml", "--layer", "cube")
    assert r.code == 1
    r = cli("gradcheck", nets / "bad.yaml", "--layer", "cub")
    assert r.code == 2 and 'no layer "cub"' in r.err and 'did you mean "cube"' in r.err


def test_kinks_are_skipped(tmp_path, cli):
    """ReLU inputs within kink_range of 0 are skipped, not failed."""
    (tmp_path / "net.yaml").write_text("""\
name: kinky
layers:
  - {name: input, type: Input, top: [x], shape: [50, 40]}
  - {name: relu, type: ReLU, bottom: x}
""")
    r = cli("gradcheck", tmp_path / "net.yaml", "--max-checks", "0", "--json")
    assert r.code == 0, r.out
    (entry,) = json.loads(r.out)["layers"][1]["entries"]
    assert entry["skipped"] > 0 and entry["checked"] + entry["skipped"] == 2000


def test_kink_options_and_a_layer_declared_kink(tmp_path, cli):
    (tmp_path / "k.py").write_text('''
import numpy as np
from layerflow import Layer, register_layer


@register_layer
class Hinge1(Layer):
    """y = max(x, 1): bends at 1, and says so."""
    kink = 1.0
    kink_range = 0.05

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.x = bottoms[0]
        return [np.maximum(self.x, 1.0)]

    def backward(self, top_diffs):
        return [top_diffs[0] * (self.x > 1.0)]
''')
    (tmp_path / "net.yaml").write_text("""\
name: hinge
plugins: [k.py]
layers:
  - {name: input, type: Input, top: [x], shape: [400, 10]}
  - {name: relu, type: ReLU, bottom: x}
  - {name: hinge, type: Hinge1, bottom: x}
""")
    r = cli("gradcheck", tmp_path / "net.yaml", "--max-checks", "0", "--json")
    assert r.code == 0, r.out
    layers = {x["name"]: x["entries"][0] for x in json.loads(r.out)["layers"][1:]}
    assert layers["relu"]["skipped"] > 0  # the default kink 0, range 10 * step
    assert layers["hinge"]["skipped"] > layers["relu"]["skipped"]  # its own, wider range at 1
    r = cli("gradcheck", tmp_path / "net.yaml", "--max-checks", "0", "--kink-range", "0",
            "--layer", "relu", "--json")
    entry = json.loads(r.out)["layers"][0]["entries"][0]
    assert entry["skipped"] == 0  # kink_range 0 skips nothing


def test_the_sample_in_docs_tools_md_is_what_the_command_prints(cli):
    """docs/tools.md shows `layerflow gradcheck models/spiral/net.yaml`: the same rows, counts
    and statuses. The worst element is the one with the largest error, and errors here are
    rounding (1e-13 to 1e-16), which differs with the CPU's BLAS kernels: on another machine
    another element is the worst, so its index, values and error are not compared (the values
    shown in the doc must still agree with each other)."""
    import re

    from plugin_support import ROOT

    doc = (ROOT / "docs" / "tools.md").read_text()
    sample = re.search(r"\$ layerflow gradcheck models/spiral/net.yaml\n(.*?)```", doc,
                       re.S).group(1).splitlines()
    r = cli("gradcheck", ROOT / "models" / "spiral" / "net.yaml")
    assert r.code == 0, r.err
    printed = r.out.splitlines()

    worst = re.compile(r"\(\d+(?:, \d+)*,?\) +(\S+) +(\S+) +(\d\.\d\de-\d\d)(?=  )")

    def without_worst_element(lines):
        return [re.sub(r"\s+", " ", worst.sub("W", line)) for line in lines]

    assert without_worst_element(printed) == without_worst_element(sample)
    shown = [worst.search(line) for line in sample]
    shown = [m for m in shown if m]
    assert len(shown) >= 6  # every bottom and param row of the spiral net
    for m in shown:
        analytic, numeric, error = (float(v) for v in m.groups())
        assert error < 1e-6 and np.isclose(analytic, numeric, rtol=1e-6, atol=0)


def test_max_pooling_ties_on_real_data_are_kinks_not_failures(tmp_path, cli):
    """A uniform background (as in real images) ties MAX-pooling windows at a value away from 0;
    those cells are skipped as kinks (their one-sided differences disagree), the other cells
    are checked, and a wrong backward on the same data still fails."""
    x = np.random.default_rng(0).normal(size=(4, 2, 6, 6))
    x[:, :, :4, :4] = 0.7  # the background: 16 equal cells, 4 tied windows per plane
    np.savez(tmp_path / "ties.npz", data=x)
    (tmp_path / "cube.py").write_text(PLUGIN)
    (tmp_path / "net.yaml").write_text("""\
name: ties
plugins: [cube.py]
layers:
  - {name: data, type: Data, top: [data], source: ties.npz, batch_size: 4}
  - {name: pool, type: Pooling, bottom: data, pool: MAX, kernel_size: 2, stride: 2}
  - {name: cube, type: BadCube, bottom: data}
""")
    r = cli("gradcheck", tmp_path / "net.yaml", "--max-checks", "0", "--layer", "pool",
            "--json")
    assert r.code == 0, r.out
    (entry,) = json.loads(r.out)["layers"][0]["entries"]
    tied = 4 * 2 * 16  # every background cell ties with the rest of its window
    assert entry["skipped"] == tied and entry["checked"] == x.size - tied
    assert "one-sided differences disagree" in entry["note"]
    r = cli("gradcheck", tmp_path / "net.yaml", "--max-checks", "0", "--layer", "cube",
            "--json")
    assert r.code == 1  # smooth: the one-sided differences agree, the wrong gradient fails
    (entry,) = json.loads(r.out)["layers"][0]["entries"]
    assert not entry["ok"] and entry["error"] > 0.1
    # only where the error x^2 u is below the curvature term step * 6 x u (|x| < 0.006) may a
    # cell be taken for a kink
    assert entry["skipped"] <= 2 and entry["checked"] + entry["skipped"] == x.size
