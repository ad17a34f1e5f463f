"""parquet: sources: an image column of bytes, paths or the Hugging Face {bytes, path} struct,
a label column of ids or names, splits from the file names, and the folder rules for bad rows
(null label, no image, undecodable bytes: named FILE[ROW], counted, listed)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contrastive import data
from contrastive.data import DataError
from tests.data_helpers import decoded, encoded, index_of

HF_METADATA = {
    b"huggingface": json.dumps(
        {
            "info": {
                "features": {
                    "image": {"_type": "Image"},
                    "label": {"_type": "ClassLabel", "names": ["plane", "car", "bird"]},
                }
            }
        }
    ).encode()
}


def _pixels(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (6, 6), dtype=np.uint8) for _ in range(count)]


def _write(path, image, label, metadata=None):
    table = pa.table({"image": image, "label": label})
    if metadata:
        table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_hugging_face_layout_struct_images_and_classlabel_names(tmp_path):
    """`data/{train,test}-NNNNN-of-NNNNN.parquet`, images as {bytes, path} (a path where the
    bytes are null, relative to the file), names from the ClassLabel metadata; the stored
    pixels are the images' own."""
    pixels = _pixels(40)
    (tmp_path / "data" / "extra.png").parent.mkdir(parents=True)
    (tmp_path / "data" / "extra.png").write_bytes(encoded(pixels[0]))
    cells = [{"bytes": encoded(p), "path": f"{i}.png"} for i, p in enumerate(pixels)]
    cells[3] = {"bytes": None, "path": "extra.png"}
    labels = pa.array([i % 3 for i in range(40)], pa.int64())
    _write(tmp_path / "data" / "train-00000-of-00001.parquet", cells[:30], labels[:30], HF_METADATA)
    _write(tmp_path / "data" / "test-00000-of-00001.parquet", cells[30:], labels[30:], HF_METADATA)
    manifest = data.ingest(
        f"parquet:{tmp_path / 'data'}", str(tmp_path / "out"), progress=False, validation_fraction=0
    )
    assert manifest["class_names"] == ["plane", "car", "bird"]
    assert manifest["splits"]["train"]["num_examples"] == 30
    assert manifest["splits"]["test"]["num_examples"] == 10
    train = decoded(tmp_path / "out", "train")
    for position in range(30):
        image, label = train[f"train/{position}"]
        expected = pixels[0] if position == 3 else pixels[position]
        np.testing.assert_array_equal(image[..., 0], expected)
        assert label == position % 3
    rows = index_of(tmp_path / "out")
    assert rows["test/4"]["source_path"] == str(tmp_path / "data" / "test-00000-of-00001.parquet")
    assert rows["test/4"]["source_offset"] == 4


def test_bytes_and_path_columns_and_string_labels(tmp_path):
    pixels = _pixels(12, seed=1)
    for i, image in enumerate(pixels):
        (tmp_path / f"{i}.png").write_bytes(encoded(image))
    labels = ["zebra" if i % 2 else "ant" for i in range(12)]
    _write(tmp_path / "bytes.parquet", pa.array([encoded(p) for p in pixels], pa.binary()), labels)
    _write(tmp_path / "paths.parquet", [f"{i}.png" for i in range(12)], labels)
    outputs = {}
    for name in ("bytes", "paths"):
        manifest = data.ingest(
            f"parquet:{tmp_path / name}.parquet",
            str(tmp_path / f"out-{name}"),
            progress=False,
            validation_fraction=0,
        )
        assert manifest["class_names"] == ["ant", "zebra"]  # sorted names
        outputs[name] = decoded(tmp_path / f"out-{name}", "train")
    assert outputs["bytes"].keys() == outputs["paths"].keys()
    for key, (image, label) in outputs["bytes"].items():
        position = int(key.split("/")[1])
        np.testing.assert_array_equal(image[..., 0], pixels[position])
        assert label == position % 2
        np.testing.assert_array_equal(outputs["paths"][key][0], image)


def test_null_labels_missing_images_and_bad_bytes_are_named_counted_and_listed(tmp_path):
    pixels = _pixels(20, seed=2)
    cells = [{"bytes": encoded(p), "path": None} for p in pixels]
    cells[2] = {"bytes": None, "path": None}  # no image at all
    cells[4] = None  # a null struct
    cells[6] = {"bytes": b"GIF89a but broken", "path": None}  # undecodable
    cells[8] = {"bytes": None, "path": "gone.png"}  # a path that is not there
    labels = pa.array([None if i == 10 else i % 2 for i in range(20)], pa.int64())
    path = tmp_path / "train.parquet"
    _write(path, cells, labels)
    manifest = data.ingest(f"parquet:{path}", str(tmp_path / "out"), progress=False)
    reasons = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert reasons.pop(f"{path}[6]").startswith("undecodable gif")
    assert reasons == {
        f"{path}[2]": "no image (null bytes and path)",
        f"{path}[4]": "no image (null bytes and path)",
        str(tmp_path / "gone.png"): "not found",
        f"{path}[10]": "label is null",
    }
    assert sum(entry["num_examples"] for entry in manifest["splits"].values()) == 15
    with pytest.raises(DataError, match=r"train\.parquet\[2\]: no image \(null bytes and path\)"):
        data.ingest(f"parquet:{path}", str(tmp_path / "fail"), progress=False, on_error="fail")


def test_minus_one_is_unlabelled_and_files_without_a_split_are_listed(tmp_path):
    pixels = _pixels(16, seed=3)
    cells = pa.array([encoded(p) for p in pixels], pa.binary())
    labels = pa.array([-1 if i >= 12 else i % 2 for i in range(16)], pa.int64())
    _write(tmp_path / "d" / "train" / "0000.parquet", cells, labels)
    _write(tmp_path / "d" / "extra" / "0000.parquet", cells, labels)
    manifest = data.ingest(f"parquet:{tmp_path / 'd'}", str(tmp_path / "out"), progress=False)
    assert manifest["splits"]["unlabeled"]["num_examples"] == 4
    assert manifest["ignored"] == [
        {
            "path": str(tmp_path / "d" / "extra" / "0000.parquet"),
            "reason": "no split (train, validation, test) in its name",
        }
    ]
    rows = index_of(tmp_path / "out")
    assert {rows[f"unlabeled/{i}"]["source_offset"] for i in range(4)} == {12, 13, 14, 15}


def test_column_options_and_what_is_refused(tmp_path):
    pixels = _pixels(8, seed=4)
    table = pa.table(
        {"img": pa.array([encoded(p) for p in pixels]), "fine": [i % 2 for i in range(8)]}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataError) as raised:
        data.ingest(f"parquet:{tmp_path / 't.parquet'}", str(tmp_path / "o1"), progress=False)
    assert "no label column (none found; pass parquet:PATH?label=COLUMN)" in str(raised.value)
    assert "Columns: img (binary), fine (int64)" in str(raised.value)
    manifest = data.ingest(
        f"parquet:{tmp_path / 't.parquet'}?image=img&label=fine",
        str(tmp_path / "o2"),
        progress=False,
        validation_fraction=0,
    )
    assert manifest["splits"]["train"]["num_examples"] == 8
    with pytest.raises(DataError, match="label='nope' is not one of them"):
        data.ingest(f"parquet:{tmp_path / 't.parquet'}?label=nope", str(tmp_path / "o3"))
    with pytest.raises(DataError, match=r"options are \?image=COLUMN&label=COLUMN"):
        data.ingest(f"parquet:{tmp_path / 't.parquet'}?colour=red", str(tmp_path / "o4"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file"):
        data.ingest(f"parquet:{tmp_path / 'bad.parquet'}", str(tmp_path / "o5"))
    pq.write_table(
        pa.table({"image": [encoded(pixels[0])], "label": [0.5]}), tmp_path / "f.parquet"
    )
    with pytest.raises(DataError, match="label column 'label' is double; expected class ids"):
        data.ingest(f"parquet:{tmp_path / 'f.parquet'}", str(tmp_path / "o6"))
