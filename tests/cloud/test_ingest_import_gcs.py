"""Vertex AI import files with gs:// images (the GCS emulator): a local CSV listing gs:// URIs,
and `csv:gs://...` / `jsonl:gs://...` files on GCS with paths relative to themselves. Every
image is read through google-cloud-storage; a missing object is skipped as "not found"."""

import json

import numpy as np

from contrastive import data, storage
from tests.data_helpers import decoded, encoded, index_of


def _upload(prefix: str, count: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {}
    for number in range(count):
        name = f"images/{['rose', 'iris'][number % 2]}-{number:02d}.png"
        images[name] = rng.integers(0, 255, (5, 7), dtype=np.uint8)
        storage.write_bytes(f"{prefix}/{name}", encoded(images[name]))
    return images


def test_a_local_csv_listing_gs_uris(gcs, tmp_path):
    images = _upload(gcs.prefix)
    rows = [f"training,{gcs.prefix}/{name},{name[7:11]}" for name in images]
    rows.append(f"test,{gcs.prefix}/images/gone.png,rose")
    (tmp_path / "import.csv").write_text("\n".join(rows) + "\n")
    manifest = data.ingest(f"csv:{tmp_path / 'import.csv'}", str(tmp_path / "out"), progress=False)
    assert manifest["skipped"] == [{"path": f"{gcs.prefix}/images/gone.png", "reason": "not found"}]
    stored = {**decoded(tmp_path / "out", "train"), **decoded(tmp_path / "out", "validation")}
    assert len(stored) == len(images)
    for name, pixels in images.items():
        image, label = stored[f"{gcs.prefix}/{name}"]
        np.testing.assert_array_equal(image[..., 0], pixels)
        assert manifest["class_names"][label] == name[7:11]


def test_import_files_on_gcs_with_relative_paths(gcs, tmp_path):
    images = _upload(gcs.prefix)
    names = sorted(images)
    csv = "\n".join(
        f"{'validation' if i < 2 else 'training'},{n},{n[7:11]}" for i, n in enumerate(names)
    )
    storage.write_bytes(f"{gcs.prefix}/import.csv", (csv + "\n").encode())
    lines = [
        json.dumps(
            {
                "imageGcsUri": name,
                "classificationAnnotation": {"displayName": name[7:11]},
                "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": "training"},
            }
        )
        for name in names
    ]
    storage.write_bytes(f"{gcs.prefix}/import.jsonl", ("\n".join(lines) + "\n").encode())
    for kind in ("csv", "jsonl"):
        out = tmp_path / kind
        manifest = data.ingest(
            f"{kind}:{gcs.prefix}/import.{kind}", str(out), progress=False, validation_fraction=0
        )
        assert manifest["skipped"] == []
        assert set(index_of(out)) == {f"{gcs.prefix}/{name}" for name in names}
    validation = {
        row["id"] for row in index_of(tmp_path / "csv").values() if row["split"] == "validation"
    }
    assert validation == {f"{gcs.prefix}/{name}" for name in names[:2]}
