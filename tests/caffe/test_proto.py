"""The project's caffe.proto: its committed descriptor is what protoc makes of it, the message
classes build in a private pool, and a missing protobuf is a UserError naming the extra."""
from __future__ import annotations

import sys

import pytest

from layerflow.caffe import proto
from layerflow.errors import UserError


def test_committed_descriptor_matches_caffe_proto():
    pytest.importorskip("grpc_tools", reason="regenerating needs grpcio-tools (caffe-dev)")
    from google.protobuf import descriptor_pb2

    from layerflow.caffe._descriptor import SERIALIZED

    fresh = descriptor_pb2.FileDescriptorSet.FromString(proto.compile_descriptor())
    committed = descriptor_pb2.FileDescriptorSet.FromString(SERIALIZED)
    assert fresh == committed, ("caffe.proto changed: run python -m layerflow.caffe.proto "
                                "--regenerate and commit _descriptor.py")


def test_descriptor_module_round_trips_its_bytes():
    from layerflow.caffe._descriptor import SERIALIZED

    namespace: dict = {}
    exec(proto.descriptor_module(SERIALIZED), namespace)
    assert namespace["SERIALIZED"] == SERIALIZED


@pytest.mark.parametrize("message, field, number", [
    ("NetParameter", "layer", 100), ("NetParameter", "layers", 2),
    ("NetParameter", "input_dim", 4), ("NetParameter", "input_shape", 8),
    ("LayerParameter", "convolution_param", 106), ("LayerParameter", "blobs", 7),
    ("LayerParameter", "propagate_down", 11), ("LayerParameter", "batch_norm_param", 139),
    ("V1LayerParameter", "type", 5), ("V1LayerParameter", "blobs", 6),
    ("V1LayerParameter", "blobs_lr", 7), ("V1LayerParameter", "transform_param", 36),
    ("BlobProto", "double_data", 8), ("BlobProto", "shape", 7),
    ("SolverParameter", "net", 24), ("SolverParameter", "solver_type", 30),
    ("Datum", "float_data", 6), ("Datum", "encoded", 7),
    ("NetStateRule", "not_stage", 5), ("V0LayerParameter", "kernelsize", 8),
])
def test_field_numbers_are_the_reference_notes(message, field, number):
    msgs = proto.messages()
    assert getattr(msgs, message).DESCRIPTOR.fields_by_name[field].number == number


def test_private_pool_does_not_touch_the_default_pool():
    from google.protobuf import descriptor_pool

    proto.messages()
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("caffe.NetParameter")


def test_missing_protobuf_is_a_user_error_naming_the_extra(monkeypatch):
    proto.messages.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    try:
        with pytest.raises(UserError) as err:
            proto.messages()
        assert "pip install 'layerflow[caffe]'" in str(err.value)
        assert "protobuf" in str(err.value)
    finally:
        monkeypatch.undo()
        proto.messages.cache_clear()


def test_core_import_does_not_import_protobuf():
    import subprocess

    code = ("import sys, layerflow, layerflow.layers, layerflow.cli; "
            "print('google.protobuf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
