"""`layerflow train` and `layerflow test` end to end: snapshots, output, determinism, resume,
--weights, and the spiral model's accuracy.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import layerflow as lf

REPO = Path(__file__).resolve().parents[2]
PARAM_KEYS = {"ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias"}


def weights(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), f"{key} differs"


def test_train_writes_snapshots_and_prints_progress(cli, tiny):
    result = cli.ok(cli.invoke("train", tiny.solver))
    out = tiny.root / "out"
    for it in (3, 6):  # snapshot: 3, max_iter: 6
        w, state = out / f"tiny_iter_{it}.safetensors", out / f"tiny_iter_{it}.solverstate"
        assert w.is_file() and state.is_file()
        assert set(weights(w)) == PARAM_KEYS
        assert weights(w)["ip1.weight"].shape == (8, 2)
        assert weights(w)["ip2.bias"].shape == (3,)
        assert load_file(str(state))  # a safetensors file too
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # plain progress lines (the runner's stdout is not a terminal)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training tiny with SGD for 6 iterations")
    for it in (2, 4, 6):  # display: 2
        assert any(re.match(rf"iter {it}: .*loss = [0-9.]+", line) for line in lines), it
    for it in (0, 3, 6):  # test_interval: 3, test_initialization
        assert any(re.match(rf"iter {it} test: .*accuracy = [0-9.]+", line) for line in lines)
    for it in (3, 6):  # both files of each snapshot: the weights are what `test` takes
        assert (f"snapshot: weights {out / f'tiny_iter_{it}.safetensors'}, solver state "
                f"{out / f'tiny_iter_{it}.solverstate'}") in lines
    assert lines[-1].startswith("done: 6 iterations")
    assert "\x1b[" not in result.stdout  # no terminal control codes


def test_train_json_summary(cli, tiny):
    result = cli.ok(cli.invoke("train", tiny.solver, "--json"))
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    assert summary["iterations"] == 6
    assert np.isfinite(summary["loss"])
    assert set(summary["test"]) == {"loss", "accuracy"}
    assert Path(summary["snapshot"]) == tiny.root / "out" / "tiny_iter_6.solverstate"
    assert Path(summary["weights"]) == tiny.root / "out" / "tiny_iter_6.safetensors"
    assert "training tiny" in result.stderr  # progress went to stderr


def test_layerflow_test_with_iterations_and_json(cli, tiny):
    cli.ok(cli.invoke("train", tiny.solver))
    w = tiny.root / "out" / "tiny_iter_6.safetensors"
    result = cli.ok(cli.invoke("test", tiny.net, "--weights", w, "--iterations", 3))
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"loss = [0-9.e-]+", lines[0])
    assert re.fullmatch(r"accuracy = [0-9.e-]+", lines[1])
    assert lines[2].startswith("(3 batches, ")
    result = cli.ok(cli.invoke("test", tiny.net, "--weights", w, "--iterations", 1))
    assert result.stdout.splitlines()[2].startswith("(1 batch, ")
    result = cli.ok(cli.invoke("test", tiny.net, "--weights", w, "--iterations", 2, "--json"))
    report = json.loads(result.stdout)
    assert report["iterations"] == 2
    # the same number, computed here: the test net over the 12 samples with these weights
    net = lf.Net.from_yaml(tiny.net, "test")
    net.copy_from(weights(w))
    accs = [net.forward()["accuracy"] for _ in range(2)]
    assert report["outputs"]["accuracy"] == pytest.approx(float(np.mean(accs)), abs=1e-7)


def test_layerflow_test_given_a_solver_state_reads_its_weights(cli, tiny):
    cli.ok(cli.invoke("train", tiny.solver))
    out = tiny.root / "out"
    by_weights = cli.ok(cli.invoke("test", tiny.net, "--weights",
                                   out / "tiny_iter_6.safetensors", "--json"))
    by_state = cli.ok(cli.invoke("test", tiny.net, "--weights",
                                 out / "tiny_iter_6.solverstate", "--json"))
    assert json.loads(by_state.stdout)["outputs"] == json.loads(by_weights.stdout)["outputs"]
    assert by_state.stderr == (f"{out / 'tiny_iter_6.solverstate'} is a solver state; reading "
                               f"the weights it was written with: "
                               f"{out / 'tiny_iter_6.safetensors'}\n")
    (out / "tiny_iter_3.safetensors").unlink()
    cli.error(cli.invoke("test", tiny.net, "--weights", out / "tiny_iter_3.solverstate"),
              f"{out / 'tiny_iter_3.solverstate'}: is a solver state, and the weights file it "
              f"was written with, {out / 'tiny_iter_3.safetensors'}, is missing")


def test_version(cli):
    result = cli.ok(cli.invoke("--version"))
    assert result.stdout.strip() == f"layerflow {lf.__version__}"
    exe = shutil.which("layerflow")
    if exe is None:
        pytest.skip("the `layerflow` console script is not on PATH")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"layerflow {lf.__version__}"


# ---- determinism and resume ---------------------------------------------------------------

def shuffled_project(cli, root: Path, seed: int = 7, max_iter: int = 6):
    net = cli.TINY_NET.replace("batch_size: 6}", "batch_size: 5, shuffle: true}")
    solver = cli.TINY_SOLVER.replace("random_seed: 7", f"random_seed: {seed}").replace(
        "max_iter: 6", f"max_iter: {max_iter}")
    return cli.make_project(root, net=net, solver=solver)


def test_same_seed_gives_bit_identical_weights(cli, tmp_path):
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        project = shuffled_project(cli, tmp_path / name, seed)
        cli.ok(cli.invoke("train", project.solver))
        runs.append(weights(project.root / "out" / "tiny_iter_6.safetensors"))
    assert_identical(runs[0], runs[1])
    assert not np.array_equal(runs[0]["ip1.weight"], runs[2]["ip1.weight"])  # the seed matters


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cli, tmp_path):
    whole = shuffled_project(cli, tmp_path / "whole", max_iter=6)
    cli.ok(cli.invoke("train", whole.solver))
    expected = weights(whole.root / "out" / "tiny_iter_6.safetensors")

    # the first half (it ends with its final snapshot at 3), then --resume up to 6
    part = shuffled_project(cli, tmp_path / "part", max_iter=3)
    cli.ok(cli.invoke("train", part.solver))
    state = part.root / "out" / "tiny_iter_3.solverstate"
    assert state.is_file() and not (part.root / "out" / "tiny_iter_6.safetensors").exists()
    part.solver.write_text(part.solver.read_text().replace("max_iter: 3", "max_iter: 6"))
    result = cli.ok(cli.invoke("train", part.solver, "--resume", state))
    assert "from iteration 3" in result.stdout
    assert_identical(weights(part.root / "out" / "tiny_iter_6.safetensors"), expected)

    # --resume auto picks the newest snapshot (iteration 3 again after removing 6)
    for suffix in (".safetensors", ".solverstate"):
        (part.root / "out" / f"tiny_iter_6{suffix}").unlink()
    cli.ok(cli.invoke("train", part.solver, "--resume", "auto"))
    assert_identical(weights(part.root / "out" / "tiny_iter_6.safetensors"), expected)

    # control: restarting from the weights alone loses momentum and the data order
    fresh = shuffled_project(cli, tmp_path / "fresh", max_iter=3)
    cli.ok(cli.invoke("train", fresh.solver, "--weights",
                      part.root / "out" / "tiny_iter_3.safetensors"))
    restarted = weights(fresh.root / "out" / "tiny_iter_3.safetensors")
    assert not np.array_equal(restarted["ip1.weight"], expected["ip1.weight"])


# ---- --weights ----------------------------------------------------------------------------

def test_weights_are_copied_by_layer_name(cli, tmp_path):
    # base_lr tiny and no momentum or decay: one iteration leaves the weights as they started
    solver = cli.TINY_SOLVER.replace("base_lr: 0.1", "base_lr: 1.0e-30").replace(
        "momentum: 0.9", "momentum: 0").replace("weight_decay: 0.001", "weight_decay: 0").replace(
        "max_iter: 6", "max_iter: 1")
    fresh = cli.make_project(tmp_path / "fresh", solver=solver)
    cli.ok(cli.invoke("train", fresh.solver))
    init = weights(fresh.root / "out" / "tiny_iter_1.safetensors")

    given = {"ip1.weight": np.arange(1, 17, dtype=np.float32).reshape(8, 2) / 10,
             "ip1.bias": np.full(8, 0.25, np.float32),
             "unrelated.weight": np.ones((4, 4), np.float32)}  # no such layer: ignored
    save_file(given, str(tmp_path / "given.safetensors"))
    project = cli.make_project(tmp_path / "init", solver=solver)
    given_path = tmp_path / "given.safetensors"
    result = cli.ok(cli.invoke("train", project.solver, "--weights", given_path))
    # what was used, what was ignored, what was left to the fillers (Caffe's "Ignoring source
    # layer"), before training starts
    assert result.stdout.splitlines()[:4] == [
        f"fine-tuning from {given_path}: 2 of the net's 4 params copied",
        f"  {given_path}: ignoring source layer unrelated (unrelated.weight): net tiny has no "
        "layer of that name",
        "  not in the file, so initialized by their fillers: ip2.weight, ip2.bias",
        "training tiny with SGD for 1 iterations (seed 7)"]
    got = weights(project.root / "out" / "tiny_iter_1.safetensors")
    np.testing.assert_array_equal(got["ip1.weight"], given["ip1.weight"])
    np.testing.assert_array_equal(got["ip1.bias"], given["ip1.bias"])
    np.testing.assert_array_equal(got["ip2.weight"], init["ip2.weight"])  # filler's values
    assert set(got) == PARAM_KEYS
    save_file({**given, "ip1.extra": np.ones(2, np.float32)}, str(given_path))
    result = cli.ok(cli.invoke("train", project.solver, "--weights", given_path, "--json",
                               "--start-over"))
    report = json.loads(result.stdout)["weights_from"]
    assert report == {"file": str(given_path), "copied": ["ip1.weight", "ip1.bias"],
                      "ignored": ["ip1.extra", "unrelated.weight"],
                      "initialized": ["ip2.weight", "ip2.bias"]}
    assert f"  {given_path}: ignoring ip1.extra: layer ip1 of the net has no such param" in \
        result.stderr.splitlines()


def test_weights_with_no_matching_layer_is_an_error(cli, tiny, tmp_path):
    save_file({"other.weight": np.ones((2, 2), np.float32)}, str(tmp_path / "w.safetensors"))
    cli.error(cli.invoke("train", tiny.solver, "--weights", tmp_path / "w.safetensors"),
              "no param in the file matches a layer of net tiny (params are matched by layer "
              "name); the file has other.weight")


def test_weights_shape_mismatch_is_exit_2_naming_layer_and_shapes(cli, tiny, tmp_path):
    w = tmp_path / "w.safetensors"
    save_file({"ip2.weight": np.zeros((4, 8), np.float32)}, str(w))
    cli.error(cli.invoke("train", tiny.solver, "--weights", w),
              f"{w}: layer ip2: param weight has shape (4, 8) in the file but (3, 8) in the "
              f"net; to initialize ip2 afresh instead, rename it in the net (e.g. ip2_new): "
              f"weights are matched by layer name")


# ---- the spiral model ---------------------------------------------------------------------

def test_spiral_model_reaches_97_percent(cli, tmp_path):
    model = tmp_path / "spiral"
    shutil.copytree(REPO / "models" / "spiral", model)
    result = cli.ok(cli.invoke("train", model / "solver.yaml", "--json"))
    summary = json.loads(result.stdout)
    final = Path(summary["snapshot"]).with_suffix(".safetensors")
    assert final.parent == model / "snapshots" and final.is_file()
    assert set(weights(final)) == PARAM_KEYS
    report = json.loads(cli.ok(cli.invoke("test", model / "net.yaml", "--weights", final,
                                          "--json")).stdout)
    assert report["outputs"]["accuracy"] >= 0.97, report


# ---- Ctrl-C ---------------------------------------------------------------------------------

INTERRUPTER = '''
"""Identity that sends this process SIGINT (Ctrl-C) at its 5th training forward."""
import os
import signal

from layerflow import Layer, register_layer


@register_layer
class CtrlC(Layer):
    calls = 0

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        if self.phase == "train":
            type(self).calls += 1
            if type(self).calls == 5:
                os.kill(os.getpid(), signal.SIGINT)
        return [bottoms[0]]

    def backward(self, top_diffs):
        return [top_diffs[0]]
'''


def test_ctrl_c_says_what_was_interrupted_first_and_labels_the_last_test(cli, tmp_path):
    net = cli.TINY_NET.replace("  - {name: ip1,", "  - {name: stop, type: CtrlC}\n  - {name: ip1,")
    net = net.replace("{name: ip1, type: InnerProduct,",
                      "{name: ip1, type: InnerProduct, bottom: stop,")
    solver = cli.TINY_SOLVER.replace("max_iter: 6", "max_iter: 100").replace(
        "test_interval: 3", "test_interval: 4")
    project = cli.make_project(tmp_path / "p", net=net, solver=solver)
    (project.root / "ctrl_c.py").write_text(INTERRUPTER)
    result = cli.invoke("train", project.solver, "--plugin", project.root / "ctrl_c.py")
    assert result.exit_code == 130, cli.describe(result)
    state = project.root / "out" / "tiny_iter_5.solverstate"
    assert re.fullmatch(rf"interrupted at iteration 5 of 100 after [0-9.]+ s; snapshot "
                        rf"{re.escape(str(state))} \(continue with --resume auto\)\n",
                        result.stderr)
    tests = [json.loads(line) for line in (project.root / "out" / "tiny_metrics.jsonl")
             .read_text().splitlines() if '"test"' in line]
    assert [t["iter"] for t in tests] == [0, 4]
    last = result.stdout.splitlines()[-1]
    assert last == "last test, at iteration 4: " + ", ".join(
        f"{k} = {v:.6g}" for k, v in tests[-1]["outputs"].items())
    assert "done:" not in result.stdout


# ---- what the progress lines say -----------------------------------------------------------

def test_display_lines_label_each_number(cli, tmp_path):
    solver = cli.TINY_SOLVER.replace("display: 2", "display: 2\naverage_loss: 3")
    project = cli.make_project(tmp_path / "p", solver=solver)
    result = cli.ok(cli.invoke("train", project.solver))
    records = [json.loads(line) for line in (project.root / "out" / "tiny_metrics.jsonl")
               .read_text().splitlines()]
    train = {r["iter"]: r for r in records if r["event"] == "train"}
    assert train[2]["smoothed_over"] == 2 and train[4]["smoothed_over"] == 3
    lines = result.stdout.splitlines()
    for it, r in train.items():
        want = (f"iter {it}: loss = {r['loss']:.6g} (mean of the last {r['smoothed_over']} "
                f"iterations), lr = {r['lr']:.6g}; outputs of iteration {it}: loss = "
                f"{r['outputs']['loss']:.6g}; ")
        line = next(x for x in lines if x.startswith(f"iter {it}: "))
        assert line.startswith(want) and re.search(r"; [0-9.]+ s elapsed$", line), line


def test_numbers_print_in_scientific_notation_when_huge():
    from layerflow.cli.progress import number

    assert number(3.2e36) == "3.2e+36" and number(0.42469) == "0.42469"
    assert number(1234567.0) == "1.23457e+06" and number(7) == "7"


def test_the_progress_bar_labels_its_two_times():
    from types import SimpleNamespace

    from rich.console import Console

    from layerflow.cli.progress import RichEvents

    console = Console(record=True, force_terminal=True, width=120)
    events = RichEvents(console=console)
    spec = SimpleNamespace(type="SGD", max_iter=100)
    events.start(SimpleNamespace(net=SimpleNamespace(name="n"), spec=spec, seed=1), 0)
    events.iteration(40)
    events.display({"iter": 40, "loss": 3.2e36, "lr": 0.01, "smoothed_over": 1,
                    "outputs": {}, "elapsed_s": 1.0})
    events.progress.refresh()
    bar = events.progress.get_renderable()
    text = Console(width=120, record=True)
    text.print(bar)
    rendered = text.export_text()
    events.done({"iterations": 40, "max_iter": 100, "loss": 1.0, "test": {}, "test_iter": None,
                 "elapsed_s": 1.0, "snapshot": None, "interrupted": False})
    assert re.search(r"40/100 elapsed \d:\d\d:\d\d left (\d:\d\d:\d\d|-:--:--) loss 3\.2e\+36",
                     rendered), rendered


def test_the_displayed_lr_is_the_one_in_force_at_that_iteration(cli, tmp_path):
    """Caffe logs "Iteration 5, lr = 0.001" with base_lr 0.01, lr_policy step, gamma 0.1,
    stepsize 5: the rate the update made at iteration 5 uses. layerflow's line for iteration 5
    says the same, so the two logs compare line by line."""
    solver = (cli.TINY_SOLVER.replace("base_lr: 0.1", "base_lr: 0.01")
              .replace("lr_policy: fixed", "lr_policy: step\ngamma: 0.1\nstepsize: 5")
              .replace("max_iter: 6", "max_iter: 10").replace("display: 2", "display: 5"))
    project = cli.make_project(tmp_path / "p", solver=solver)
    lines = cli.ok(cli.invoke("train", project.solver)).stdout.splitlines()
    lr = {int(m.group(1)): m.group(2) for line in lines
          if (m := re.match(r"iter (\d+): .*lr = ([0-9.e-]+);", line))}
    assert lr == {5: "0.001", 10: "0.0001"}
