"""Photos as phones and cameras write them (issue 31): EXIF orientation, class names that differ
only in case or Unicode normalisation, degenerate sizes and aspect ratios, npz files with extra
fields, two IDX files for one split. Each test failed before its fix."""

import gzip
import json
import logging
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive import data
from contrastive.data import DataError
from tests.data_helpers import decoded, encoded, index_of

RNG = np.random.default_rng(31)
HEIGHT, WIDTH = 24, 40  # upright size of every oriented test image (not square: sides matter)


# --- EXIF orientation -------------------------------------------------------------------------

# Upright image D from the stored grid R for each EXIF Orientation value, written from the
# tag's definition (TIFF 6.0 / EXIF: where R's 0th row and 0th column are seen), in NumPy.
UPRIGHT = {
    1: lambda r: r,  # 0th row at the top, 0th column at the left
    2: lambda r: r[:, ::-1],  # top, right: mirrored left-right
    3: lambda r: r[::-1, ::-1],  # bottom, right: turned 180 degrees
    4: lambda r: r[::-1, :],  # bottom, left: mirrored top-bottom
    5: lambda r: r.swapaxes(0, 1),  # left, top: the transpose
    6: lambda r: np.rot90(r, -1),  # right, top: turned 90 degrees clockwise (a phone portrait)
    7: lambda r: r[::-1, ::-1].swapaxes(0, 1),  # right, bottom: the anti-transpose
    8: lambda r: np.rot90(r, 1),  # left, bottom: turned 90 degrees counter-clockwise
}


def _stored_grid(orientation, seed):
    """Random pixels in the stored grid's shape: 5..8 store the upright WIDTH x HEIGHT."""
    shape = (HEIGHT, WIDTH, 3) if orientation < 5 else (WIDTH, HEIGHT, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth_grid(orientation):
    """A smooth, asymmetric picture for JPEG (lossy: noise would not survive quality 95)."""
    rows, columns = (HEIGHT, WIDTH) if orientation < 5 else (WIDTH, HEIGHT)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    red = 255 * y / (rows - 1)
    green = 255 * x / (columns - 1)
    blue = 255 * (y * columns + x) / (rows * columns - 1)
    return np.rint(np.stack([red, green, blue], -1)).astype(np.uint8)


def _with_orientation(pixels, image_format, orientation):
    options = {"quality": 95, "subsampling": 0} if image_format == "JPEG" else {}
    return encoded(pixels, image_format, orientation=orientation, **options)


def _by_id(out, split):
    """{id: stored pixels as the reader decodes them}."""
    return {name: image for name, (image, _) in decoded(out, split).items()}


@pytest.fixture(scope="module")
def oriented(tmp_path_factory):
    """One ingest of a folder holding every orientation as lossless PNG (eXIf chunk) and TIFF,
    and as JPEG; returns (output, {id: stored grid as decoded by Pillow})."""
    root = tmp_path_factory.mktemp("oriented") / "photos"
    grids = {}
    for orientation in UPRIGHT:
        for image_format, folder, grid in (
            ("PNG", "lossless", _stored_grid(orientation, orientation)),
            ("TIFF", "lossless", _stored_grid(orientation, 10 + orientation)),
            ("JPEG", "jpeg", _smooth_grid(orientation)),
        ):
            name = f"{folder}/o{orientation}.{image_format.lower()}"
            encoded = _with_orientation(grid, image_format, orientation)
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(encoded)
            # What the file's pixel grid holds, decoded without the tag (JPEG is lossy).
            grids[name] = grid if image_format != "JPEG" else _raw_jpeg_grid(encoded)
    out = root.parent / "out"
    manifest = data.ingest(
        str(root), str(out), validation_fraction=0.0, test_fraction=0.0, progress=False
    )
    return out, manifest, grids


def _raw_jpeg_grid(encoded):
    """A JPEG's pixel grid as stored, decoded as the reader decodes (TensorFlow's libjpeg,
    which ignores EXIF), so that only ingest's re-encoding separates it from what is stored."""
    import tensorflow as tf

    return tf.io.decode_jpeg(encoded, channels=3).numpy()


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied_exactly_to_lossless_images(oriented, orientation):
    out, _, grids = oriented
    stored = _by_id(out, "train")
    for image_format in ("png", "tiff"):
        name = f"lossless/o{orientation}.{image_format}"
        expected = UPRIGHT[orientation](grids[name])
        assert stored[name].shape == (HEIGHT, WIDTH, 3), name
        np.testing.assert_array_equal(stored[name], expected, err_msg=name)


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied_to_jpeg_within_its_re_encoding_error(oriented, orientation):
    """A turned JPEG is re-encoded (quality 95, 4:2:0 chroma), so it is compared with a
    tolerance: at most 10 levels off per value and under 2 on average (measured on this
    24x40 gradient: at most 8 and 1.24; orientation 1 keeps its bytes and is exact). Every
    other placement of the same grid that has the same shape is off by 46 levels or more on
    average, so the tolerance cannot hide a wrong turn (checked against 20)."""
    out, _, grids = oriented
    name = f"jpeg/o{orientation}.jpeg"
    stored = _by_id(out, "train")[name].astype(np.int64)
    raw = grids[name]
    expected = UPRIGHT[orientation](raw).astype(np.int64)
    assert stored.shape == expected.shape == (HEIGHT, WIDTH, 3)
    error = np.abs(stored - expected)
    assert error.max() <= 10 and error.mean() < 2, (error.max(), error.mean())
    if orientation == 1:
        assert error.max() == 0
    for other, transform in UPRIGHT.items():
        candidate = transform(raw).astype(np.int64)
        if other != orientation and candidate.shape == stored.shape:
            assert np.abs(stored - candidate).mean() > 20, other


def test_orientation_is_recorded_per_image_and_in_the_manifest(oriented):
    out, manifest, _ = oriented
    index = index_of(out)
    for name, row in index.items():
        assert row["orientation"] == int(name.split("/o")[1][0]), name
    assert manifest["oriented"] == {str(value): 3 for value in range(2, 9)}
    # Upright sizes are read from the headers too: every image is HEIGHT x WIDTH upright, so
    # the folder is not "mixed sizes" and nothing is resized.
    assert manifest["resize"] is None and manifest["image_shape"] == [HEIGHT, WIDTH, 3]
    # Only unturned PNG/JPEG keep their original bytes (the reader ignores EXIF).
    original = (Path(out).parent / "photos" / "jpeg" / "o1.jpeg").read_bytes()
    assert _stored_bytes(out, "jpeg/o1.jpeg") == original
    turned = (Path(out).parent / "photos" / "jpeg" / "o6.jpeg").read_bytes()
    assert _stored_bytes(out, "jpeg/o6.jpeg") != turned


def _stored_bytes(out, example_id):
    import tensorflow as tf

    row = index_of(out)[example_id]
    records = list(tf.data.TFRecordDataset(str(Path(out) / row["shard"])).as_numpy_iterator())
    example = tf.train.Example.FromString(records[row["record"]])
    return example.features.feature["image"].bytes_list.value[0]


def test_an_image_without_exif_is_recorded_as_orientation_0(tmp_path):
    root = tmp_path / "photos"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(_stored_grid(1, 0)).save(root / label / "plain.png")
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert {row["orientation"] for row in index_of(out).values()} == {0}
    assert manifest["oriented"] == {}


# --- class names that differ only in case or Unicode normalisation ----------------------------


def _png(path, seed=0, shape=(8, 8, 3)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, np.uint8)).save(path)


def _photo_folder(root, counts):
    for class_name, count in counts.items():
        for i in range(count):
            _png(Path(root) / class_name / f"{i}.png", seed=hash((class_name, i)) % 1000)


def test_class_folders_differing_only_in_case_are_refused_naming_both(tmp_path):
    _photo_folder(tmp_path / "photos", {"Cat": 2, "cat": 3, "dog": 2})
    with pytest.raises(DataError) as error:
        data.ingest(str(tmp_path / "photos"), str(tmp_path / "out"), progress=False)
    message = str(error.value)
    assert "class folders 'Cat' and 'cat' differ only in case or Unicode normalisation" in message
    assert "class_name_variants='merge'" in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_class_folders_differing_only_in_unicode_normalisation_are_refused(tmp_path):
    composed = unicodedata.normalize("NFC", "Café")
    decomposed = unicodedata.normalize("NFD", "Café")
    assert composed != decomposed
    _photo_folder(tmp_path / "photos", {composed: 2, decomposed: 2, "Tea": 2})
    # Sorted by code point: "e" + U+0301 before U+00E9; both spelt out, as they print alike.
    spelt = r"class folders '.+' \(Cafe\\u0301\) and '.+' \(Caf\\xe9\) differ only in case"
    with pytest.raises(DataError, match=spelt):
        data.ingest(str(tmp_path / "photos"), str(tmp_path / "out"), progress=False)


def test_merge_flag_merges_variants_into_the_most_used_spelling(tmp_path):
    _photo_folder(tmp_path / "photos", {"CAT": 1, "Cat": 2, "cat": 3, "dog": 2})
    out = tmp_path / "out"
    manifest = data.ingest(
        str(tmp_path / "photos"),
        str(out),
        class_name_variants="merge",
        validation_fraction=0.0,
        test_fraction=0.0,
        progress=False,
    )
    assert manifest["class_names"] == ["cat", "dog"]
    assert manifest["merged_classes"] == {"cat": ["CAT", "Cat", "cat"]}
    assert manifest["parameters"]["class_name_variants"] == "merge"
    labels = {row["id"]: row["label"] for row in index_of(out).values()}
    assert len(labels) == 8
    assert {label for name, label in labels.items() if name.lower().startswith("cat/")} == {0}
    assert {label for name, label in labels.items() if name.startswith("dog/")} == {1}


def test_split_layout_test_class_in_another_case_is_a_variant_not_a_missing_class(tmp_path):
    root = tmp_path / "photos"
    _photo_folder(root / "train", {"Cat": 3, "dog": 3})
    _photo_folder(root / "test", {"cat": 2, "dog": 2})
    with pytest.raises(DataError, match="class folders 'Cat' and 'cat' differ only in case"):
        data.ingest(str(root), str(tmp_path / "out"), progress=False)
    manifest = data.ingest(
        str(root), str(tmp_path / "out"), class_name_variants="merge", progress=False
    )
    assert manifest["class_names"] == ["Cat", "dog"]
    assert manifest["splits"]["test"]["num_examples"] == 4
    test_labels = {
        r["id"]: r["label"] for r in index_of(tmp_path / "out").values() if r["split"] == "test"
    }
    assert {label for name, label in test_labels.items() if "cat/" in name} == {0}


def test_npz_class_names_differing_in_case_are_refused_or_merged_with_labels_renumbered(
    tmp_path,
):
    path = tmp_path / "d.npz"
    y = np.array([0, 1, 2, 1, 2, 2, 0, 1, 2, 2])
    np.savez(
        path,
        x_train=RNG.integers(0, 256, (10, 4, 4), np.uint8),
        y_train=y,
        class_names=np.array(["Dog", "cat", "CAT"]),
    )
    with pytest.raises(DataError, match="class names 'cat' and 'CAT' differ only in case"):
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    manifest = data.ingest(
        f"npz:{path}",
        str(tmp_path / "out"),
        class_name_variants="merge",
        validation_fraction=0.0,
        progress=False,
    )
    assert manifest["class_names"] == ["Dog", "CAT"]  # CAT has 5 examples, cat 3
    assert manifest["merged_classes"] == {"CAT": ["cat", "CAT"]}
    stored = {row["source_offset"]: row["label"] for row in index_of(tmp_path / "out").values()}
    np.testing.assert_array_equal([stored[i] for i in range(10)], np.minimum(y, 1))


@pytest.mark.parametrize(
    ("folders", "offender"),
    [
        (["train/cat", "train/dog", "Test/cat"], "Test"),  # would be ignored beside train/
        (["cat", "dog", "Unlabeled"], "Unlabeled"),  # would become a class
        (["Train/cat", "Train/dog"], "Train"),  # a split layout read as one class
    ],
)
def test_split_folders_spelt_in_another_case_are_refused(tmp_path, folders, offender):
    root = tmp_path / "photos"
    for folder in folders:
        _png(root / folder / "0.png")
    with pytest.raises(DataError) as error:
        data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert str(error.value).startswith(f"{root / offender}: folder name differs from the split")
    assert "only in case or Unicode normalisation" in str(error.value)


def test_a_class_named_train_holding_images_is_still_a_class(tmp_path):
    root = tmp_path / "photos"
    _photo_folder(root, {"Train": 2, "Bus": 2})
    manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert manifest["class_names"] == ["Bus", "Train"]


# --- degenerate sizes and aspect ratios -------------------------------------------------------


def _sized_folder(root):
    """Four 32x32 photos per class, a 1x1 dot and a 1x65000 strip among them."""
    for label in ("a", "b"):
        for i in range(4):
            _png(root / label / f"{i}.png", seed=i, shape=(32, 32, 3))
    _png(root / "a" / "dot.png", shape=(1, 1, 3))
    _png(root / "b" / "strip.png", shape=(1, 65000, 3))


def test_tiny_and_sliver_images_are_skipped_with_the_threshold_not_resized(tmp_path):
    root = tmp_path / "photos"
    _sized_folder(root)
    out = tmp_path / "out"
    manifest = data.ingest(
        str(root), str(out), validation_fraction=0.0, test_fraction=0.0, progress=False
    )
    assert manifest["image_shape"] == [32, 32, 3]  # the median; nothing else resized
    assert manifest["resize"]["resized"] == 0
    skipped = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert skipped == {
        str(root / "a" / "dot.png"): "too small: 1x1 (height x width) would be enlarged 32x to "
        "32x32, over max_upscale=4",
        str(root / "b" / "strip.png"): "extreme aspect ratio: 1x65000 (height x width) is "
        "6.5e+04x as wide as the target 32x32, over max_aspect_ratio=4 (a centred crop would "
        "keep 0.0015% of it)",
    }
    assert sorted(index_of(out)) == sorted(f"{c}/{i}.png" for c in "ab" for i in range(4))
    assert manifest["parameters"]["max_upscale"] == 4.0
    assert manifest["parameters"]["max_aspect_ratio"] == 4.0


def test_degenerate_image_with_on_error_fail_names_file_and_threshold(tmp_path):
    root = tmp_path / "photos"
    _sized_folder(root)
    (root / "b" / "strip.png").unlink()
    with pytest.raises(DataError, match=r"dot\.png: too small: .* over max_upscale=4"):
        data.ingest(str(root), str(tmp_path / "out"), on_error="fail", progress=False)


def test_size_thresholds_are_configurable(tmp_path):
    root = tmp_path / "photos"
    _sized_folder(root)
    manifest = data.ingest(
        str(root),
        str(tmp_path / "out"),
        max_upscale=32,
        max_aspect_ratio=float("inf"),
        validation_fraction=0.0,
        test_fraction=0.0,
        progress=False,
    )
    assert manifest["skipped"] == []
    assert manifest["resize"]["resized"] == 2
    assert manifest["parameters"]["max_aspect_ratio"] == float("inf")


@pytest.mark.parametrize(
    ("height", "width", "size", "problem"),
    [
        (8, 8, (32, 32), None),  # exactly 4x: allowed
        (7, 8, (28, 32), None),  # 4x on each side
        (7, 7, (32, 32), "too small: 7x7 (height x width) would be enlarged 4.57x"),
        (10, 40, (16, 64), None),  # 1:4 to 1:4: aspect ratio 1 relative to the target
        (10, 41, (10, 10), "extreme aspect ratio: 10x41 (height x width) is 4.1x as wide"),
        (41, 10, (10, 10), "extreme aspect ratio: 41x10 (height x width) is 4.1x as tall"),
        (10, 40, (10, 10), None),  # crop keeps a quarter: at the limit
        (1000, 1000, (32, 32), None),  # shrinking is never refused
    ],
)
def test_resize_problem_thresholds(height, width, size, problem):
    from contrastive.data.images import SizeRules, resize_problem

    found = resize_problem(height, width, size, SizeRules())
    if problem is None:
        assert found is None
    else:
        assert found.startswith(problem), found


@pytest.mark.parametrize("name", ["max_upscale", "max_aspect_ratio"])
@pytest.mark.parametrize("value", [0.5, float("nan"), "4", True])
def test_size_thresholds_below_1_are_refused(tmp_path, name, value):
    with pytest.raises(DataError, match=rf"{name} must be a number >= 1 .*Received: {name}="):
        data.ingest("fashion_mnist", str(tmp_path / "out"), **{name: value})


def test_array_source_too_small_for_image_size_is_refused_naming_the_threshold(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=RNG.integers(0, 256, (6, 8, 8), np.uint8), y_train=np.arange(6) % 2)
    with pytest.raises(DataError, match=r"d\.npz:x_train: every image is refused: too small: "):
        data.ingest(f"npz:{path}", str(tmp_path / "out"), image_size=64, progress=False)
    manifest = data.ingest(
        f"npz:{path}", str(tmp_path / "out"), image_size=64, max_upscale=8, progress=False
    )
    assert manifest["image_shape"] == [64, 64, 1]


# --- npz: only the fields we need, never unpickled --------------------------------------------


def test_npz_extra_object_field_is_listed_and_ignored(tmp_path, caplog):
    path = tmp_path / "d.npz"
    provenance = np.empty(2, dtype=object)
    provenance[:] = [{"camera": "phone"}, {"camera": "scanner"}]
    np.savez(
        path,
        x_train=RNG.integers(0, 256, (6, 4, 4), np.uint8),
        y_train=np.arange(6) % 2,
        provenance=provenance,
        notes=np.arange(3.0),
    )
    with caplog.at_level(logging.WARNING, logger="contrastive.data"):
        manifest = data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert (
        manifest["splits"]["train"]["num_examples"]
        + manifest["splits"]["validation"]["num_examples"]
        == 6
    )
    ignored = {entry["path"]: entry["reason"] for entry in manifest["ignored"]}
    assert ignored == {
        f"{path}:notes": "npz field not used (dtype float64, shape (3,))",
        f"{path}:provenance": "npz field not used (object array, shape (2,))",
    }
    assert f"{path}: 2 npz fields not used" in caplog.text
    assert f"{path}:provenance: npz field not used (object array" in caplog.text


def test_npz_unneeded_field_is_never_read(tmp_path):
    """A damaged member we do not need does not stop the ingest: members are read lazily."""
    path = tmp_path / "d.npz"
    np.savez_compressed(
        path,
        x_train=RNG.integers(0, 256, (6, 4, 4), np.uint8),
        y_train=np.arange(6) % 2,
        zz_extra=RNG.integers(0, 256, 5000, np.uint8),
    )
    raw = bytearray(path.read_bytes())
    member = raw.index(b"zz_extra.npy")  # its local header (the first mention); data follows
    assert member + 260 < raw.index(b"PK\x01\x02")  # still inside the members, not the directory
    raw[member + 200 : member + 260] = bytes(60)
    path.write_bytes(bytes(raw))
    manifest = data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert manifest["num_classes"] == 2


@pytest.mark.parametrize("field", ["y_train", "x_train", "class_names"])
def test_npz_object_array_in_a_needed_field_is_refused_naming_it(tmp_path, field):
    arrays = {
        "x_train": RNG.integers(0, 256, (6, 4, 4), np.uint8),
        "y_train": np.arange(6) % 2,
        "class_names": np.array(["a", "b"]),
    }
    arrays[field] = arrays[field].astype(object)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as error:
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert str(error.value).startswith(
        f"{path}: field {field} is an object array, which would need unpickling"
    )
    if field == "class_names":  # not needed when the names are given: then ignored
        manifest = data.ingest(
            f"npz:{path}", str(tmp_path / "out"), class_names=["x", "y"], progress=False
        )
        assert manifest["class_names"] == ["x", "y"]


def test_npz_class_names_saved_as_bytes_are_decoded(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=RNG.integers(0, 256, (6, 4, 4), np.uint8),
        y_train=np.arange(6) % 2,
        class_names=np.array([b"caf\xc3\xa9", b"tea"]),
    )
    manifest = data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert manifest["class_names"] == ["café", "tea"]


# --- IDX: one file per split ------------------------------------------------------------------


def _idx_bytes(array):
    array = np.asarray(array, np.uint8)
    return (
        b"\0\0\x08"
        + bytes([array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + (array.tobytes())
    )


def _idx_folder(root, test_images_files):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-images-idx3-ubyte").write_bytes(_idx_bytes(RNG.integers(0, 256, (6, 4, 4))))
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(6) % 2))
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(4) % 2))
    for name, payload in test_images_files.items():
        (root / name).write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)


def test_two_differing_idx_files_for_one_split_are_refused_naming_both(tmp_path):
    root = tmp_path / "idx"
    _idx_folder(
        root,
        {
            "t10k-images-idx3-ubyte": _idx_bytes(np.zeros((4, 4, 4))),
            "t10k-images-idx3-ubyte.gz": _idx_bytes(np.ones((4, 4, 4))),
        },
    )
    with pytest.raises(DataError) as error:
        data.ingest(f"idx:{root}", str(tmp_path / "out"), progress=False)
    assert str(error.value) == (
        f"{root / 't10k-images-idx3-ubyte'} and {root / 't10k-images-idx3-ubyte.gz'} are both "
        "candidate IDX test images files and their contents differ after decompression "
        "(4x4x4 vs 4x4x4); remove the one that is not the test images"
    )


def test_t10k_and_test_prefixes_for_one_split_are_candidates_too(tmp_path):
    root = tmp_path / "idx"
    _idx_folder(
        root,
        {
            "t10k-images-idx3-ubyte": _idx_bytes(np.zeros((4, 4, 4))),
            "test-images-idx3-ubyte": _idx_bytes(np.zeros((5, 4, 4))),
        },
    )
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte and .*test-images-idx3-ubyte"):
        data.ingest(f"idx:{root}", str(tmp_path / "out"), progress=False)


def test_identical_idx_files_raw_and_gzipped_are_one_file(tmp_path, caplog):
    root = tmp_path / "idx"
    payload = _idx_bytes(RNG.integers(0, 256, (4, 4, 4)))
    _idx_folder(root, {"t10k-images-idx3-ubyte": payload, "t10k-images-idx3-ubyte.gz": payload})
    with caplog.at_level(logging.INFO, logger="contrastive.data"):
        manifest = data.ingest(f"idx:{root}", str(tmp_path / "out"), progress=False)
    assert manifest["splits"]["test"]["num_examples"] == 4
    assert "identical contents after decompression; using" in caplog.text


def test_a_candidate_that_is_not_idx_is_refused_naming_both(tmp_path):
    root = tmp_path / "idx"
    _idx_folder(
        root,
        {
            "t10k-images-idx3-ubyte.gz": _idx_bytes(np.zeros((4, 4, 4))),
            "t10k-images-idx3-ubyte.gz.md5": b"d41d8cd98f00b204e9800998ecf8427e\n",
        },
    )
    with pytest.raises(DataError, match=r"\.gz\.md5 and .*\.gz are both candidate .* does not"):
        data.ingest(f"idx:{root}", str(tmp_path / "out"), progress=False)


# --- the pipeline parameter and the CLI flag reach ingest -------------------------------------


def test_cli_ingest_flags_merge_and_thresholds(tmp_path, capsys):
    from pipelines.cli import main

    _photo_folder(tmp_path / "photos", {"Cat": 2, "cat": 2, "dog": 2})
    _png(tmp_path / "photos" / "dog" / "tiny.png", shape=(2, 2, 3))
    out = tmp_path / "out"
    argv = ["ingest", "--source", str(tmp_path / "photos"), "--output", str(out)]
    assert main(argv) != 0
    assert "class folders 'Cat' and 'cat' differ only in case" in capsys.readouterr().err
    assert main([*argv, "--class-name-variants", "merge", "--max-upscale", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["merged_classes"] == {"Cat": ["Cat", "cat"]}
    assert manifest["parameters"]["max_upscale"] == 3.0
    assert [entry["path"] for entry in manifest["skipped"]] == [
        str(tmp_path / "photos/dog/tiny.png")
    ]


def test_ingest_component_passes_the_class_name_and_size_parameters(tmp_path):
    from kfp import dsl

    import components

    _photo_folder(tmp_path / "photos", {"Cat": 2, "cat": 2, "dog": 2})
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"))
    components.build("contrastive:test").ingest_data.python_func(
        dataset=dataset,
        source=str(tmp_path / "photos"),
        class_name_variants="merge",
        max_upscale=5.0,
        max_aspect_ratio=6.0,
    )
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    assert manifest["merged_classes"] == {"Cat": ["Cat", "cat"]}
    assert manifest["parameters"]["max_upscale"] == 5.0
    assert manifest["parameters"]["max_aspect_ratio"] == 6.0


def test_run_parameters_check_the_new_ingest_parameters():
    from contrastive.config import ConfigError
    from contrastive.run_parameters import check_run_parameters

    with pytest.raises(ConfigError, match="Received: class_name_variants='mrege'"):
        check_run_parameters({"class_name_variants": "mrege"})
    with pytest.raises(ConfigError, match=r"max_upscale must be a number >= 1.*=0.5"):
        check_run_parameters({"max_upscale": 0.5})
    check_run_parameters({"class_name_variants": "merge", "max_aspect_ratio": 8.0})
