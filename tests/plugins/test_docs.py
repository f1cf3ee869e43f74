"""The "Writing a layer" guide walks through the real example: its code is the example file."""
from __future__ import annotations

import re

from plugin_support import EXAMPLE, ROOT

GUIDE = ROOT / "docs" / "writing-a-layer.md"


def test_guide_shows_the_whole_example_layer():
    text = GUIDE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    swish = (EXAMPLE / "layerflow_swish" / "swish.py").read_text()
    assert swish in blocks


def test_guide_code_blocks_compile():
    for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S):
        compile(block, str(GUIDE), "exec")


def test_guide_names_what_the_public_api_exports():
    import layerflow

    text = GUIDE.read_text()
    for name in ("Layer", "NeuronLayer", "register_layer", "Param", "FillerSpec", "fill",
                 "UserError", "gradcheck", "check_layer", "register_solver",
                 "register_lr_policy", "register_onnx", "register_source"):
        assert f"`{name}`" in text, name
        assert hasattr(layerflow, name), name
    toml = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points."layerflow.layers"]' in toml
    assert 'Swish = "layerflow_swish:Swish"' in toml and 'Swish = "layerflow_swish:Swish"' \
        in text


def test_the_guides_neuron_layer_example_trains_and_checks(monkeypatch):
    """The guide's NeuronLayer example (Softsign) is a whole working layer: its forward is
    y = x / (1 + |x|) and its backward passes a float64 gradient check, with nothing but the
    two kernels written (the base class keeps the buffers and x)."""
    import numba
    import numpy as np
    from numba import njit

    import layerflow
    from layerflow import check_layer

    block = next(b for b in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
                 if "class Softsign(NeuronLayer)" in b)
    # the block's own imports, run with register_layer as the identity (the example must not
    # stay in the process's registry) and without Numba's cache (code run by exec has no
    # module to cache it for)
    monkeypatch.setattr(layerflow, "register_layer", lambda cls: cls)
    monkeypatch.setattr(numba, "njit", lambda *a, **kw: njit(*a, **{**kw, "cache": False}))
    scope = {}
    exec(compile(block, str(GUIDE), "exec"), scope)
    softsign = scope["Softsign"]
    assert "NeuronLayer" in layerflow.__all__

    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    layer = softsign("softsign", dtype=np.float64)
    layer.propagate_down = [True]
    assert layer.build([x.shape]) == [x.shape]
    (y,) = layer.forward([x])
    np.testing.assert_allclose(y, x / (1 + np.abs(x)), rtol=1e-15)
    assert layer.flops([x.shape]) == 3 * x.size
    # softsign's derivative 1 / (1 + |x|)^2 is continuous at 0: no kink to skip
    check_layer(softsign, [x]).assert_ok()
