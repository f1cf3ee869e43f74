"""Data sources are a registry: built-ins and plugins register the same way, each with its own
keys, validated with the same file:line:col errors as every other key."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import layerflow as lf
from layerflow import UserError
from layerflow.registry import SOURCES
from layerflow.sources import resolve

RAMP = '''
"""A plugin source: data[i] = [offset + i] * width, label i % 2."""
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from layerflow import register_source
from layerflow.sources import DataSource


class RampKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    length: int = Field(10, gt=0, description="ramp: number of samples")
    offset: float = Field(0.0, description="ramp: value of the first sample")
    width: int = Field(2, gt=0, description="ramp: features per sample")


@register_source("ramp")
class Ramp(DataSource):
    Params = RampKeys

    def load(self, tops):
        p = self.p
        x = (p.offset + np.arange(p.length, dtype=np.float64))[:, None].repeat(p.width, 1)
        return [x, np.arange(p.length) % 2][:len(tops)]
'''


def net(tmp_path, data_line):
    (tmp_path / "ramp.py").write_text(RAMP)
    (tmp_path / "net.yaml").write_text(textwrap.dedent(f"""\
        name: ramp_net
        plugins: [ramp.py]
        layers:
          - {data_line}
          - {{name: ip, type: InnerProduct, bottom: data, num_output: 2}}
          - {{name: loss, type: SoftmaxLoss, bottom: [ip, label]}}
        """))
    return tmp_path / "net.yaml"


def test_builtin_sources_are_registered():
    assert {"spiral", "fashion-mnist", "npz", "csv", "idx"} <= set(SOURCES.names())
    assert resolve("spiral").name == "spiral" and resolve("x/y.NPZ").name == "npz"
    assert resolve("t.csv").name == "csv" and resolve("train-images-idx3-ubyte").name == "idx"
    assert resolve("anything", "csv").name == "csv"


def test_a_plugin_source_with_its_own_keys(tmp_path):
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: ramp, "
                         "length: 5, offset: 2, width: 3, batch_size: 2}")
    n = lf.Net.from_yaml(path)
    assert n.blobs["data"].shape == (2, 3)
    batches = []
    for _ in range(3):
        n.forward()
        batches.append(n.blobs["data"].data[:, 0].copy())
    np.testing.assert_array_equal(np.concatenate(batches), [2, 3, 4, 5, 6, 2])
    np.testing.assert_array_equal(n.blobs["label"].data, [4 % 2, 0 % 2])  # samples 4, 0
    assert SOURCES.origin_of("ramp").startswith("plugin file")


def test_a_key_of_another_source_names_its_source_and_place(tmp_path):
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: ramp, "
                         "noise: 0.5, batch_size: 2}")
    with pytest.raises(UserError) as err:
        lf.Net.from_yaml(path)
    assert str(err.value).startswith(f"{path}:4:") and \
        "layers[0] (data): noise: noise only applies to source: spiral; source is 'ramp'" \
        in str(err.value)
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: spiral, "
                         "length: 5, batch_size: 2}")
    with pytest.raises(UserError, match=r"length: length only applies to source: ramp"):
        lf.Net.from_yaml(path)


def test_a_bad_value_of_a_source_key_and_an_unknown_backend(tmp_path):
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: ramp, "
                         "length: 0, batch_size: 2}")
    with pytest.raises(UserError, match=r"net\.yaml:4:\d+: layers\[0\] \(data\): length: "
                                        r"Input should be greater than 0"):
        lf.Net.from_yaml(path)
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: d.bin, "
                         "backend: rampp, batch_size: 2}")
    with pytest.raises(UserError, match=r"backend: .*unknown source type 'rampp' \(did you "
                                        r"mean \"ramp\"\?\)"):
        lf.Net.from_yaml(path)


def test_backend_names_the_source_of_a_path(tmp_path):
    (tmp_path / "table.txt").write_text("a,b,label\n1,2,0\n3,4,1\n")
    path = net(tmp_path, "{name: data, type: Data, top: [data, label], source: table.txt, "
                         "backend: csv, batch_size: 2}")
    n = lf.Net.from_yaml(path)
    n.forward()
    np.testing.assert_array_equal(n.blobs["data"].data, [[1, 2], [3, 4]])


def test_layers_and_schema_show_the_source_keys(cli, tmp_path):
    r = cli("layers", "Data", "--json")
    keys = {row["key"] for row in __import__("json").loads(r.out)["params"]}
    assert {"source", "backend", "batch_size", "num_classes", "split", "label_column",
            "label_source"} <= keys
