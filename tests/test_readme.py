"""The README's commands and code work as written: its Python snippet runs, its editor set-up
command writes into a schemas/ folder that does not exist yet, and every `-o` makes its
folders."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from layerflow.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_python_snippet_runs_as_written(monkeypatch, capsys):
    (code,) = blocks("python")
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository, as a reader runs it
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    loss, accuracy = (float(v) for v in printed[0].split())
    assert loss > 0 and 0 <= accuracy <= 1
    assert printed[1:3] == ["(100, 2) (100, 2)", "(5, 100) (5, 100)"]
    assert float(printed[3]) >= 0.6  # 100 iterations of the spiral solver: well above chance


def test_the_schema_command_writes_into_a_new_folder(tmp_path, monkeypatch):
    line = next(b for b in blocks("sh") if "layerflow schema net -o" in b).strip()
    monkeypatch.chdir(tmp_path)
    for command in line.split("&&"):
        args = shlex.split(command)
        assert args[0] == "layerflow"
        result = CliRunner().invoke(app, args[1:])
        assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "schemas" / "net.schema.json").read_text())["title"]
    assert json.loads((tmp_path / "schemas" / "solver.schema.json").read_text())["title"]


def test_every_output_option_makes_its_folders(tmp_path):
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"event": "train", "iter": 1, "lr": 0.1, "loss": 1.0}\n'
                       '{"event": "train", "iter": 2, "lr": 0.1, "loss": 0.5}\n')
    runs = [["schema", "solver", "-o", tmp_path / "a" / "b" / "s.json"],
            ["draw", ROOT / "models" / "spiral" / "net.yaml", "-o", tmp_path / "c" / "g.dot"],
            ["plot", metrics, "-o", tmp_path / "d" / "e" / "m.png"]]
    for args in runs:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        assert Path(args[-1]).is_file()


def sh_commands(block: str) -> list[str]:
    return [c.strip() for c in block.replace("\\\n", " ").split("&&")]


def test_the_set_up_commands_start_from_a_fresh_debian_machine():
    """The first command installs what a fresh Debian/Ubuntu lacks (venv's ensurepip, the
    data set), makes a virtual environment, installs layerflow in it, and trains."""
    # the set-up command and the test command come first; later sections install extras
    first, tests = [b for b in blocks("sh") if "pip install" in b][:2]
    steps = sh_commands(first)
    assert steps[0] == "sudo apt-get update"
    apt = steps[1].split()
    assert apt[:4] == ["sudo", "apt-get", "install", "-y"]
    assert {"python3-venv", "dataset-fashion-mnist"} <= set(apt[4:])
    assert steps[2:5] == ["python3 -m venv .venv", ". .venv/bin/activate",
                          "python -m pip install -e ."]
    train = steps[5].split()
    assert train[:2] == ["layerflow", "train"] and (ROOT / train[2]).is_file()
    assert sh_commands(tests)[0] == ". .venv/bin/activate"


def test_ci_runs_the_readme_commands():
    """.ci/run makes the same virtual environment and runs the README's test command (quietly),
    after installing the same system packages when they are missing."""
    # the set-up command and the test command come first; later sections install extras
    first, tests = [b for b in blocks("sh") if "pip install" in b][:2]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    def quiet(command):
        return command.replace(" -q", "")

    for step in sh_commands(first)[2:4] + sh_commands(tests):
        assert step in [quiet(line) for line in ci_lines], step
    readme_packages = set(sh_commands(first)[1].split()[4:])
    ci_packages = set(re.findall(r"need\+=\(([\w-]+)\)", ci))
    assert ci_packages == readme_packages | {"graphviz"}
    assert "sudo apt-get install -y graphviz" in README  # the README names the extra one
