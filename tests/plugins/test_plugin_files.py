"""A plugin file is one module whatever route loads it: `from my_layer import MyLayer` in a
script and `--plugin my_layer.py` (or `plugins:`) import it under the same name, the one a
normal import gives it. Numba's on-disk cache records that name, so a file first compiled
one way and loaded the other way must still work, in either order, and the installable
Swish example must still load from its file once it is no longer installed. Every failure to
import a plugin is a clean error naming it (exit 2)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import layerflow as lf
from layerflow import UserError
from layerflow.plugins import load_plugin, module_name
from layerflow.registry import LAYERS
from plugin_support import EXAMPLE, subprocess_env

CUBE = '''
"""Square: y = x^2 (central differences are exact for it), Numba kernels cached on disk."""
import numpy as np
from numba import njit

from layerflow import Layer, register_layer


@njit(cache=True)
def cube_forward(x, out):
    for i in range(x.size):
        out[i] = x[i] * x[i]


@njit(cache=True)
def cube_backward(x, dout, dx):
    for i in range(x.size):
        dx[i] = 2 * x[i] * dout[i]


@register_layer
class MyLayer(Layer):
    def reshape(self, bottom_shapes):
        self.top = np.zeros(bottom_shapes[0], self.dtype)
        self.dx = np.zeros(bottom_shapes[0], self.dtype)
        return [tuple(bottom_shapes[0])]

    def forward(self, bottoms):
        self.x = bottoms[0]
        cube_forward(self.x.reshape(-1), self.top.reshape(-1))
        return [self.top]

    def backward(self, top_diffs):
        cube_backward(self.x.reshape(-1), top_diffs[0].reshape(-1), self.dx.reshape(-1))
        return [self.dx]
'''

NET = """\
name: cube
layers:
  - {name: x, type: Input, shape: [2, 3]}
  - {name: c, type: MyLayer}
"""

# what docs/writing-a-layer.md suggests for a plugin's own tests
SCRIPT = """\
import numpy as np
from layerflow import gradcheck
from my_layer import MyLayer
gradcheck(MyLayer, [np.random.default_rng(0).normal(size=(2, 3)) * 0.3])
print("script ok")
"""


def cube_project(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_layer.py").write_text(CUBE)
    (folder / "net.yaml").write_text(NET)
    (folder / "check.py").write_text(SCRIPT)
    return folder


def script(folder):
    """`python check.py` in the plugin's folder: imports it as `my_layer`, compiles, caches."""
    return subprocess.run([sys.executable, "check.py"], cwd=folder, capture_output=True,
                          text=True, env=subprocess_env(), timeout=300)


def test_script_then_plugin_option(tmp_path, cli):
    folder = cube_project(tmp_path / "a")
    first = script(folder)
    assert first.returncode == 0 and "script ok" in first.stdout, first.stderr
    assert list((folder / "__pycache__").glob("my_layer.cube_forward-*.nbi"))  # cached
    r = cli.sub("gradcheck", "net.yaml", "--plugin", "my_layer.py", cwd=folder)
    assert r.code == 0 and "all layers OK" in r.out, r.err


def test_plugin_option_then_script(tmp_path, cli):
    folder = cube_project(tmp_path / "b")
    r = cli.sub("gradcheck", "net.yaml", "--plugin", "my_layer.py", cwd=folder)
    assert r.code == 0 and "all layers OK" in r.out, r.err
    assert list((folder / "__pycache__").glob("my_layer.cube_forward-*.nbi"))
    second = script(folder)
    assert second.returncode == 0 and "script ok" in second.stdout, second.stderr


def test_swish_installed_then_uninstalled_loads_from_its_file(tmp_path, cli):
    """While "installed" (importable as the package layerflow_swish, as `pip install -e`
    makes it), its kernels are compiled and cached under `layerflow_swish.swish`; once it is
    gone from the path, `--plugin .../layerflow_swish/swish.py` loads the same module name."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "snapshots", "tests"))
    installed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""\
            import numpy as np
            from layerflow import gradcheck
            from layerflow_swish import Swish
            gradcheck(Swish, [np.random.default_rng(1).standard_normal((3, 4))])
            print(Swish.__module__)
            """)], capture_output=True, text=True, env=subprocess_env(src), cwd=tmp_path,
        timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == "layerflow_swish.swish"
    assert list((src / "layerflow_swish" / "__pycache__").glob("swish.swish_forward-*.nbi"))
    r = cli.sub("gradcheck", src / "net.yaml", "--plugin", src / "layerflow_swish" / "swish.py",
                cwd=tmp_path)
    assert r.code == 0 and "all layers OK" in r.out, r.err


def test_one_module_in_either_order_in_one_process(tmp_path):
    folder = cube_project(tmp_path / "c")
    sys.path.insert(0, str(folder))
    import my_layer  # a test or notebook imports it first

    load_plugin("my_layer.py", folder)  # then a net or --plugin names the file
    assert LAYERS.get("MyLayer") is my_layer.MyLayer
    assert sys.modules["my_layer"] is my_layer

    other = cube_project(tmp_path / "d")
    (other / "my_cube.py").write_text(CUBE.replace("class MyLayer", "class MyCube"))
    load_plugin(str(other / "my_cube.py"))  # the file first, then the import
    sys.path.insert(0, str(other))
    import my_cube

    assert LAYERS.get("MyCube") is my_cube.MyCube
    net = lf.Net.from_string(NET.replace("MyLayer", "MyCube"))
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(net.forward({"x": x})["c"], x ** 2)


def test_module_names_follow_the_packages(tmp_path):
    pkg = tmp_path / "top" / "pkg" / "sub"
    pkg.mkdir(parents=True)
    for folder in (pkg.parent, pkg):
        (folder / "__init__.py").write_text("")
    (pkg / "layer.py").write_text(CUBE.replace("class MyLayer", "class PkgCube"))
    (tmp_path / "top" / "plain.py").write_text("")
    assert module_name(pkg / "layer.py") == "pkg.sub.layer"
    assert module_name(tmp_path / "top" / "plain.py") == "plain"
    load_plugin(str(pkg / "layer.py"))
    assert LAYERS.get("PkgCube").__module__ == "pkg.sub.layer"
    assert sys.modules["pkg.sub"].layer is sys.modules["pkg.sub.layer"]


def test_a_file_named_like_an_installed_module_does_not_shadow_it(tmp_path):
    (tmp_path / "yaml.py").write_text(CUBE.replace("class MyLayer", "class YamlCube"))
    import yaml

    load_plugin(str(tmp_path / "yaml.py"))
    assert sys.modules["yaml"] is yaml  # the library is still the library
    assert LAYERS.get("YamlCube").__module__.startswith("layerflow_plugin_yaml_")


@pytest.mark.parametrize("source,shown", [
    ("def broken(:\n", "SyntaxError: invalid syntax (bad_plugin.py, line 1)"),
    ("import numpy\n\nnumpy.no_such_function()\n",
     "AttributeError: module 'numpy' has no attribute 'no_such_function' (bad_plugin.py, "
     "line 3; raised in "),
    ("import math\n\n\nSCALE = 1 / math.floor(0.5)\n",
     "ZeroDivisionError: division by zero (bad_plugin.py, line 4)\n"),
])
def test_every_import_failure_is_a_clean_error(tmp_path, cli, source, shown):
    """The message names the plugin's line that was running and, when the error came from a
    library it called, the line that raised there."""
    (tmp_path / "bad_plugin.py").write_text(source)
    (tmp_path / "net.yaml").write_text(NET)
    r = cli("summary", tmp_path / "net.yaml", "--plugin", tmp_path / "bad_plugin.py")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.startswith(f"error: --plugin: plugin {tmp_path / 'bad_plugin.py'} failed to "
                            f"load: {shown}")
    assert "bad_plugin" not in sys.modules  # a fixed file loads later in the same process


@pytest.mark.parametrize("source,shown", [
    # a NeuronLayer without its backward kernel
    ("from layerflow import NeuronLayer, register_layer\n\n\n@register_layer\n"
     "class Halve(NeuronLayer):\n    def forward_kernel(self, x, y):\n        y[:] = x / 2\n",
     "layer class Halve (contract_plugin.py, line 4) does not implement backward_kernel"),
    # a Layer without reshape and backward
    ("from layerflow import Layer, register_layer\n\n\n@register_layer(\"Halve\")\n"
     "class Halve(Layer):\n    def forward(self, bottoms):\n        return [bottoms[0] / 2]\n",
     "layer class Halve (contract_plugin.py, line 4) does not implement reshape, backward"),
    # not a layer at all
    ("from layerflow import register_layer\n\n\n@register_layer\nclass Halve:\n    pass\n",
     "@register_layer on Halve (contract_plugin.py, line 4): a layer type must be a subclass "
     "of layerflow.Layer"),
])
def test_a_class_that_breaks_the_layer_contract_is_refused_when_it_loads(tmp_path, cli, source,
                                                                         shown):
    """Not a NotImplementedError in the middle of a run: the plugin does not load, and the
    message names the class, its file and line, and what is missing. Nothing is registered."""
    (tmp_path / "contract_plugin.py").write_text(source)
    (tmp_path / "net.yaml").write_text(NET)
    r = cli("summary", tmp_path / "net.yaml", "--plugin", tmp_path / "contract_plugin.py")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.startswith(f"error: --plugin: plugin {tmp_path / 'contract_plugin.py'}: "
                            f"{shown}"), r.err
    assert "Halve" not in LAYERS


def test_a_layer_without_gradient_needs_no_backward():
    """has_backward = False (Accuracy, data layers) makes backward optional, not the rest."""
    from layerflow import Layer, NeuronLayer

    class Probe(Layer):
        has_backward = False

        def reshape(self, bottom_shapes):
            return [()]

        def forward(self, bottoms):
            return [bottoms[0].sum()]

    assert Probe.unimplemented() == []
    assert type("NoForward", (Probe,), {"forward": Layer.forward}).unimplemented() == ["forward"]
    # a NeuronLayer may write forward (or backward) itself instead of the kernel
    own = type("Own", (NeuronLayer,), {"forward": lambda self, b: b,
                                        "backward_kernel": lambda self, *a: None})
    assert own.unimplemented() == []
    assert type("Bare", (NeuronLayer,), {}).unimplemented() == ["forward_kernel",
                                                                "backward_kernel"]
    # an elementwise layer without gradient (Threshold) needs its forward kernel only
    assert type("Step", (NeuronLayer,), {"has_backward": False}).unimplemented() == [
        "forward_kernel"]


def test_a_failing_package_init_names_the_plugin(tmp_path):
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('init fails')\n")
    (pkg / "layer.py").write_text(CUBE)
    with pytest.raises(UserError, match=rf"plugin {pkg / 'layer.py'} failed to load: "
                                        r"RuntimeError: init fails"):
        load_plugin(str(pkg / "layer.py"))
    assert "brokenpkg" not in sys.modules and "brokenpkg.layer" not in sys.modules


def test_one_file_registering_a_name_twice_names_both_classes(tmp_path, cli):
    (tmp_path / "twice_in_one.py").write_text(textwrap.dedent('''\
        from layerflow import NeuronLayer, register_layer


        @register_layer("Twin")
        class First(NeuronLayer):
            def forward_kernel(self, x, y):
                y[:] = x

            def backward_kernel(self, x, y, dout, dx):
                dx[:] = dout


        @register_layer("Twin")
        class Second(First):
            pass
        '''))
    (tmp_path / "net.yaml").write_text(NET)
    r = cli("summary", tmp_path / "net.yaml", "--plugin", tmp_path / "twice_in_one.py")
    assert r.code == 2 and "Traceback" not in r.err
    assert (f'layer type "Twin" is registered twice: by First (twice_in_one.py, line 4) and '
            f"by Second (twice_in_one.py, line 13), both in plugin file "
            f"{tmp_path / 'twice_in_one.py'}; rename one of them") in r.err
