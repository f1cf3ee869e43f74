"""Config errors at the engine level: each is a UserError whose message names the file, the
exact line:column (checked against the YAML text written here) and the culprit.

The same mistakes through the command line (exit status 2, no traceback) are in
tests/cli/test_cli_errors.py.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import layerflow as lf
from layerflow.config import load_yaml, load_yaml_text, parse_net
from layerflow.errors import UserError

from yaml_positions import pos


def write(tmp_path: Path, name: str, text: str) -> tuple[Path, str]:
    text = textwrap.dedent(text).lstrip("\n")
    path = tmp_path / name
    path.write_text(text)
    return path, text


def net_error(tmp_path, text, phase="train") -> tuple[str, str, str]:
    """(message, text, file) of building the net `text` written to net.yaml."""
    path, text = write(tmp_path, "net.yaml", text)
    with pytest.raises(UserError) as info:
        lf.Net.from_yaml(path, phase)
    return str(info.value), text, str(path)


def solver_error(tmp_path, text, net=None) -> tuple[str, str, str]:
    path, text = write(tmp_path, "solver.yaml", text)
    write(tmp_path, "net.yaml", net or GOOD_NET)
    with pytest.raises(UserError) as info:
        lf.Solver.from_yaml(path)
    return str(info.value), text, str(path)


GOOD_NET = """
    name: tiny
    layers:
      - {name: data, type: Input, shape: [[2, 3], [2]], top: [data, label]}
      - {name: ip1, type: InnerProduct, num_output: 3}
      - {name: loss, type: SoftmaxLoss, bottom: [ip1, label]}
    """


# ---- YAML itself --------------------------------------------------------------------------

def test_the_issue_example_num_output_not_positive(tmp_path):
    msg, text, f = net_error(tmp_path, """
        name: example
        layers:
          - {name: data, type: Input, shape: [[2, 3], [2]], top: [data, label]}
          - {name: ip0, type: InnerProduct, num_output: 4}
          - {name: relu0, type: ReLU}
          - name: ip1
            num_output: -1
            type: InnerProduct
        """)
    assert pos(text, "num_output: -1") == "7:5"
    assert msg.startswith(f"{f}:7:5: layers[3] (ip1): num_output: Input should be greater "
                          f"than 0")
    assert "-1" in msg


@pytest.mark.parametrize("text, token, problem", [
    ("name: x\nlayers: [\n  {name: a}\n", None, "expected ',' or ']', but got '<stream end>' "
     "(while parsing a flow sequence that starts at {f}:2:9); likely a ']' missing at the end "
     "of the [...] (or a comma missing between its items)"),
    ("name: x\nlayers:\n  - {name: data, type: Input, shape: [2, 3]\n  - {name: ip}\n",
     "- {name: ip}", "expected ',' or '}}', but got '-' (while parsing a flow mapping that "
                     "starts at {f}:3:5); likely a '}}' missing at the end of the {{...}} (or a "
                     "comma missing)"),
    ("name: x\n\tlayers: []\n", "\tlayers", "found character '\\t' that cannot start any "
     "token; likely a tab: YAML indents with spaces only, so replace the tab with spaces"),
    ("name: x\n  bad: 1\n", ": 1", "mapping values are not allowed here; likely line 2 is "
     "indented more than the line above it, so it reads as the rest of that line's value: "
     "keys of one mapping must start in the same column"),
    ("name: my net: v2\nlayers: []\n", ": v2", "mapping values are not allowed here; likely "
     "a value that contains ': ' (quote it: name: \"a: b\"), or a comma missing between two "
     "`key: value` pairs on one line"),
    ("name: x\nlayers:\n  - {name: a, type: ReLU}\n - {name: b, type: ReLU}\n", "- {name: b",
     "expected <block end>, but found '<block sequence start>' (while parsing a block mapping "
     "that starts at {f}:1:1); likely the indentation of line 4: the keys of one mapping, and "
     "the '- ' items of one list, must start in the same column"),
    ("name: x\nlayers:\n  - name: a\n  type: ReLU\n", "type: ReLU",
     "expected <block end>, but found '?' (while parsing a block collection that starts at "
     "{f}:3:3); likely the indentation of line 4: the keys of one mapping, and the '- ' items "
     "of one list, must start in the same column"),
    ("name:x\nlayers: []\n", ": []", "mapping values are not allowed here; likely a missing "
     "space after ':' on line 1: write `key: value`, with a space after the colon"),
    ("name: x\ndtype:float64\nlayers: []\n", "layers", "could not find expected ':' (while "
     "scanning a simple key that starts at {f}:2:1); likely a missing space after ':' on line "
     "2: write `key: value`, with a space after the colon"),
    ("name: 'x\nlayers: []\n", None, "found unexpected end of stream (while scanning a quoted "
     "scalar that starts at {f}:1:7); likely a quote that is never closed: end the string "
     "with the quote it starts with"),
    ("name: x\nlayers:\n  - {name: a type: ReLU}\n", ": ReLU", "expected ',' or '}}', but got "
     "':' (while parsing a flow mapping that starts at {f}:3:5); likely a comma missing "
     "between two `key: value` pairs, or a '}}' missing at the end of the {{...}}"),
])
def test_yaml_syntax_errors_point_at_the_problem(tmp_path, text, token, problem):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_yaml(path)
    where = pos(text, token) if token else f"{text.count(chr(10)) + 1}:1"  # or end of file
    assert str(info.value) == f"{path}:{where}: YAML error: " + problem.format(f=path)


@pytest.mark.parametrize("text, token, message", [
    ("name: x\nlayers:\n  - {name:a, type: ReLU}\n", "name:a",
     "layers[0].name:a: not a key (a missing space after ':'? write `name: a`)"),
    ("name: x\nlayers:\n  - {name: a, type: ReLU, bottom:x}\n", "bottom:x",
     "layers[0] (a): bottom:x: not a key (a missing space after ':'? write `bottom: x`)"),
    ("name: x\nlayers:\n  - {name: a, type: InnerProduct, num_output: 2,\n"
     "     weight_filler: {type: gaussian, std:0.1}}\n", "std:0.1",
     "layers[0] (a): weight_filler.std:0.1: unknown key (a missing space after ':'? write "
     "`std: 0.1`)"),
])
def test_a_key_with_a_colon_is_a_missing_space(tmp_path, text, token, message):
    """`{name:a}` is valid YAML (the key "name:a" with no value): the error says what it
    probably is."""
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        parse_net(load_yaml(path))
    assert str(info.value) == f"{path}:{pos(text, token)}: {message}"


@pytest.mark.parametrize("value", [
    "!!python/object/apply:os.system [\"touch PWNED\"]",
    "!!python/object/new:subprocess.Popen [[touch, PWNED]]",
    "!!python/object:argparse.Namespace {a: 1}",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom scalar",
])
def test_python_tags_are_errors_and_never_run(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    text = f"name: net\nplugins:\n  - {value}\n"
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_yaml(path)
    tag = value.split()[0]
    assert str(info.value) == (f"{path}:{pos(text, tag)}: YAML error: tag {tag} is not "
                               f"allowed: layerflow reads YAML with safe loading only (no "
                               f"Python tags)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml"]


def test_duplicate_key(tmp_path):
    text = "name: a\nlayers: []\nname: b\n"
    with pytest.raises(UserError) as info:
        load_yaml_text(text, "net.yaml")
    assert str(info.value) == 'net.yaml:3:1: name: key "name" appears twice'


def test_recursive_alias_is_an_error_not_a_crash():
    with pytest.raises(UserError, match=r"^net.yaml:2:9: YAML error: an alias refers to a "
                                        r"value that contains it"):
        load_yaml_text("name: x\nlayers: &l [*l]\n", "net.yaml")


def test_exponential_aliases_are_refused_quickly():
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(UserError, match="expands to more than"):
        load_yaml_text("\n".join(lines), "bomb.yaml")


@pytest.mark.parametrize("text, expected", [
    ("", "net.yaml:1:1: expected a mapping of keys at the top of the file, got an empty file"),
    ("- a\n- b\n", "net.yaml:1:1: expected a mapping of keys at the top of the file, got list"),
])
def test_top_level_must_be_a_mapping(text, expected):
    with pytest.raises(UserError) as info:
        load_yaml_text(text, "net.yaml")
    assert str(info.value) == expected


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UserError) as info:
        lf.Net.from_yaml(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: file not found"
    with pytest.raises(UserError) as info:
        lf.Net.from_yaml(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a folder, expected a YAML file"


# ---- the net file -------------------------------------------------------------------------

def test_unknown_net_key_suggests_the_closest(tmp_path):
    msg, text, f = net_error(tmp_path, """
        name: x
        layer:
          - {name: data, type: Input, shape: [2, 3]}
        """)
    assert f"{f}:1:1: layers: missing required key" in msg
    assert f'{f}:{pos(text, "layer:")}: layer: unknown key (did you mean "layers"?)' in msg


@pytest.mark.parametrize("line, expected", [
    ("dtype: float16", "dtype: Input should be 'float32' or 'float64' (got 'float16')"),
    ("force_backward: maybe", "force_backward: Input should be a valid boolean"),
])
def test_wrong_net_values(tmp_path, line, expected):
    msg, text, f = net_error(tmp_path, line + "\n" + textwrap.dedent(GOOD_NET).lstrip("\n"))
    assert msg.startswith(f"{f}:1:1: {expected}")


def test_unknown_layer_type_lists_known_types_and_suggests_the_closest(tmp_path):
    msg, text, f = net_error(tmp_path, """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip1, type: InnerProdcut, num_output: 3}
        """)
    assert msg.startswith(f'{f}:{pos(text, "type: InnerProdcut")}: layers[1] (ip1): type: '
                          f'unknown layer type "InnerProdcut" (did you mean "InnerProduct"?); '
                          f'known types: ')
    known = msg.split("known types: ")[1].split(", ")
    assert {"Accuracy", "Eltwise", "InnerProduct", "Input", "ReLU", "SVMLoss", "Sigmoid",
            "SoftmaxLoss"} <= set(known)
    assert known == sorted(known)


def test_unknown_layer_key_suggests_the_closest_and_lists_the_keys(tmp_path):
    msg, text, f = net_error(tmp_path, """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - name: ip1
            type: InnerProduct
            num_ouput: 3
        """)
    assert msg.startswith(f'{f}:5:5: layers[1] (ip1): num_ouput: unknown key for an '
                          f'InnerProduct layer (did you mean "num_output"?); its keys are: axis, '
                          f'bias_filler, bias_term, num_output, weight_filler and the generic ')


def test_unknown_nested_key_suggests_the_closest(tmp_path):
    msg, text, f = net_error(tmp_path, """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - {name: ip1, type: InnerProduct, num_output: 3,
             weight_filler: {type: gaussian, sdt: 0.1}}
        """)
    assert msg == (f'{f}:{pos(text, "sdt")}: layers[1] (ip1): weight_filler.sdt: unknown key '
                   f'(did you mean "std"?)')


@pytest.mark.parametrize("layer, key, expected", [
    ("{name: ip1, type: InnerProduct}", None, "layers[1] (ip1): num_output: missing required key"),
    ("{type: InnerProduct, num_output: 3}", None, "layers[1].name: missing required key"),
    ("{name: ip1, num_output: 3}", None, "layers[1] (ip1): type: missing required key"),
    ("{name: ip1, type: InnerProduct, num_output: three}", "num_output",
     "layers[1] (ip1): num_output: Input should be a valid integer"),
    ("{name: ip1, type: InnerProduct, num_output: 3, weight_filler: {type: gauss}}", "type: g",
     "layers[1] (ip1): weight_filler.type: Input should be"),
    ("{name: r, type: ReLU, include: {phase: val}}", "phase", "layers[1] (r): include[0].phase: "),
    ("{name: r, type: ReLU, loss_weight: [heavy]}", "heavy",
     "layers[1] (r): loss_weight[0]: Input should be a valid number"),
    ("{name: e, type: Eltwise, bottom: [data, data], operation: AVG}", "operation",
     "layers[1] (e): operation: Input should be 'SUM', 'PROD' or 'MAX'"),
])
def test_missing_and_wrong_layer_values(tmp_path, layer, key, expected):
    msg, text, f = net_error(tmp_path, f"""
        layers:
          - {{name: data, type: Input, shape: [2, 3]}}
          - {layer}
        """)
    where = pos(text, key, 0) if key else pos(text, "{", 1)  # the key, or the layer's `{`
    assert msg.startswith(f"{f}:{where}: {expected}"), msg


def test_every_problem_of_a_layer_is_listed(tmp_path):
    msg, text, f = net_error(tmp_path, """
        layers:
          - {name: data, type: Input, shape: [2, 3]}
          - name: ip1
            type: InnerProduct
            num_output: 0
            bias_term: sometimes
        """)
    assert msg.splitlines() == [
        f"{f}:5:5: layers[1] (ip1): num_output: Input should be greater than 0 (got 0)",
        f"{f}:6:5: layers[1] (ip1): bias_term: Input should be a valid boolean, unable to "
        f"interpret input (got 'sometimes')",
    ]


def test_shape_mismatch_between_layers_names_the_layer_and_shapes(tmp_path):
    msg, text, f = net_error(tmp_path, """
        layers:
          - {name: data, type: Input, shape: [[2, 3], [2, 4]], top: [a, b]}
          - {name: sum, type: Eltwise, bottom: [a, b]}
        """)
    assert msg == (f"{f}:{pos(text, '{name: sum')}: layers[1] (sum): bottoms must have "
                   f"identical shapes, got a (2, 3), b (2, 4)")


# ---- the solver file ----------------------------------------------------------------------

def test_unknown_solver_key_suggests_the_closest(tmp_path):
    msg, text, f = solver_error(tmp_path, """
        net: net.yaml
        max_iter: 10
        momentun: 0.9
        """)
    assert msg == f'{f}:3:1: momentun: unknown solver key (did you mean "momentum"?)'


@pytest.mark.parametrize("extra, key, expected", [
    ("", None, "max_iter: missing required key"),
    ("max_iter: 10\nbase_lr: -0.1\n", "base_lr", "base_lr: Input should be greater than 0 "
                                                 "(got -0.1)"),
    ("max_iter: 10\ntype: SDG\n", "type", 'type: unknown solver type "SDG" (did you mean "SGD"?)'),
    ("max_iter: 10\nlr_policy: fixd\n", "lr_policy",
     'lr_policy: unknown lr_policy type "fixd" (did you mean "fixed"?)'),
    ("max_iter: 10\nlr_policy: step\nstepsize: 5\n", "lr_policy", "lr_policy step needs `gamma`"),
    ("max_iter: 10\nregularization_type: L3\n", "regularization_type",
     "regularization_type: Input should be 'L2' or 'L1'"),
])
def test_missing_and_wrong_solver_values(tmp_path, extra, key, expected):
    msg, text, f = solver_error(tmp_path, "net: net.yaml\n" + extra)
    where = pos(text, key) if key else "1:1"
    assert msg.startswith(f"{f}:{where}: {expected}"), msg


def test_net_path_is_relative_to_the_solver_file_and_missing_net_is_named(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    msg, _, _ = solver_error(tmp_path, "net: nets/missing.yaml\nmax_iter: 1\n")
    assert msg == f"{(tmp_path / 'nets' / 'missing.yaml').resolve()}: file not found"
    write(tmp_path, "solver2.yaml", "net: net.yaml\nmax_iter: 1\n")
    solver = lf.Solver.from_yaml(Path("..") / "solver2.yaml")  # found beside the solver
    assert solver.net.name == "tiny"
    assert solver.cfg.snapshot_prefix == (tmp_path / "snapshots" / "solver2").resolve()
