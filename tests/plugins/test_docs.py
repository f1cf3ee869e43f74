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
    for name in ("Layer", "register_layer", "Param", "FillerSpec", "fill", "UserError",
                 "gradcheck", "check_layer", "register_solver", "register_lr_policy"):
        assert f"`{name}`" in text, name
        assert hasattr(layerflow, name), name
    toml = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points."layerflow.layers"]' in toml
    assert 'Swish = "layerflow_swish:Swish"' in toml and 'Swish = "layerflow_swish:Swish"' \
        in text
