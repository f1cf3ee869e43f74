"""`layerflow schema`: JSON Schema of net.yaml and solver.yaml, checked with a minimal validator
of our own (plugin_support.validate, no dependency): valid files validate, mistakes do not, plugin
layers are included."""
from __future__ import annotations

import json
import re

import pytest

from plugin_support import validate

@pytest.fixture
def net_schema(cli):
    r = cli("schema")
    assert r.code == 0, r.err
    return json.loads(r.out)


NET = {"name": "n", "layers": [
    {"name": "data", "type": "Input", "top": "x", "shape": [[2, 3]]},
    {"name": "ip", "type": "InnerProduct", "bottom": "x", "num_output": 4,
     "weight_filler": {"type": "gaussian", "std": 0.1}, "param": [{"lr_mult": 1},
                                                                   {"lr_mult": 2}]},
    {"name": "relu", "type": "ReLU", "include": {"phase": "train"}}]}


def test_net_schema_shape(net_schema):
    assert net_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    items = net_schema["properties"]["layers"]["items"]
    assert items["discriminator"]["propertyName"] == "type"
    from layerflow.registry import LAYERS

    assert set(items["discriminator"]["mapping"]) == set(LAYERS.names())
    relu = net_schema["$defs"]["ReLULayer"]
    assert relu["additionalProperties"] is False
    assert relu["properties"]["type"]["const"] == "ReLU"
    assert set(relu["properties"]) >= {"name", "type", "bottom", "top", "include", "exclude",
                                       "param", "loss_weight", "negative_slope"}
    assert set(relu["required"]) == {"name", "type"}
    assert "FillerSpec" in net_schema["$defs"]


def test_valid_net_validates_and_mistakes_do_not(net_schema):
    assert validate(NET, net_schema) == []
    for bad in ({"num_outputs": 4}, {"type": "NoSuchLayer"}, {"num_output": "four"},
                {"weight_filler": {"type": "zeros"}}, {"num_output": 0},
                {"include": {"phase": 1}}):
        layer = {**NET["layers"][1], **bad}
        if "num_outputs" in bad:
            del layer["num_output"]
        data = {**NET, "layers": [NET["layers"][0], layer]}
        assert validate(data, net_schema), bad
    assert validate({"layers": [{"type": "ReLU"}]}, net_schema)  # a layer needs a name
    assert validate({"name": "n"}, net_schema)  # and a net needs layers


def test_plugin_layers_are_in_the_schema(tmp_path, cli):
    (tmp_path / "p.py").write_text(
        "from pydantic import BaseModel, ConfigDict, Field\n"
        "from layerflow import NeuronLayer, register_layer\n"
        "class P(BaseModel):\n"
        "    model_config = ConfigDict(extra='forbid')\n"
        "    alpha: float = Field(0.5, gt=0, description='the alpha')\n"
        "@register_layer\n"
        "class Plugged(NeuronLayer):\n"
        "    Params = P\n"
        "    def forward_kernel(self, x, y):\n"
        "        y[:] = self.p.alpha * x\n"
        "    def backward_kernel(self, x, y, dout, dx):\n"
        "        dx[:] = self.p.alpha * dout\n")
    r = cli("schema", "net", "--plugin", tmp_path / "p.py", "-o", tmp_path / "net.json")
    assert r.code == 0, r.err
    schema = json.loads((tmp_path / "net.json").read_text())
    plugged = schema["$defs"]["PluggedLayer"]["properties"]["alpha"]
    assert plugged == {"default": 0.5, "description": "the alpha", "exclusiveMinimum": 0,
                       "title": "Alpha", "type": "number"}
    layer = {"name": "p", "type": "Plugged", "alpha": 2.0}
    assert validate({"layers": [layer]}, schema) == []
    assert validate({"layers": [{**layer, "alpha": -1}]}, schema)


def test_solver_schema(cli):
    r = cli("schema", "solver")
    schema = json.loads(r.out)
    assert "SGD" in schema["properties"]["type"]["enum"]
    assert "inv" in schema["properties"]["lr_policy"]["enum"]
    good = {"net": "net.yaml", "base_lr": 0.01, "max_iter": 10, "lr_policy": "inv",
            "gamma": 0.1, "power": 0.75}
    assert validate(good, schema) == []
    assert validate({**good, "type": "Nope"}, schema)
    assert validate({**good, "max_iters": 3}, schema)
    assert validate({k: v for k, v in good.items() if k != "net"}, schema)


def test_editor_snippet_in_docs_points_to_the_command():
    from plugin_support import ROOT

    text = (ROOT / "docs" / "tools.md").read_text()
    assert "layerflow schema net -o" in text and "yaml.schemas" in text
    assert re.search(r"yaml-language-server: \$schema=", text)
