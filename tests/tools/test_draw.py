"""`layerflow draw`: DOT and Mermaid text, SVG/PNG through Graphviz, clear errors."""
from __future__ import annotations

import shutil
import subprocess

import pytest

NET = """\
name: 'odd "name"'
layers:
  - {name: x, type: Input, top: [x, label], shape: [[2, 3], [2]]}
  - {name: 'ip "one"', type: InnerProduct, bottom: x, top: h, num_output: 4}
  - {name: relu, type: ReLU, bottom: h, top: h}
  - {name: loss, type: SoftmaxLoss, bottom: [h, label]}
"""


@pytest.fixture
def net(tmp_path):
    (tmp_path / "net.yaml").write_text(NET)
    return tmp_path / "net.yaml"


def test_dot_text(net, tmp_path, cli):
    for ext in (".dot", ".gv"):
        r = cli("draw", net, "-o", tmp_path / f"g{ext}", "--rankdir", "LR")
        assert r.code == 0, r.err
        assert "4 layers, 5 blobs" in r.out
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith('digraph "odd \\"name\\"" {') and "rankdir=LR" in dot
    assert 'label="ip \\"one\\"\\n(InnerProduct)\\nnum_output: 4"' in dot
    # the in-place ReLU gives blob h a second node: h (2, 4) before and after
    assert dot.count('label="h\\n(2, 4)"') == 2
    assert dot.count(" -> ") == 2 + 2 + 2 + 3
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_mermaid_text_and_markdown(net, tmp_path, cli):
    assert cli("draw", net, "-o", tmp_path / "g.mmd").code == 0
    assert cli("draw", net, "-o", tmp_path / "g.md").code == 0
    mmd = (tmp_path / "g.mmd").read_text()
    assert mmd.startswith("flowchart TB\n")
    assert 'l1["ip #quot;one#quot;<br/>(InnerProduct)<br/>num_output: 4"]' in mmd
    assert "l3 --> b4" in mmd and "class l3 loss;" in mmd
    assert (tmp_path / "g.md").read_text() == f"```mermaid\n{mmd}```\n"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_and_png_through_graphviz(net, tmp_path, cli):
    assert cli("draw", net, "-o", tmp_path / "g.svg").code == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()
    assert cli("draw", net, "-o", tmp_path / "g.png").code == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_graphviz_is_a_clear_user_error(net, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    r = cli("draw", net, "-o", tmp_path / "g.png")
    assert r.code == 2 and "Traceback" not in r.err
    assert "needs Graphviz's `dot` program, which is not installed" in r.err
    assert "g.dot" in r.err and "g.mmd" in r.err
    assert not (tmp_path / "g.png").exists()
    assert cli("draw", net, "-o", tmp_path / "g.dot").code == 0  # text needs no Graphviz


def test_bad_output_names(net, tmp_path, cli):
    r = cli("draw", net, "-o", tmp_path / "g.jpeg")
    assert r.code == 2 and 'extension ".jpeg"' in r.err
    r = cli("draw", net, "-o", tmp_path / "new" / "folder" / "g.dot")  # folders are made
    assert r.code == 0 and (tmp_path / "new" / "folder" / "g.dot").is_file()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    r = cli("draw", net, "-o", tmp_path / "blocker" / "g.dot")
    assert r.code == 2 and f"cannot create its folder {tmp_path / 'blocker'}" in r.err
    r = cli("draw", net, "-o", tmp_path / "g.dot", "--rankdir", "XY")
    assert r.code == 2 and "--rankdir" in r.err


def test_labels_spell_values_as_the_yaml_does(tmp_path, cli):
    (tmp_path / "net.yaml").write_text("""\
name: spelled
layers:
  - {name: data, type: Data, top: [data, label], source: spiral, batch_size: 10,
     shuffle: true}
  - {name: ip, type: InnerProduct, num_output: 3, bias_term: false}
  - {name: loss, type: SoftmaxLoss, bottom: [ip, label]}
""")
    assert cli("draw", tmp_path / "net.yaml", "-o", tmp_path / "g.dot").code == 0
    dot = (tmp_path / "g.dot").read_text()
    assert "shuffle: true" in dot and "bias_term: false" in dot
    assert "True" not in dot and "False" not in dot
