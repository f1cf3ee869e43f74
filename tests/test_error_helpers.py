"""The shared helpers of layerflow.errors: file errors, articles, suggestions."""
from __future__ import annotations

import numpy as np
import pytest

from layerflow.errors import UserError, a_an, as_written, did_you_mean, file_error
from layerflow.snapshot import SnapshotError


def failure(path, mode="r"):
    try:
        open(path, mode, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        return exc
    raise AssertionError("no error")


def test_file_errors_name_the_file_and_the_problem(tmp_path):
    missing, folder, binary = tmp_path / "no.yaml", tmp_path, tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\xfa")
    assert str(file_error(missing, failure(missing))) == f"{missing}: file not found"
    assert str(file_error(folder, failure(folder), "a YAML file")) == \
        f"{folder}: is a folder, expected a YAML file"
    assert str(file_error(binary, failure(binary))).startswith(
        f"{binary}: not a UTF-8 text file (invalid start byte")
    err = file_error(missing, failure(missing), what="weights file", cls=SnapshotError)
    assert isinstance(err, SnapshotError) and str(err) == f"{missing}: weights file not found"
    denied = PermissionError(13, "Permission denied")
    assert str(file_error("x.bin", denied)) == "x.bin: cannot read: Permission denied"
    assert isinstance(file_error("x", denied), UserError)


@pytest.mark.parametrize("word, expected", [
    ("ReLU", "a ReLU"), ("Eltwise", "an Eltwise"), ("SVMLoss", "an SVMLoss"),
    ("LRN", "an LRN"), ("Accuracy", "an Accuracy"), ("Sigmoid", "a Sigmoid"),
    ("BatchNorm", "a BatchNorm"), ("HDF5Data", "an HDF5Data"), ("Input", "an Input")])
def test_articles(word, expected):
    assert a_an(word) == expected


def test_did_you_mean_ignores_case():
    assert did_you_mean("Relu", ["ReLU", "Sigmoid"]) == ' (did you mean "ReLU"?)'
    assert did_you_mean("zzz", ["ReLU"]) == ""


def test_as_written_prints_numbers_as_a_data_file_would():
    assert [as_written(v) for v in (np.float32(4.0), np.float64(-1.0), np.float32(0.1),
                                    np.float64(1.5), np.uint8(9), np.int64(-3))] == [
        "4", "-1", "0.1", "1.5", "9", "-3"]
