"""csv: and jsonl: sources (Vertex AI image-classification import files): ML_USE as the split,
labels as class names, and the folder rules for bad rows and bad images (named, counted,
listed; on_error="fail" fails naming the first)."""

import json
from pathlib import Path

import numpy as np
import pytest

from contrastive import data
from contrastive.data import DataError
from tests.data_helpers import encoded, index_of


@pytest.fixture
def images(tmp_path):
    """24 small PNGs, half `daisy` and half `tulip` (by name), in one folder."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(24):
        path = folder / f"{['daisy', 'tulip'][i % 2]}-{i:02d}.png"
        path.write_bytes(encoded(rng.integers(0, 255, (6, 6), dtype=np.uint8)))
        paths.append(path)
    return paths


def _label(path):
    return path.name.split("-")[0]


def _csv(tmp_path, lines, name="import.csv"):
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return f"csv:{tmp_path / name}"


def test_ml_use_is_the_split_and_labels_are_the_classes(tmp_path, images):
    uses = ["training", "validation", "TEST", ""]
    lines = [
        ",".join(f for f in (uses[i % 4], str(p), _label(p)) if f) for i, p in enumerate(images)
    ]
    manifest = data.ingest(_csv(tmp_path, lines), str(tmp_path / "out"), progress=False)
    assert manifest["source_kind"] == "csv"
    assert manifest["class_names"] == ["daisy", "tulip"]
    rows = index_of(tmp_path / "out")
    expected = {"train": [], "validation": [], "test": []}
    for i, path in enumerate(images):
        expected[{0: "train", 1: "validation", 2: "test", 3: "train"}[i % 4]].append(str(path))
    for split, paths in expected.items():
        stored = sorted(row["id"] for row in rows.values() if row["split"] == split)
        assert stored == sorted(paths), split
    for row in rows.values():
        assert manifest["class_names"][row["label"]] == _label(Path(row["id"]))


def test_rows_without_ml_use_keep_the_fractions(tmp_path, images):
    """No ML_USE at all: train is cut into test, then validation, as a folder is."""
    lines = [f"{p},{_label(p)}" for p in images]
    manifest = data.ingest(
        _csv(tmp_path, lines),
        str(tmp_path / "out"),
        progress=False,
        validation_fraction=0.25,
        test_fraction=0.25,
    )
    counts = {name: entry["num_examples"] for name, entry in manifest["splits"].items()}
    assert counts == {"train": 14, "validation": 4, "test": 6}  # 6 = 24 / 4, 4 = round(18 / 4)


def test_relative_paths_and_unlabelled_rows(tmp_path, images):
    lines = [f"images/{p.name},{_label(p)}" for p in images[:20]]
    lines += [f"images/{p.name}" for p in images[20:]] + [f"test,images/{images[0].name}x"]
    manifest = data.ingest(_csv(tmp_path, lines), str(tmp_path / "out"), progress=False)
    # 4 rows without a label, and a test row without one (unlabelled too, but not there)
    assert manifest["splits"]["unlabeled"]["num_examples"] == 4
    rows = index_of(tmp_path / "out")
    assert {row["label"] for row in rows.values() if row["split"] == "unlabeled"} == {-1}
    assert str(images[0]) in rows  # resolved from the import file's folder
    assert manifest["skipped"] == [{"path": f"{images[0]}x", "reason": "not found"}]


def test_bad_rows_and_bad_images_are_named_counted_and_listed(tmp_path, images):
    (tmp_path / "images" / "fake.png").write_bytes(b"this is text")
    (tmp_path / "images" / "notes.txt").write_text("listed, so it should be an image")
    lines = [f"{p},{_label(p)}" for p in images]
    lines += [
        f"{tmp_path / 'images' / 'gone.png'},daisy",  # a missing file
        f"{tmp_path / 'images' / 'fake.png'},daisy",  # bytes that are no image
        f"{tmp_path / 'images' / 'notes.txt'},tulip",  # listed: refused, not ignored
        f"{images[0]},tulip",  # listed again
        "training,a.png,daisy,extra",  # too many columns
        "holdout,b.png,daisy",  # unknown ML_USE
        ",,",  # nothing: a blank row is passed over
        "training,,daisy",  # no path
    ]
    csv = tmp_path / "import.csv"
    manifest = data.ingest(_csv(tmp_path, lines), str(tmp_path / "out"), progress=False)
    reasons = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    fake, notes = str(tmp_path / "images" / "fake.png"), str(tmp_path / "images" / "notes.txt")
    assert reasons.pop(fake) == (
        "named as an image but not a supported image format (content starting b'this is ')"
    )
    assert reasons.pop(notes) == (
        "listed as an image but not a supported image format (content starting b'listed, ')"
    )
    assert reasons == {
        str(tmp_path / "images" / "gone.png"): "not found",
        f"{csv}:28": f"{images[0]} listed again (first at line 1)",
        f"{csv}:29": "4 columns; a row is [ML_USE,]GCS_FILE_PATH[,LABEL]",
        f"{csv}:30": "ML_USE 'holdout' is not one of ['test', 'train', 'training', "
        "'unassigned', 'validation']",
        f"{csv}:32": "no image path",
    }
    assert sum(entry["num_examples"] for entry in manifest["splits"].values()) == 24
    with pytest.raises(DataError) as raised:
        data.ingest(_csv(tmp_path, lines), str(tmp_path / "fail"), progress=False, on_error="fail")
    assert str(raised.value) == f"{csv}:28: {images[0]} listed again (first at line 1)"


def test_jsonl_schema_fields(tmp_path, images):
    lines = []
    for i, path in enumerate(images):
        item = {"imageGcsUri": str(path), "classificationAnnotation": {"displayName": _label(path)}}
        if i % 3 == 1:
            item["dataItemResourceLabels"] = {"aiplatform.googleapis.com/ml_use": "test"}
        if i == 5:
            del item["classificationAnnotation"]  # no annotation: unlabelled
        lines.append(json.dumps(item))
    lines += [
        "{not json",
        json.dumps({"classificationAnnotation": {"displayName": "daisy"}}),
        json.dumps({"imageGcsUri": str(images[1]), "classificationAnnotations": []}),
        json.dumps(["a list"]),
        json.dumps(
            {
                "imageGcsUri": str(images[2]) + "?",
                "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": "holdout"},
            }
        ),
    ]
    (tmp_path / "import.jsonl").write_text("\n".join(lines) + "\n")
    source = f"jsonl:{tmp_path / 'import.jsonl'}"
    manifest = data.ingest(source, str(tmp_path / "out"), progress=False, validation_fraction=0.2)
    where = f"{tmp_path / 'import.jsonl'}"
    reasons = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert reasons[f"{where}:25"].startswith("not valid JSON (")
    assert reasons[f"{where}:26"] == "no imageGcsUri"
    assert reasons[f"{where}:27"] == (
        "multi-label annotations (classificationAnnotations); single-label only"
    )
    assert reasons[f"{where}:28"] == "a JSON list, not an object with imageGcsUri"
    assert reasons[f"{where}:29"].startswith("ML_USE 'holdout' is not one of")
    assert len(reasons) == 5
    rows = index_of(tmp_path / "out")
    tests = sorted(row["id"] for row in rows.values() if row["split"] == "test")
    assert tests == sorted(str(p) for i, p in enumerate(images) if i % 3 == 1 and i != 5)
    assert rows[str(images[5])]["split"] == "unlabeled"


def test_an_import_file_that_is_missing_or_lists_nothing(tmp_path):
    with pytest.raises(DataError, match=r"csv import file not found: .*nope\.csv"):
        data.ingest(f"csv:{tmp_path / 'nope.csv'}", str(tmp_path / "out"), progress=False)
    source = _csv(tmp_path, ["a,b,c,d"])
    with pytest.raises(DataError, match=r"import\.csv: no image rows \(1 rows could not be used\)"):
        data.ingest(source, str(tmp_path / "out"), progress=False)
    (tmp_path / "latin.csv").write_bytes("caf\xe9.png,x\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: not UTF-8 text"):
        data.ingest(f"csv:{tmp_path / 'latin.csv'}", str(tmp_path / "out"), progress=False)


def test_class_names_differing_in_case_are_refused_or_merged(tmp_path, images):
    lines = [f"{p},{'Daisy' if i == 0 else _label(p)}" for i, p in enumerate(images)]
    with pytest.raises(DataError, match="class names 'Daisy' and 'daisy' differ only in case"):
        data.ingest(_csv(tmp_path, lines), str(tmp_path / "out"), progress=False)
    manifest = data.ingest(
        _csv(tmp_path, lines), str(tmp_path / "out"), progress=False, class_name_variants="merge"
    )
    assert manifest["class_names"] == ["daisy", "tulip"]
    assert manifest["merged_classes"] == {"daisy": ["Daisy", "daisy"]}
