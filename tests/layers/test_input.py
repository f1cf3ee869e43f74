import numpy as np
import pytest
from pydantic import ValidationError

from layerflow import UserError
from layerflow.gradcheck import check_layer
from layerflow.layers.input import Input
from layerflow.registry import LAYERS


def test_registered():
    assert LAYERS.get("Input") is Input


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_gives_blobs_of_the_declared_shapes(lh, dtype):
    layer, tops = lh.make_layer(Input, [], dtype=dtype, top_names=["data", "label"],
                                shape=[[4, 1, 3, 3], [4]])
    assert tops == [(4, 1, 3, 3), (4,)]
    out = layer.forward([])
    assert [t.shape for t in out] == tops
    assert all(t.dtype == dtype and not t.any() for t in out)
    assert layer.backward([np.zeros(s) for s in tops]) == []


def test_single_shape_is_one_top(lh):
    layer, tops = lh.make_layer(Input, [], top_names=["data"], shape=[2, 5])
    assert layer.p.shape == [[2, 5]] and tops == [(2, 5)]


def test_float32_matches_float64(lh):
    lh.assert_float32_matches(Input, [], shape=[3, 2])


def test_nothing_to_gradcheck():
    res = check_layer(Input, [], {"shape": [[2, 3], [2]]}, top_names=["data", "label"])
    assert res.ok and res.entries == [] and res.no_gradient == []


@pytest.mark.parametrize("shape", [[64, 784], [[64, 784], [64]]])
def test_config_roundtrip(lh, shape):
    lh.assert_roundtrip(Input.Params(shape=shape))


def test_shape_count_must_match_tops(lh):
    with pytest.raises(UserError, match=r"layer feed \(Input\): 2 shapes for 1 tops"):
        lh.make_layer(Input, [], name="feed", top_names=["data"], shape=[[2, 3], [2]])


@pytest.mark.parametrize("shape", [[0, 3], [[2, -1]], [[]], [[2, 3], []]])
def test_non_positive_shapes_rejected(shape):
    with pytest.raises(ValidationError):
        Input.Params(shape=shape)
