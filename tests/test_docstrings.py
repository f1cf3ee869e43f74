"""`help()` on the Python API shows a docstring for every public name, never a neighbouring
comment (Python shows the comment above a function that has no docstring)."""
from __future__ import annotations

import inspect
import pydoc

import pytest

import layerflow as lf
from layerflow.layer import Layer, Param
from layerflow.net import Blob, Net, NetHook
from layerflow.solver import Solver
from layerflow.sources import DataSource
from layerflow.trainer import Trainer

CLASSES = [Net, Blob, NetHook, Solver, Layer, Param, DataSource, Trainer]


def public_functions(cls):
    for name, obj in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, (classmethod, staticmethod)):
            yield name, obj.__func__
        elif isinstance(obj, property):
            yield name, obj.fget
        elif inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_public_method_has_a_docstring(cls):
    assert cls.__doc__
    missing = [name for name, fn in public_functions(cls) if not fn.__doc__]
    assert not missing, f"{cls.__name__}: no docstring for {', '.join(missing)}"


def test_every_export_of_layerflow_has_a_docstring():
    for name in lf.__all__:
        obj = getattr(lf, name)
        if callable(obj):
            assert obj.__doc__, name


def test_help_of_net_from_yaml_is_its_docstring():
    text = pydoc.render_doc(lf.Net.from_yaml, renderer=pydoc.plaintext)
    assert "The net of a YAML file, built for `phase`" in text
    assert "# --" not in text
