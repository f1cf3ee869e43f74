"""`--help` of every command reads like a well-kept CLI's: a usage line with the arguments by
name (`SOLVER`, `[TYPE]`), options with a metavar saying what they take and none for flags,
no Python type tags, prose filled to the terminal once (never wrapped twice), and one short
line per command in `layerflow --help`."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from layerflow.cli import app

USAGE = {
    "train": "Usage: layerflow train [OPTIONS] SOLVER",
    "test": "Usage: layerflow test [OPTIONS] NET",
    "gradcheck": "Usage: layerflow gradcheck [OPTIONS] NET",
    "layers": "Usage: layerflow layers [OPTIONS] [TYPE]",
    "summary": "Usage: layerflow summary [OPTIONS] NET",
    "time": "Usage: layerflow time [OPTIONS] NET",
    "draw": "Usage: layerflow draw [OPTIONS] NET",
    "plot": "Usage: layerflow plot [OPTIONS] METRICS",
    "schema": "Usage: layerflow schema [OPTIONS] [net|solver]",
    "convert": "Usage: layerflow convert [OPTIONS] SRC",
    "predict": "Usage: layerflow predict [OPTIONS] NET INPUT...",
    "export": "Usage: layerflow export [OPTIONS] NET",
}


def help_text(*args, width=80) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=width,
                                prog_name="layerflow")
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_filled_once(text: str, width: int) -> None:
    """Within a paragraph (lines of one indentation), a line is never broken where the next
    word would still have fitted: text wrapped twice leaves such short lines."""
    lines = text.splitlines()
    for line in lines:
        assert len(line) <= width, f"line longer than {width}: {line!r}"
    for a, b in zip(lines, lines[1:]):
        if not a.strip() or not b.strip():
            continue
        indent_a, indent_b = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
        if indent_b != indent_a and not (indent_b > indent_a and a.lstrip().startswith("-")):
            continue
        if indent_b > indent_a:  # an option's description continues under its column
            col = re.match(r"\s*\S.*?\s{2,}", a)
            if col is None or col.end() != indent_b:
                continue
        if b.lstrip().startswith(("-", "[")) and indent_a == indent_b:
            continue  # the next option, or a [default: ...] note
        if indent_a == indent_b and re.match(r"  [A-Z][A-Z.|\[\]]*\s{2,}\S", b):
            continue  # the next argument (NET, INPUT...)
        first_word = b.split()[0]
        # click fills to width - 2 (its right margin)
        assert len(a) + 1 + len(first_word) > width - 2, \
            f"wrapped twice: {a!r} could have taken {first_word!r}"


@pytest.mark.parametrize("command", sorted(USAGE))
def test_each_command_help(command):
    for width in (80, 60):
        text = help_text(command, width=width)
        assert text.splitlines()[0] == USAGE[command]
        for tag in ("<bool>", "<str>", "<path>", "<int", "<float>", "list[", "{", "[[",
                    "<layer|", "<train|", "\\["):  # a markup escape printed as written
            assert tag not in text, f"{command} --help shows {tag!r}:\n{text}"
        assert_filled_once(text, width)
        assert "\nArguments:\n" in text and "\nOptions:\n" in text
        # every option says what it takes, or is a flag
        for line in text.split("\nOptions:\n")[1].splitlines():
            m = re.match(r"  (-\w, )?(--[\w-]+)( (\S+))?", line)
            if m and m.group(2) not in ("--help", "--json", "--start-over", "--profile",
                                        "--deploy"):
                assert m.group(4) and not m.group(4).startswith("<"), line


def test_flags_have_no_metavar_and_options_say_what_they_take():
    text = help_text("train", width=100)
    for line in ("  --resume STATE|auto ", "  --weights FILE[,FILE...] ", "  --set KEY=VALUE ",
                 "  --plugin FILE|MODULE ", "  --start-over ", "  --json ", "  --profile "):
        assert line in text, line
    assert "  SOLVER  The solver YAML" in text
    assert "  --phase train|test " in help_text("summary", width=100)
    assert "  --kind layer|solver|lr_policy " in help_text("layers", width=100)


def test_top_level_help_lists_each_command_on_one_uncut_line():
    text = help_text(width=80)
    assert text.splitlines()[0] == "Usage: layerflow [OPTIONS] COMMAND [ARGS]..."
    commands = text.split("\nCommands:\n")[1].splitlines()
    assert sorted(line.split()[0] for line in commands) == sorted(USAGE)
    for line in commands:
        assert not line.endswith("...") and line.rstrip().endswith("."), line


def test_the_type_listing_keeps_whole_first_sentences():
    """`layers --kind solver` used to cut AdaGrad's description at the colon that introduces
    its formulas."""
    result = CliRunner().invoke(app, ["layers", "--kind", "solver"])
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert rows["AdaGrad"].endswith("AdaGrad, Caffe's form (momentum must be 0)")
    assert rows["SGD"].endswith("SGD with momentum, Caffe's form: the learning rate sits "
                                "inside the momentum buffer.")
    assert not any(row.endswith(":") for row in rows.values())
