"""The example plugin package models/plugin_example (layerflow-swish): installed with pip into
a folder of its own, found through its entry point, trained with from the command line, and
its own tests (which use layerflow's gradient checker) pass."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

from plugin_support import EXAMPLE, ROOT, subprocess_env, use_site


def test_installed_example_plugin_trains_from_the_cli(swish_site, tmp_path, cli):
    for name in ("net.yaml", "solver.yaml"):  # a copy, so snapshots stay out of the repo
        shutil.copy(EXAMPLE / name, tmp_path / name)
    r = cli.sub("train", tmp_path / "solver.yaml", "--json", sites=[swish_site])
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["iterations"] == 1000
    assert summary["loss"] < 0.3
    assert summary["test"]["accuracy"] >= 0.95
    assert (tmp_path / "snapshots" / "spiral_swish_iter_1000.safetensors").is_file()


def test_example_plugin_is_listed_with_its_origin(swish_site, cli):
    use_site(swish_site)
    r = cli("layers")
    assert r.code == 0
    line = next(x for x in r.out.splitlines() if x.startswith("Swish "))
    assert "plugin layerflow-swish 0.1.0 (entry point layerflow.layers: Swish = " \
           "layerflow_swish:Swish)" in line
    r = cli("layers", "Swish", "--json")
    keys = {p["key"]: p for p in json.loads(r.out)["params"]}
    assert keys["beta_filler.value"]["default"] == 1.0
    assert keys["beta_filler.type"]["type"].startswith("constant | uniform")


def test_example_plugin_own_tests_pass(swish_site):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(EXAMPLE / "tests")], capture_output=True, text=True,
                          cwd=ROOT, env=subprocess_env(swish_site), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
