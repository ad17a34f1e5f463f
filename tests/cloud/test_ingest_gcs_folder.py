"""An image folder on `gs://` (the GCS emulator) gets the same rules as a local one (issue 31):
class folders that differ only in case, EXIF orientation, degenerate sizes. Folder listing goes
through google-cloud-storage (a delimited listing), so the emulator serves the whole read."""

import json

import numpy as np
import pytest

from contrastive import data, storage
from contrastive.data import DataError
from tests.data_helpers import decoded, encoded, index_of


def _png(pixels, orientation=None):
    return encoded(pixels, "PNG", orientation=orientation)


def _grid(seed, shape=(8, 12, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def photos(gcs):
    """gs://…/photos: Cat/ and cat/ (2 + 3 photos), dog/ (3 photos, one stored sideways with
    orientation 6, one a 1x1 dot), a zero-byte folder placeholder and a hidden file."""
    root = f"{gcs.prefix}/photos"
    files = {f"Cat/{i}.png": _png(_grid(i)) for i in range(2)}
    files |= {f"cat/{i}.png": _png(_grid(10 + i)) for i in range(3)}
    files |= {f"dog/{i}.png": _png(_grid(20 + i)) for i in range(2)}
    files["dog/sideways.png"] = _png(_grid(30, (12, 8, 3)), orientation=6)
    files["dog/dot.png"] = _png(np.zeros((1, 1, 3), np.uint8))
    files["dog/.DS_Store"] = b"\0\0\0\1Bud1"
    for name, payload in files.items():
        storage.write_bytes(f"{root}/{name}", payload)
    storage.write_bytes(f"{root}/dog/", b"")  # a console-made "folder" object
    return root


def test_gcs_class_folders_differing_only_in_case_are_refused(photos, tmp_path):
    with pytest.raises(DataError) as error:
        data.ingest(photos, str(tmp_path / "out"), progress=False)
    assert str(error.value).startswith(
        f"{photos}: class folders 'Cat' and 'cat' differ only in case or Unicode normalisation"
    )


def test_gcs_folder_is_merged_upright_and_checked_like_a_local_one(photos, tmp_path):
    out = tmp_path / "out"
    manifest = data.ingest(
        photos,
        str(out),
        class_name_variants="merge",
        validation_fraction=0.0,
        test_fraction=0.0,
        progress=False,
    )
    assert manifest["class_names"] == ["cat", "dog"]
    assert manifest["merged_classes"] == {"cat": ["Cat", "cat"]}
    assert manifest["image_shape"] == [8, 12, 3] and manifest["resize"]["resized"] == 0
    assert [entry["path"] for entry in manifest["skipped"]] == [f"{photos}/dog/dot.png"]
    assert "over max_upscale=4" in manifest["skipped"][0]["reason"]
    stored = decoded(out, "train")
    assert sorted(stored) == sorted(
        [f"Cat/{i}.png" for i in range(2)]
        + [f"cat/{i}.png" for i in range(3)]
        + ["dog/0.png", "dog/1.png", "dog/sideways.png"]
    )
    np.testing.assert_array_equal(
        stored["dog/sideways.png"][0], np.rot90(_grid(30, (12, 8, 3)), -1)
    )
    assert index_of(out)["dog/sideways.png"]["orientation"] == 6
    assert {label for name, (_, label) in stored.items() if name.lower().startswith("cat/")} == {0}
    assert json.loads((out / "manifest.json").read_text())["oriented"] == {"6": 1}
