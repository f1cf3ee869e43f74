"""Plugins: a layer (or solver, or lr policy) type arriving each of the three ways, lazily and
through the same registry; broken plugins and name clashes named clearly."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import layerflow as lf
from layerflow import UserError
from layerflow.registry import LAYERS, LR_POLICIES, SOLVERS
from plugin_support import fake_dist, use_site

TWICE = '''
"""Twice: y = 2 x (a test plugin)."""
from layerflow import Layer, register_layer


@register_layer
class Twice(Layer):
    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        return [2 * bottoms[0]]

    def backward(self, top_diffs):
        return [2 * top_diffs[0]]
'''

USES_TWICE = """\
name: uses_twice
layers:
  - {name: x, type: Input, shape: [2, 3]}
  - {name: tw, type: Twice}
"""

NO_PLUGIN = """\
name: plain
layers:
  - {name: x, type: Input, shape: [2, 3]}
  - {name: relu, type: ReLU}
"""

# a trainable net around a plugin layer: spiral data -> ip -> Twice -> ip -> softmax loss
TRAINABLE = """\
name: trainable
{plugins}layers:
  - {{name: data, type: Data, top: [data, label], source: spiral, points_per_class: 10,
     batch_size: 30}}
  - {{name: ip1, type: InnerProduct, num_output: 4}}
  - {{name: tw, type: {type}}}
  - {{name: ip2, type: InnerProduct, num_output: 3}}
  - {{name: loss, type: SoftmaxLoss, bottom: [ip2, label]}}
  - {{name: accuracy, type: Accuracy, bottom: [ip2, label], include: {{phase: test}}}}
"""

SOLVER = """\
net: net.yaml
type: {type}
base_lr: 0.1
lr_policy: {policy}
max_iter: 4
display: 2
test_interval: 4
test_iter: 1
snapshot_prefix: snap/run
random_seed: 1
"""


def twice_dist(tmp_path, dist="lf-twice", module="lfp_twice"):
    return fake_dist(tmp_path, dist, {"layerflow.layers": {"Twice": f"{module}:Twice"}},
                     {f"{module}.py": TWICE})


def forward_twice(net):
    x = np.arange(6.0).reshape(2, 3)
    return net.forward({"x": x})["tw"], x


# -- the public names a plugin author needs ---------------------------------------------------

def test_public_names_importable_from_layerflow():
    from layerflow import (FillerSpec, GradcheckResult, Layer, Param, UserError,  # noqa
                           check_layer, fill, gradcheck, register_layer, register_lr_policy,
                           register_solver)

    assert callable(gradcheck) and callable(check_layer)
    assert issubclass(UserError, Exception) and FillerSpec().type == "constant"
    assert fill(FillerSpec(type="constant", value=2.0), (2,), np.float32,
                np.random.default_rng(0)).tolist() == [2.0, 2.0]
    for name in ("Layer", "Param", "register_layer", "register_solver", "register_lr_policy",
                 "FillerSpec", "fill", "UserError", "gradcheck"):
        assert name in lf.__all__


# -- way 1: entry points --------------------------------------------------------------------

def test_entry_point_plugin_is_imported_only_when_a_net_uses_it(tmp_path):
    use_site(twice_dist(tmp_path))
    lf.Net.from_string(NO_PLUGIN)
    assert "lfp_twice" not in sys.modules  # lazy: a net without the type never imports it
    net = lf.Net.from_string(USES_TWICE)
    y, x = forward_twice(net)
    np.testing.assert_array_equal(y, 2 * x)
    assert "lfp_twice" in sys.modules
    origin = LAYERS.origin_of("Twice")
    assert "lf-twice 0.1" in origin and "entry point layerflow.layers: Twice = lfp_twice:Twice" \
        in origin


def test_entry_point_to_an_undecorated_class_registers_it_under_the_entry_point_name(tmp_path):
    source = TWICE.replace("@register_layer\n", "")
    use_site(fake_dist(tmp_path, "lf-plain", {"layerflow.layers": {"Doubler": "lfp_plain:Twice"}},
                       {"lfp_plain.py": source}))
    net = lf.Net.from_string(USES_TWICE.replace("Twice", "Doubler"))
    assert forward_twice(net)[0][1, 2] == 10.0
    assert LAYERS.get("Doubler").type == "Doubler"


def test_importing_an_installed_plugin_directly_is_not_a_clash(tmp_path):
    use_site(twice_dist(tmp_path))
    import lfp_twice  # a test or script imports the package before any net asks for it

    net = lf.Net.from_string(USES_TWICE)
    assert net.layer_by_name["tw"].__class__ is lfp_twice.Twice
    assert "entry point" in LAYERS.origin_of("Twice")


def test_solver_and_lr_policy_from_entry_points(tmp_path):
    source = '''
        import numpy as np
        from layerflow import register_lr_policy, register_solver
        from layerflow.solver import Solver


        @register_solver("PlainGD")
        class PlainGD(Solver):
            """w -= rate * g, nothing else."""
            def update(self, i, param, rate):
                param.data -= param.data.dtype.type(rate) * param.grad


        @register_lr_policy("halving")
        def halving(spec, it):
            """lr = base_lr / 2^iter."""
            return 0.5 ** it
        '''
    use_site(fake_dist(tmp_path, "lf-gd", {"layerflow.solvers": {"PlainGD": "lfp_gd:PlainGD"},
                                           "layerflow.lr_policies": {"halving": "lfp_gd:halving"}},
                       {"lfp_gd.py": source}))
    (tmp_path / "net.yaml").write_text(TRAINABLE.format(plugins="", type="ReLU"))
    (tmp_path / "solver.yaml").write_text(SOLVER.format(type="PlainGD", policy="halving"))
    solver = lf.Solver.from_yaml(tmp_path / "solver.yaml")
    assert type(solver).__name__ == "PlainGD" and solver.learning_rate(3) == pytest.approx(0.0125)
    before = solver.net.params["ip1"]["weight"].data.copy()
    solver.step(2)
    assert not np.array_equal(before, solver.net.params["ip1"]["weight"].data)
    assert "lf-gd 0.1" in SOLVERS.origin_of("PlainGD") and "lf-gd" in LR_POLICIES.origin_of("halving")


# -- way 2: `plugins:` in the net YAML ------------------------------------------------------

def test_plugins_key_loads_a_py_file_relative_to_the_yaml(tmp_path, monkeypatch):
    (tmp_path / "nets" / "mine").mkdir(parents=True)
    (tmp_path / "nets" / "mine" / "twice.py").write_text(TWICE)
    net_file = tmp_path / "nets" / "net.yaml"
    net_file.write_text("plugins: [mine/twice.py]\n" + USES_TWICE)
    monkeypatch.chdir(tmp_path)  # not the YAML's folder: the path is relative to the YAML
    y, x = forward_twice(lf.Net.from_yaml(net_file))
    np.testing.assert_array_equal(y, 2 * x)
    assert LAYERS.origin_of("Twice") == f"plugin file {tmp_path / 'nets' / 'mine' / 'twice.py'}"


def test_plugins_key_loads_a_module(tmp_path):
    (tmp_path / "lfp_mod_twice.py").write_text(TWICE)
    sys.path.insert(0, str(tmp_path))
    net = lf.Net.from_string("plugins: [lfp_mod_twice]\n" + USES_TWICE)
    assert forward_twice(net)[0][0, 1] == 2.0
    assert LAYERS.origin_of("Twice") == "plugin module lfp_mod_twice"


def test_plugins_key_missing_file_or_module_is_a_user_error_with_its_place(tmp_path):
    net_file = tmp_path / "net.yaml"
    net_file.write_text("plugins: [nothere.py]\n" + USES_TWICE)
    with pytest.raises(UserError, match=r"net.yaml:1:\d+: plugins\[0\]: plugin file not found"):
        lf.Net.from_yaml(net_file)
    net_file.write_text("plugins: [no_such_module_xyz]\n" + USES_TWICE)
    with pytest.raises(UserError, match='plugin module "no_such_module_xyz" not found'):
        lf.Net.from_yaml(net_file)


# -- way 3: --plugin on the command line --------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    """A trainable net using the Twice layer from a plugin file given only on the CLI."""
    (tmp_path / "twice.py").write_text(TWICE)
    (tmp_path / "net.yaml").write_text(TRAINABLE.format(plugins="", type="Twice"))
    (tmp_path / "solver.yaml").write_text(SOLVER.format(type="SGD", policy="fixed"))
    return tmp_path


def test_plugin_option_on_every_command(project, cli, monkeypatch):
    monkeypatch.chdir(project)  # --plugin paths are relative to the working directory
    plug = ["--plugin", "twice.py"]
    r = cli("train", "solver.yaml", "--json", *plug)
    assert r.code == 0, r.err
    weights = next((project / "snap").glob("run_iter_4.safetensors"))
    commands = [["test", "net.yaml", "--weights", weights], ["summary", "net.yaml"],
                ["gradcheck", "net.yaml", "--max-checks", "10"],
                ["time", "net.yaml", "--iterations", "2"], ["draw", "net.yaml", "-o", "g.dot"],
                ["layers", "Twice"], ["layers"], ["schema", "net"],
                ["plot", project / "snap" / "run_metrics.jsonl", "-o", "p.png"]]

    def forget_plugin():  # so that every command must load the plugin itself
        LAYERS.unregister("Twice")
        for name, module in list(sys.modules.items()):
            if getattr(module, "__file__", None) == str(project / "twice.py"):
                del sys.modules[name]

    outputs = {}
    for args in commands:
        forget_plugin()
        r = cli(*args, *plug)
        assert r.code == 0, (args, r.err)
        outputs[args[0] if args[0] != "layers" else " ".join(args)] = r.out
    assert "tw" in (project / "g.dot").read_text()
    assert "all layers OK" in outputs["gradcheck"] and "Twice" in outputs["summary"]
    assert "plugin file" in outputs["layers"] and "Twice: y = 2 x" in outputs["layers Twice"]
    assert '"TwiceLayer"' in outputs["schema"]
    # and without --plugin the same net is an error naming the unknown type
    forget_plugin()
    r = cli("summary", "net.yaml")
    assert r.code == 2 and 'unknown layer type "Twice"' in r.err


# -- broken plugins -------------------------------------------------------------------------------

BROKEN = '''
import not_a_module_xyz  # the plugin's own bug
'''


def test_broken_entry_point_plugin_is_named_and_breaks_nothing_else(tmp_path, cli):
    site = fake_dist(tmp_path, "lf-broken", {"layerflow.layers": {"Broken": "lfp_broken:Broken"}},
                     {"lfp_broken.py": BROKEN})
    r = cli.sub("--help", sites=[site])
    assert r.code == 0 and "gradcheck" in r.out
    (tmp_path / "plain.yaml").write_text(NO_PLUGIN)
    r = cli.sub("summary", tmp_path / "plain.yaml", sites=[site])
    assert r.code == 0, r.err
    (tmp_path / "uses.yaml").write_text(NO_PLUGIN.replace("ReLU", "Broken"))
    r = cli.sub("summary", tmp_path / "uses.yaml", sites=[site])
    assert r.code == 2
    assert "uses.yaml:4:" in r.err
    assert "plugin lf-broken 0.1" in r.err
    assert "entry point layerflow.layers: Broken = lfp_broken:Broken" in r.err
    assert "ModuleNotFoundError: No module named 'not_a_module_xyz'" in r.err
    assert "Traceback" not in r.err
    r = cli.sub("layers", sites=[site])  # the listing goes on and names the broken one
    assert r.code == 0 and "ReLU" in r.out and "failed to load" in r.out and "lf-broken" in r.out
    # the schema is written without the broken type, and says so, in a warning and in the file
    r = cli.sub("schema", "net", "-o", tmp_path / "net.schema.json", sites=[site])
    assert r.code == 0, r.err
    assert r.err.startswith("warning: left out, failed to load: Broken: ")
    assert "ModuleNotFoundError: No module named 'not_a_module_xyz'" in r.err
    written = json.loads((tmp_path / "net.schema.json").read_text())
    assert written["$comment"].startswith("left out, failed to load: Broken: ")
    types = {d["properties"]["type"]["const"] for d in written["$defs"].values()
             if d.get("title", "").endswith("Layer") and "type" in d.get("properties", {})}
    assert "ReLU" in types and "Broken" not in types


def test_broken_plugin_file_is_named(tmp_path, cli):
    (tmp_path / "bad.py").write_text("raise RuntimeError('oops in plugin')\n")
    (tmp_path / "net.yaml").write_text("plugins: [bad.py]\n" + USES_TWICE)
    r = cli("summary", tmp_path / "net.yaml")
    assert r.code == 2
    assert f"plugin {tmp_path / 'bad.py'} failed to load: RuntimeError: oops in plugin" in r.err
    assert "Traceback" not in r.err


# -- two plugins, one name ------------------------------------------------------------------

def test_two_installed_plugins_declaring_one_type(tmp_path):
    use_site(twice_dist(tmp_path / "a", "lf-twice-a", "lfp_twice_a"))
    use_site(twice_dist(tmp_path / "b", "lf-twice-b", "lfp_twice_b"))
    lf.Net.from_string(NO_PLUGIN)  # a net that does not use the name is fine
    with pytest.raises(UserError) as err:
        lf.Net.from_string(USES_TWICE)
    msg = str(err.value)
    assert 'layer type "Twice" is declared by two plugins' in msg
    assert "lf-twice-a 0.1 (entry point layerflow.layers: Twice = lfp_twice_a:Twice)" in msg
    assert "lf-twice-b 0.1 (entry point layerflow.layers: Twice = lfp_twice_b:Twice)" in msg


def test_two_plugin_files_registering_one_type(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "twice.py").write_text(TWICE)
    with pytest.raises(UserError) as err:
        lf.Net.from_string(f"plugins: [{tmp_path}/a/twice.py, {tmp_path}/b/twice.py]\n"
                           + USES_TWICE)
    msg = str(err.value)
    assert 'layer type "Twice" is registered twice' in msg
    assert f"plugin file {tmp_path / 'a' / 'twice.py'}" in msg
    assert f"plugin file {tmp_path / 'b' / 'twice.py'}" in msg


def test_plugin_file_and_installed_plugin_with_one_type(tmp_path):
    use_site(twice_dist(tmp_path))
    (tmp_path / "twice.py").write_text(TWICE)
    with pytest.raises(UserError) as err:
        lf.Net.from_string(f"plugins: [{tmp_path}/twice.py]\n" + USES_TWICE)
    msg = str(err.value)
    assert f"plugin file {tmp_path / 'twice.py'}" in msg and "lf-twice 0.1" in msg


def test_plugin_taking_a_builtin_name(tmp_path):
    (tmp_path / "relu.py").write_text(TWICE.replace("class Twice", "class ReLU"))
    with pytest.raises(UserError) as err:
        lf.Net.from_string(f"plugins: [{tmp_path}/relu.py]\n" + NO_PLUGIN)
    msg = str(err.value)
    assert 'layer type "ReLU" is registered twice' in msg
    assert "built-in (layerflow.layers.relu)" in msg and f"{tmp_path / 'relu.py'}" in msg


def test_loading_the_same_plugin_twice_is_harmless(tmp_path):
    (tmp_path / "twice.py").write_text(TWICE)
    for _ in range(2):
        net = lf.Net.from_string(f"plugins: [{tmp_path}/twice.py, {tmp_path}/twice.py]\n"
                                 + USES_TWICE, plugins=[str(tmp_path / "twice.py")])
    assert forward_twice(net)[0][0, 2] == 4.0


def test_entry_point_registering_another_name_is_explained(tmp_path):
    use_site(fake_dist(tmp_path, "lf-wrong", {"layerflow.layers": {"Triple": "lfp_wrong:Twice"}},
                       {"lfp_wrong.py": TWICE}))
    with pytest.raises(UserError, match=r'registered no layer type "Triple" \(it gave Twice\)'):
        lf.Net.from_string(USES_TWICE.replace("Twice", "Triple"))


def test_a_type_behind_an_entry_point_of_another_name_is_explained(tmp_path):
    """A net asking for the class's own name: the entry point (named otherwise) is not found by
    that name, so the unknown-type path imports the installed plugins and says what is wrong,
    instead of "unknown layer type"."""
    use_site(fake_dist(tmp_path, "lf-wrong", {"layerflow.layers": {"Triple": "lfp_wrong:Twice"}},
                       {"lfp_wrong.py": TWICE}))
    with pytest.raises(UserError) as err:
        lf.Net.from_string(USES_TWICE)
    assert ('layer type "Twice" is defined by plugin lf-wrong 0.1 (entry point '
            'layerflow.layers: Triple = lfp_wrong:Twice), whose entry point has another name; '
            "the entry point's name must be the type name (Twice = ...)") in str(err.value)
    # a name that nothing defines is still unknown, with the usual suggestions
    with pytest.raises(UserError, match=r'unknown layer type "Quadruple"'):
        lf.Net.from_string(USES_TWICE.replace("Twice", "Quadruple"))


def test_subclass_of_a_builtin_layer_registers_under_its_own_name(tmp_path):
    (tmp_path / "leaky.py").write_text(textwrap.dedent("""
        from layerflow import register_layer
        from layerflow.layers.relu import ReLU


        @register_layer
        class Leaky(ReLU):
            \"\"\"ReLU with another default slope.\"\"\"
        """))
    net = lf.Net.from_string(f"plugins: [{tmp_path}/leaky.py]\n"
                             + NO_PLUGIN.replace("type: ReLU", "type: Leaky, negative_slope: 0.5"))
    y = net.forward({"x": -np.ones((2, 3))})["relu"]
    assert np.all(y == -0.5)
    assert LAYERS.get("Leaky").type == "Leaky" and LAYERS.get("ReLU").type == "ReLU"


# -- a plugin that registers nothing, a plugin not loaded -------------------------------------

def test_a_plugin_file_that_registers_nothing_is_named(tmp_path, cli):
    (tmp_path / "forgot.py").write_text(TWICE.replace("@register_layer\n", ""))
    (tmp_path / "net.yaml").write_text(USES_TWICE)
    r = cli("summary", tmp_path / "net.yaml", "--plugin", tmp_path / "forgot.py")
    assert r.code == 2
    assert r.err.rstrip().endswith(
        f"; plugin file {tmp_path / 'forgot.py'} was loaded but registered no types (Twice is "
        f"not decorated with @register_layer)")


def test_a_plugin_module_that_registers_nothing_is_named(tmp_path):
    (tmp_path / "lfp_empty.py").write_text('"""Nothing here."""\n')
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(UserError) as err:
        lf.Net.from_string("plugins: [lfp_empty]\n" + USES_TWICE)
    assert str(err.value).endswith("; plugin module lfp_empty was loaded but registered no "
                                   "types")


def test_an_unknown_type_with_no_plugin_loaded_says_how_to_load_one(tmp_path, cli):
    (tmp_path / "net.yaml").write_text(USES_TWICE)
    r = cli("summary", tmp_path / "net.yaml")
    assert r.code == 2 and r.err.rstrip().endswith(
        "; if Twice comes from a plugin, load it: `plugins: [my_layers.py]` in the net, or "
        "--plugin my_layers.py (or install the package that declares it)")
    (tmp_path / "net.yaml").write_text(USES_TWICE.replace("Twice", "Relu"))
    r = cli("summary", tmp_path / "net.yaml")  # a typo of a known type: no plugin talk
    assert r.code == 2 and r.err.rstrip().endswith(
        'unknown layer type "Relu" (did you mean "ReLU"?); known types: ' +
        ", ".join(sorted(set(LAYERS.names()) | set(LAYERS.entry_point_names()))))
