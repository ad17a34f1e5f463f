"""Tests that bad arguments and bad sources give clear errors and write nothing."""

import numpy as np
import pytest

from contrastive import data
from contrastive.data import DataError


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((10, 4, 4), np.uint8), y_train=np.arange(10) % 2)
    return f"npz:{path}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"validation_fraction": 1.0},
            "validation_fraction must be in [0, 1). Received: validation_fraction=1.0",
        ),
        ({"validation_fraction": "0.1"}, "Received: validation_fraction='0.1'"),
        (
            {"labeled_fraction": 0},
            "labeled_fraction must be in (0, 1] or None. Received: labeled_fraction=0",
        ),
        ({"seed": -1}, "seed must be an integer >= 0. Received: seed=-1"),
        ({"limit": 0}, "limit must be an integer >= 1, or None for all. Received: limit=0"),
        ({"on_error": "ignore"}, "on_error must be 'skip' or 'fail'. Received: on_error='ignore'"),
        ({"image_size": "32"}, "image_size must be 'H,W'"),
        ({"image_size": (0, 4)}, "Received: image_size=(0, 4)"),
        ({"array_format": "jpeg"}, "array_format must be 'raw' or 'png'"),
        ({"num_workers": 0}, "num_workers must be an integer >= 1"),
    ],
)
def test_bad_arguments_echo_the_value(npz, tmp_path, arguments, message):
    with pytest.raises(ValueError) as error:
        data.ingest(npz, str(tmp_path / "out"), progress=False, **arguments)
    assert message in str(error.value)
    assert isinstance(error.value, DataError)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("32,24", (32, 24)), ("32x24", (32, 24)), (16, (16, 16)), ([8, 4], (8, 4)), ("", None)],
)
def test_parse_image_size(value, expected):
    assert data.parse_image_size(value) == expected


@pytest.mark.parametrize("value", ["32", "a,b", "0,4", "1,2,3"])
def test_parse_image_size_refuses_malformed(value):
    with pytest.raises(DataError, match="image_size"):
        data.parse_image_size(value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("hf:mnist", "unknown source scheme 'hf' in source='hf:mnist'"),
        ("s3://bucket/images", "unknown source scheme 's3'"),
        ("cifar10", r"image folder not found: cifar10 \(did you mean tfds:cifar10\?\)"),
        ("idx:/nonexistent/dir", "IDX directory not found: /nonexistent/dir"),
        ("npz:/nonexistent.npz", "npz file not found: /nonexistent.npz"),
        ("", "source must be a non-empty string"),
    ],
)
def test_bad_sources(tmp_path, source, message):
    with pytest.raises(DataError, match=message):
        data.ingest(source, str(tmp_path / "out"), progress=False)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((4, 2, 2), np.uint8)}, "npz needs fields x_train and y_train"),
        (
            {"x_train": np.zeros((4, 2, 2), np.uint8), "y_train": np.arange(3)},
            "x_train holds 4 images but y_train holds 3 labels",
        ),
        (
            {"x_train": np.full((4, 2, 2), 0.5, np.float32), "y_train": np.arange(4) % 2},
            "field x_train must hold uint8 pixels in \\[0, 255\\]; found dtype float32",
        ),
        (
            {"x_train": np.zeros((4, 2, 2, 2), np.uint8), "y_train": np.arange(4) % 2},
            "field x_train must be .* C 1 or 3; found shape \\(4, 2, 2, 2\\)",
        ),
        (
            {"x_train": np.zeros((4, 2, 2), np.uint8), "y_train": np.zeros(4, np.int64)},
            "a classifier needs at least 2 classes; found 1",
        ),
        (
            {
                "x_train": np.zeros((4, 2, 2), np.uint8),
                "y_train": np.zeros(4, np.int64),
                "class_names": np.array(["a", "b"]),
            },
            "train examples hold a single class",
        ),
        (
            {"x_train": np.zeros((4, 2, 2), np.uint8), "y_train": np.array([0, 1, -3, 1])},
            "label -3 at position 2 is outside the class range",
        ),
        (
            {
                "x_train": np.zeros((4, 2, 2), np.uint8),
                "y_train": np.arange(4) % 2,
                "x_test": np.zeros((2, 2, 2), np.uint8),
            },
            "only one of x_test / y_test",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message) as error:
        data.ingest(f"npz:{path}", str(out), progress=False)
    assert str(path) in str(error.value)
    assert not out.exists()


def test_npz_class_names_and_out_of_range_label(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 2, 2), np.uint8),
        y_train=np.array([0, 1, 2, 1]),
        class_names=np.array(["a", "b"]),
    )
    with pytest.raises(
        DataError, match=r"label 2 at position 2 is outside the class range \[0, 2\)"
    ):
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    np.savez(
        path,
        x_train=np.zeros((4, 2, 2), np.uint8),
        y_train=np.array([0, 1, 2, 1]),
        class_names=np.array(["a", "b", "c"]),
    )
    manifest = data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert manifest["class_names"] == ["a", "b", "c"]


def test_class_names_only_for_sources_without_names(tmp_path):
    with pytest.raises(DataError, match="class_names applies to idx: and npz: sources"):
        data.ingest("fashion_mnist", str(tmp_path / "out"), class_names=["a", "b"])
