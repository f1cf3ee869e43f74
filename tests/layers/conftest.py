"""Helpers shared by the layer tests: build a layer the way the net does, compare dtypes,
round-trip configs. Layers are tested directly, never through a Net.

Tests get the helpers through the `lh` fixture (`lh.make_layer(...)`) rather than by importing
this file, so no module named `conftest` is ever imported by name.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def make_layer(cls, shapes, *, name="layer", dtype=np.float64, bottom_names=None,
               top_names=None, propagate_down=None, seed=0, **params):
    """Build `cls` with Params(**params), set it up and reshape it for bottom `shapes`;
    return (layer, top shapes).

    Sets what the net sets: names of bottoms and tops (default b0, b1 ... / t0 ...), dtype,
    rng, and propagate_down (default all True).
    """
    if top_names is None:
        n = cls.num_tops if isinstance(cls.num_tops, int) else max(cls.num_tops[0], 1)
        top_names = [f"t{i}" for i in range(n)]
    layer = cls(name, cls.Params(**params), dtype=dtype, rng=np.random.default_rng(seed),
                bottom_names=bottom_names or [f"b{i}" for i in range(len(shapes))],
                top_names=top_names)
    top_shapes = layer.build(shapes)
    layer.propagate_down = list(propagate_down or [True] * len(shapes))
    return layer, top_shapes


def assert_roundtrip(p) -> None:
    """A layer's config survives dump -> validate, through Python objects and through JSON."""
    cls = type(p)
    assert cls.model_validate(p.model_dump()) == p
    assert cls.model_validate_json(p.model_dump_json()) == p


def assert_close_rel(actual, expected, rel: float) -> None:
    """|a - e| <= rel * max(|a|, |e|, 1) elementwise: the project's (Caffe's) relative rule."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    err = np.abs(a - e) / np.maximum(np.maximum(np.abs(a), np.abs(e)), 1.0)
    assert err.max(initial=0.0) <= rel, f"max relative error {err.max():.3g} > {rel}"


def assert_float32_matches(cls, bottoms, rel=1e-5, **params) -> None:
    """The float32 forward agrees with the float64 one (same params) within `rel`."""
    l64, _ = make_layer(cls, [np.shape(b) for b in bottoms], dtype=np.float64, **params)
    l32, _ = make_layer(cls, [np.shape(b) for b in bottoms], dtype=np.float32, **params)
    for name, p in l64.params.items():
        l32.params[name].data[...] = p.data
    cast = [b.astype(np.float32) if np.issubdtype(b.dtype, np.floating) else b for b in bottoms]
    tops64 = [np.array(t) for t in l64.forward([np.asarray(b) for b in bottoms])]
    tops32 = [np.array(t) for t in l32.forward(cast)]
    for t32, t64 in zip(tops32, tops64):
        assert t32.dtype == np.float32
        assert_close_rel(t32, t64, rel)


@pytest.fixture
def lh():
    """The helpers of this file."""
    return SimpleNamespace(make_layer=make_layer, assert_roundtrip=assert_roundtrip,
                           assert_close_rel=assert_close_rel,
                           assert_float32_matches=assert_float32_matches)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
