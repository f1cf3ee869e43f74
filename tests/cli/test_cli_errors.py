"""Every user mistake of issue 2 through the command line: exit status 2, one message on stderr
naming the file, the line:column and the culprit, and no traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file


def replace(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path.read_text()


# ---- YAML ---------------------------------------------------------------------------------

def test_bad_yaml_syntax(cli, tiny):
    text = replace(tiny.net, "num_output: 8}", "num_output: 8")  # an unclosed `{`
    msg = cli.error(cli.invoke("train", tiny.solver))
    # the scanner reads "8 -" as one value and stumbles on the next `{`; the context names
    # the mapping that was never closed
    assert msg == (f"{tiny.net}:{cli.pos(text, '{name: relu1')}: YAML error: expected ',' or "
                   f"'}}', but got '{{' (while parsing a flow mapping that starts at "
                   f"{tiny.net}:{cli.pos(text, '{name: ip1')}); likely a '}}' missing at the "
                   f"end of the {{...}} (or a comma missing)")


def test_bad_yaml_in_the_solver(cli, tiny):
    text = replace(tiny.solver, "base_lr: 0.1", "base_lr: [0.1")
    msg = cli.error(cli.invoke("train", tiny.solver))
    assert msg.startswith(f"{tiny.solver}:{cli.pos(text, ': 0.9')}: YAML error: expected ',' or "
                          f"']', but got ':'")


# ---- the wrong kind of file ----------------------------------------------------------------

def test_a_net_where_a_solver_is_expected(cli, tiny, tmp_path):
    cli.error(cli.invoke("train", tiny.net),
              f"{tiny.net}: this is a net file (it has `layers:`), not a solver; give the "
              f"solver file that names this net, e.g. {tiny.solver}")
    alone = tmp_path / "alone" / "mynet.yaml"
    alone.parent.mkdir()
    alone.write_text(tiny.net_text)
    cli.error(cli.invoke("train", alone),
              f"{alone}: this is a net file (it has `layers:`), not a solver; give the solver "
              f"file that names this net (a solver.yaml with `net: mynet.yaml`, base_lr and "
              f"max_iter: see `layerflow layers SGD` for its keys)")


@pytest.mark.parametrize("command", [["summary"], ["draw", "-o", "g.dot"], ["time"],
                                     ["gradcheck"], ["test", "--weights", "w.safetensors"]])
def test_a_solver_where_a_net_is_expected(cli, tiny, command):
    msg = cli.error(cli.invoke(command[0], tiny.solver, *command[1:]))
    assert msg == (f"{tiny.solver}: this is a solver file (it names its net, `net: net.yaml`), "
                   f"not a net; give the net instead: {tiny.net}")


def test_python_tags_are_rejected_and_never_run(cli, tmp_path):
    """Through the real console entry point, in a subprocess, as a user would run it."""
    root = tmp_path / "p"
    marker = tmp_path / "PWNED"
    cases = {
        "solver.yaml": ("snapshot_prefix: out/tiny",
                        f'snapshot_prefix: !!python/object/apply:os.system ["touch {marker}"]'),
        "net.yaml": ("name: tiny", f'name: !!python/object/apply:builtins.open ["{marker}", "w"]'),
    }
    for name, (old, new) in cases.items():
        project = cli.make_project(root)
        text = replace(root / name, old, new)
        proc = subprocess.run([sys.executable, "-m", "layerflow.cli", "train",
                               str(project.solver)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr == (f"error: {root / name}:{cli.pos(text, '!!python')}: YAML error: "
                               f"tag !!python/object/apply:{new.split(':')[-1].split(' ')[0]} "
                               f"is not allowed: layerflow reads YAML with safe loading only "
                               f"(no Python tags)\n")
        assert not marker.exists()
    assert not (root / "out").exists()


def test_python_tag_on_a_mapping(cli, tiny):
    text = replace(tiny.net, "- {name: ip1,", "- !!python/object:argparse.Namespace {name: ip1,")
    cli.error(cli.invoke("train", tiny.solver),
              f"{tiny.net}:{cli.pos(text, '!!python')}: YAML error: tag "
              f"!!python/object:argparse.Namespace is not allowed")


# ---- net keys and values ------------------------------------------------------------------

def test_unknown_layer_type(cli, tiny):
    text = replace(tiny.net, "type: ReLU", "type: Relu")
    msg = cli.error(cli.invoke("train", tiny.solver))
    assert msg.startswith(f'{tiny.net}:{cli.pos(text, "type: Relu")}: layers[2] (relu1): type: '
                          f'unknown layer type "Relu" (did you mean "ReLU"?); known types: ')
    for known in ("Accuracy", "Data", "Eltwise", "InnerProduct", "Input", "ReLU", "SVMLoss",
                  "Sigmoid", "SoftmaxLoss"):
        assert known in msg.split("known types: ")[1]


def test_unknown_layer_key(cli, tiny):
    text = replace(tiny.net, "type: ReLU,", "type: ReLU, negative_slop: 0.1,")
    cli.error(cli.invoke("train", tiny.solver),
              f'{tiny.net}:{cli.pos(text, "negative_slop")}: layers[2] (relu1): negative_slop: '
              f'unknown key for a ReLU layer (did you mean "negative_slope"?)')


def test_unknown_net_key(cli, tiny):
    text = replace(tiny.net, "name: tiny", "name: tiny\nforce_backwards: true")
    cli.error(cli.invoke("train", tiny.solver),
              f'{tiny.net}:{cli.pos(text, "force_backwards")}: force_backwards: unknown key '
              f'(did you mean "force_backward"?)')


def test_wrong_value_num_output(cli, tiny):
    text = replace(tiny.net, "num_output: 8", "num_output: -1")
    msg = cli.error(cli.invoke("train", tiny.solver))
    assert msg.startswith(f"{tiny.net}:{cli.pos(text, 'num_output: -1')}: layers[1] (ip1): "
                          f"num_output: Input should be greater than 0")
    assert cli.pos(text, "num_output: -1") == "4:37"


def test_missing_required_layer_key(cli, tiny):
    text = replace(tiny.net, ", num_output: 3}", "}")
    cli.error(cli.invoke("train", tiny.solver),
              f"{tiny.net}:{cli.pos(text, '{name: ip2')}: layers[3] (ip2): num_output: missing "
              f"required key")


def test_missing_layers_key(cli, tiny):
    tiny.net.write_text("name: tiny\n")
    cli.error(cli.invoke("train", tiny.solver), f"{tiny.net}:1:1: layers: missing required key")


# ---- solver keys and values ---------------------------------------------------------------

def test_unknown_solver_key(cli, tiny):
    text = replace(tiny.solver, "momentum: 0.9", "momentun: 0.9")
    msg = cli.error(cli.invoke("train", tiny.solver))
    assert msg == (f'{tiny.solver}:{cli.pos(text, "momentun")}: momentun: unknown solver key '
                   f'(did you mean "momentum"?)')


def test_missing_solver_key(cli, tiny):
    replace(tiny.solver, "max_iter: 6\n", "")
    cli.error(cli.invoke("train", tiny.solver),
              f"{tiny.solver}:1:1: max_iter: missing required key")


@pytest.mark.parametrize("old, new, key, expected", [
    ("base_lr: 0.1", "base_lr: 0", "base_lr", "base_lr: Input should be greater than 0"),
    ("type: SGD", "type: SDG", "type", 'type: unknown solver type "SDG" (did you mean "SGD"?)'),
    ("lr_policy: fixed", "lr_policy: fixd", "lr_policy",
     'lr_policy: unknown lr_policy type "fixd" (did you mean "fixed"?)'),
])
def test_wrong_solver_values(cli, tiny, old, new, key, expected):
    text = replace(tiny.solver, old, new)
    cli.error(cli.invoke("train", tiny.solver),
              f"{tiny.solver}:{cli.pos(text, key + ':')}: {expected}")


# ---- files --------------------------------------------------------------------------------

def test_missing_solver_file(cli, tmp_path):
    cli.error(cli.invoke("train", tmp_path / "nope.yaml"), f"{tmp_path / 'nope.yaml'}: file "
                                                           f"not found")


def test_missing_net_file(cli, tiny):
    replace(tiny.solver, "net: net.yaml", "net: nets/net.yaml")
    msg = cli.error(cli.invoke("train", tiny.solver))
    assert msg == f"{(tiny.root / 'nets' / 'net.yaml').resolve()}: file not found"
    msg = cli.error(cli.invoke("test", tiny.root / "nope.yaml", "--weights", tiny.root / "w"))
    assert msg == f"{tiny.root / 'nope.yaml'}: file not found"


def test_missing_data_file_names_the_layer_and_the_resolved_path(cli, tiny):
    text = replace(tiny.net, "data/tiny.npz", "data/other.npz")
    msg = cli.error(cli.invoke("train", tiny.solver),
                    f"{tiny.net}:{cli.pos(text, '{name: data')}: layers[0] (data): ")
    assert str(tiny.root / "data" / "other.npz") in msg


def test_missing_weights_file(cli, tiny):
    missing = tiny.root / "w.safetensors"
    cli.error(cli.invoke("train", tiny.solver, "--weights", missing),
              f"{missing}: weights file not found")
    cli.error(cli.invoke("test", tiny.net, "--weights", missing),
              f"{missing}: weights file not found")
    assert not (tiny.root / "out").exists()  # nothing trained, nothing written


def test_corrupt_weights_file(cli, tiny):
    bad = tiny.root / "w.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    cli.error(cli.invoke("test", tiny.net, "--weights", bad), f"{bad}: not a valid weights file")


def test_weights_with_a_shape_mismatch(cli, tiny):
    w = tiny.root / "w.safetensors"
    save_file({"ip1.weight": np.zeros((8, 5), np.float32), "ip1.bias": np.zeros(8, np.float32)},
              str(w))
    for args in (("train", tiny.solver, "--weights", w), ("test", tiny.net, "--weights", w)):
        cli.error(cli.invoke(*args), f"{w}: layer ip1: param weight has shape (8, 5) in the "
                                     f"file but (8, 2) in the net")


def test_resume_from_a_missing_state(cli, tiny):
    missing = tiny.root / "out" / "tiny_iter_3.solverstate"
    cli.error(cli.invoke("train", tiny.solver, "--resume", missing), f"{missing}: solver state "
                                                                     f"file not found")


def test_snapshot_folder_that_cannot_be_created(cli, tiny):
    (tiny.root / "blocker").write_text("a file where a folder should be")
    replace(tiny.solver, "snapshot_prefix: out/tiny", "snapshot_prefix: blocker/out/tiny")
    cli.error(cli.invoke("train", tiny.solver), str(tiny.root / "blocker"))


# ---- run-time data and shapes -------------------------------------------------------------

@pytest.mark.parametrize("bad, shown", [(3, "label 3"), (-1, "label -1"), (1.5, "label 1.5")])
def test_bad_label_is_found_when_the_data_is_read(cli, tmp_path, bad, shown):
    """The labels are checked against the loss's 3 classes when the net is built, before
    any training: the message names the data layer, the file, the row and the value as
    written (the .npz stores float32 labels: 3, not 3.0)."""
    labels = np.arange(12) % 3
    labels = labels.astype(float)
    labels[4] = bad
    project = cli.make_project(tmp_path / "p", labels=labels)
    msg = cli.error(cli.invoke("train", project.solver))
    npz = project.root / "data" / "tiny.npz"
    assert msg == (f"{project.net}:{cli.pos(project.net_text, '{name: data')}: layers[0] "
                   f"(data): {npz}: array \"label\", row 4: {shown} is not a class index in "
                   f"[0, 3); layer loss (SoftmaxLoss) reads top \"label\" as labels of 3 "
                   f"classes")
    assert not (project.root / "out").exists()  # found before anything was trained or written


def test_bad_label_in_layerflow_test(cli, tmp_path):
    good = cli.make_project(tmp_path / "good")
    cli.ok(cli.invoke("train", good.solver))
    labels = (np.arange(12) % 3).astype(float)
    labels[7] = 9
    labels[9] = 5
    project = cli.make_project(tmp_path / "p", labels=labels)
    msg = cli.error(cli.invoke("test", project.net, "--weights",
                               good.root / "out" / "tiny_iter_6.safetensors"))
    assert msg.startswith(f"{project.net}:{cli.pos(project.net_text, '{name: data')}: "
                          f"layers[0] (data): {project.root / 'data' / 'tiny.npz'}: array "
                          f"\"label\", row 7: label 9 is not a class index in [0, 3) (the "
                          f"first of 2 bad labels)")


def test_shape_mismatch_between_layers(cli, tiny):
    text = replace(tiny.net, "  - {name: loss,",
                   "  - {name: sum, type: Eltwise, bottom: [ip1, ip2]}\n  - {name: loss,")
    cli.error(cli.invoke("train", tiny.solver),
              f"{tiny.net}:{cli.pos(text, '{name: sum')}: layers[4] (sum): bottoms must have "
              f"identical shapes, got ip1 (6, 8), ip2 (6, 3)")


# ---- where paths are taken from -----------------------------------------------------------

def test_paths_are_relative_to_the_yaml_files_not_the_cwd(cli, tiny, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cli.ok(cli.invoke("train", os.path.relpath(tiny.solver, elsewhere)))
    assert (tiny.root / "out" / "tiny_iter_6.safetensors").is_file()
    assert list(elsewhere.iterdir()) == []
    weights = os.path.relpath(tiny.root / "out" / "tiny_iter_6.safetensors", elsewhere)
    cli.ok(cli.invoke("test", os.path.relpath(tiny.net, elsewhere), "--weights", weights))


def test_solver_and_net_errors_name_their_files_the_same_way(cli, tiny, monkeypatch):
    """Both files given or found relative to the working directory are named by their
    absolute paths, as the data files found from them are."""
    monkeypatch.chdir(tiny.root)
    text = replace(tiny.solver, "base_lr: 0.1", "base_lr: -0.1")
    cli.error(cli.invoke("train", "solver.yaml"),
              f"{tiny.solver}:{cli.pos(text, 'base_lr')}: base_lr: Input should be greater "
              f"than 0")
    replace(tiny.solver, "base_lr: -0.1", "base_lr: 0.1")
    net_text = replace(tiny.net, "num_output: 8", "num_output: -8")
    cli.error(cli.invoke("train", "solver.yaml"),
              f"{tiny.net}:{cli.pos(net_text, 'num_output: -8')}: layers[1] (ip1): num_output:")
    cli.error(cli.invoke("summary", "net.yaml"), f"{tiny.net}:")


@pytest.mark.parametrize("layer, message", [
    ("{name: s, type: SVMLoss, bottom: [ip2]}", "an SVMLoss layer takes 2 bottom(s), got 1"),
    ("{name: s, type: Eltwise, bottom: [ip2, ip2], coef: [1, 1, 1], oops: 1}",
     "unknown key for an Eltwise layer"),
    ("{name: s, type: InnerProduct, bottom: [ip2, ip2], num_output: 2}",
     "an InnerProduct layer takes 1 bottom(s), got 2"),
])
def test_type_names_take_the_article_they_sound_with(cli, tiny, layer, message):
    replace(tiny.net, "  - {name: loss,", f"  - {layer}\n  - {{name: loss,")
    cli.error(cli.invoke("summary", tiny.net), message)


# ---- --debug: the traceback is there on request (so its absence above means something) ------

def test_debug_shows_the_traceback(cli, tiny):
    replace(tiny.net, "type: ReLU", "type: Relu")
    result = cli.invoke("--debug", "train", tiny.solver)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and 'unknown layer type "Relu"' in result.stderr
