"""Tests for contrastive.data.ingest with image-folder sources and their bad inputs."""

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contrastive import data
from contrastive.data import DataError
from tests.data_helpers import decoded, index_of


def pixels(seed, shape=(8, 6, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_image(path, array, image_format="PNG"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze()).save(path, format=image_format)
    return array


def make_folder(root, classes=("cat", "dog", "eel"), per_class=4, shape=(8, 6, 3)):
    """root/<class>/<i>.png; returns {relative path: pixels}."""
    written = {}
    for label, name in enumerate(classes):
        for i in range(per_class):
            relative = f"{name}/{i}.png"
            written[relative] = write_image(root / relative, pixels(label * 100 + i, shape))
    return written


def test_flat_layout_with_unlabeled_round_trip(tmp_path):
    root = tmp_path / "images"
    written = make_folder(root)
    written["unlabeled/u0.png"] = write_image(root / "unlabeled/u0.png", pixels(7))
    written["unlabeled/u1.png"] = write_image(root / "unlabeled/u1.png", pixels(8))
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.25, progress=False)

    assert manifest["class_names"] == ["cat", "dog", "eel"]
    assert manifest["image_shape"] == [8, 6, 3]
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {
        "train": 9,
        "validation": 3,
        "unlabeled": 2,
    }
    seen = {}
    for split in manifest["splits"]:
        seen.update(decoded(out, split))
    assert sorted(seen) == sorted(written)
    for relative, (image, label) in seen.items():
        np.testing.assert_array_equal(image, written[relative])
        expected = (
            -1
            if relative.startswith("unlabeled")
            else ["cat", "dog", "eel"].index(relative.split("/")[0])
        )
        assert label == expected


def test_train_test_layout_keeps_original_bytes(tmp_path):
    root = tmp_path / "images"
    for split, count in (("train", 5), ("test", 2)):
        for label, name in enumerate(("b_class", "a_class")):
            for i in range(count):
                write_image(root / split / name / f"{i}.jpg", pixels(label + 10 * i), "JPEG")
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["class_names"] == ["a_class", "b_class"]
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {"train": 10, "test": 4}
    assert manifest["splits"]["test"]["formats"] == {"jpeg": 4}
    index = index_of(out)
    for relative, (image, label) in decoded(out, "test").items():
        original = (root / relative).read_bytes()
        assert index[relative]["sha256"] == hashlib.sha256(original).hexdigest()  # not re-encoded
        np.testing.assert_array_equal(image, tf.io.decode_jpeg(original).numpy())
        assert label == ["a_class", "b_class"].index(relative.split("/")[1])


def test_type_is_detected_by_content_not_extension(tmp_path):
    root = tmp_path / "images"
    make_folder(root, per_class=2)
    png_named_jpg = write_image(root / "cat" / "really_png.jpg", pixels(99))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "fake.png").write_text("not an image either")
    (root / "README.md").write_text("top-level file")
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["ignored"] == [
        {"path": str(root / "README.md"), "reason": "file beside the class folders"},
        {"path": str(root / "cat" / "notes.txt"), "reason": "not an image"},
    ]
    assert manifest["ignored_files"] == 2
    # Named like an image but is not one: skipped (and fatal with on_error="fail"), not ignored.
    assert [entry["path"] for entry in manifest["skipped"]] == [str(root / "dog" / "fake.png")]
    row = index_of(out)["cat/really_png.jpg"]
    assert row["format"] == "png"
    np.testing.assert_array_equal(decoded(out, "train")["cat/really_png.jpg"][0], png_named_jpg)


def test_gif_bmp_and_grey_images_are_converted(tmp_path):
    root = tmp_path / "images"
    grey = write_image(root / "a" / "grey.png", pixels(1, (8, 6)))
    write_image(root / "a" / "pic.bmp", pixels(2))
    write_image(root / "b" / "pic.gif", pixels(3))
    write_image(root / "b" / "rgb.png", pixels(4))
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["image_shape"] == [8, 6, 3]  # one RGB image makes the dataset RGB
    assert manifest["splits"]["train"]["formats"] == {"png": 4}
    images = decoded(out, "train")
    np.testing.assert_array_equal(images["a/grey.png"][0], np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(images["a/pic.bmp"][0], pixels(2))  # BMP is lossless


def test_all_grey_folder_has_one_channel(tmp_path):
    root = tmp_path / "images"
    make_folder(root, classes=("x", "y"), per_class=2, shape=(5, 5))
    manifest = data.ingest(
        str(root), str(tmp_path / "out"), validation_fraction=0.0, progress=False
    )
    assert manifest["image_shape"] == [5, 5, 1]


def test_mixed_sizes_resize_to_the_median_by_default(tmp_path, caplog):
    root = tmp_path / "images"
    make_folder(root, classes=("x", "y"), per_class=2)  # four 8x6
    write_image(root / "y" / "big.png", pixels(5, (16, 12, 3)))
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="contrastive.data"):
        manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    # median height of (8, 8, 8, 8, 16) x median width of (6, 6, 6, 6, 12)
    assert manifest["image_shape"] == [8, 6, 3]
    resize = manifest["resize"]
    assert resize["image_size"] == [8, 6] and resize["chosen"] == "median"
    assert resize["resized"] == 1
    assert resize["examples"] == [{"path": str(root / "y" / "big.png"), "from": [16, 12]}]
    assert resize["method"].startswith("centre crop")
    assert f"{root / 'y' / 'big.png'}: 16x12" in caplog.text
    assert "resizing to 8x6 (median height x median width" in caplog.text

    manifest = data.ingest(str(root), str(out), image_size="4,3", overwrite=True, progress=False)
    assert manifest["image_shape"] == [4, 3, 3]
    assert manifest["resize"]["chosen"] == "given" and manifest["resize"]["resized"] == 5
    assert data.load_arrays(str(out), "train")[0].shape[1:] == (4, 3, 3)


def test_one_shared_size_is_kept_and_not_recorded_as_resized(tmp_path):
    root = tmp_path / "images"
    written = make_folder(root, classes=("x", "y"), per_class=2)
    manifest = data.ingest(str(root), str(tmp_path / "out"), validation_fraction=0.0)
    assert manifest["image_shape"] == [8, 6, 3] and manifest["resize"] is None
    stored = sorted(map(bytes, data.load_arrays(str(tmp_path / "out"), "train")[0]))
    assert stored == sorted(map(bytes, written.values()))


def test_resize_keeps_the_aspect_ratio_by_a_centred_crop(tmp_path):
    # 20 x 40: a 20 x 20 white centre between black side bands 10 px wide; resized to 10 x 10
    # the crop keeps exactly the centre (white), a stretch would bring the black bands in.
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255
    root = tmp_path / "images"
    for label in ("x", "y"):
        for i in range(2):
            write_image(root / label / f"{i}.png", image)
    out = tmp_path / "out"
    data.ingest(str(root), str(out), image_size="10,10", validation_fraction=0.0)
    stored = data.load_arrays(str(out), "train")[0]
    assert stored.shape == (4, 10, 10, 3) and int(stored.min()) == 255


def test_grey_and_rgb_mixed_become_rgb_with_grey_repeated(tmp_path):
    root = tmp_path / "images"
    grey = pixels(1, (8, 6))
    write_image(root / "x" / "grey.png", grey)
    write_image(root / "y" / "rgb.png", pixels(2))
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0)
    assert manifest["image_shape"] == [8, 6, 3]
    images, labels = data.load_arrays(str(out), "train")
    np.testing.assert_array_equal(images[labels == 0][0], np.repeat(grey[..., None], 3, axis=-1))


def test_flat_folder_gets_a_stratified_test_split(tmp_path):
    root = tmp_path / "images"
    make_folder(root, per_class=10)
    manifest = data.ingest(
        str(root), str(tmp_path / "out"), validation_fraction=0.25, test_fraction=0.2
    )
    counts = {k: v["num_examples"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 18, "validation": 6, "test": 6}  # 30 -> test 6, 24 -> val 6
    labels = data.load_arrays(str(tmp_path / "out"), "test")[1]
    assert np.bincount(labels).tolist() == [2, 2, 2]
    with pytest.raises(
        DataError, match=r"test_fraction must be in \[0, 1\) or None. Received: test_fraction=1"
    ):
        data.ingest(str(root), str(tmp_path / "o2"), test_fraction=1)


def test_an_ingested_dataset_as_source_is_copied_not_ingested_again(tmp_path):
    from contrastive import tasks

    root = tmp_path / "images"
    make_folder(root, per_class=4)
    first = tasks.run_ingest(str(root), str(tmp_path / "ds"), validation_fraction=0.25)
    (root / "cat" / "0.png").unlink()  # the images are not read again
    second = tasks.run_ingest(str(tmp_path / "ds"), str(tmp_path / "copy"))
    # The same dataset, committed by its own writer (the copy), which records its origin.
    assert second.pop("copied_from") == str(tmp_path / "ds")
    assert (second.pop("writer")["what"], first.pop("writer")["what"]) == (
        "ingest (copy)",
        "ingest",
    )
    assert second == first
    assert data.dataset_digest(second) == data.dataset_digest(first)
    for split in ("train", "validation"):
        original, copied = (
            data.load_arrays(str(tmp_path / name), split) for name in ("ds", "copy")
        )
        np.testing.assert_array_equal(original[0], copied[0])
        np.testing.assert_array_equal(original[1], copied[1])
    with pytest.raises(DataError) as error:
        tasks.run_ingest(str(tmp_path / "ds"), str(tmp_path / "c2"), image_size="4,4")
    assert str(error.value).startswith(
        f"{tmp_path / 'ds'} is an ingested dataset of 8x6 images; image_size=4,4 asks for "
        "another size"
    )
    assert not (tmp_path / "c2" / "manifest.json").exists()


def test_limit_on_a_folder(tmp_path):
    root = tmp_path / "images"
    make_folder(root, per_class=10)
    manifest = data.ingest(str(root), str(tmp_path / "out"), limit=6, validation_fraction=0.5)
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {
        "train": 3,
        "validation": 3,
    }


# --- bad images --------------------------------------------------------------------------------


def truncated_png(path):
    buffer = io.BytesIO()
    Image.fromarray(pixels(0)).save(buffer, format="PNG")
    Path(path).write_bytes(buffer.getvalue()[:60])


def png_header_only(path, width, height):
    """A PNG whose header claims width x height and that has no pixel data at all."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_undecodable_image_is_skipped_and_reported(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    truncated_png(root / "dog" / "broken.png")
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), progress=False)
    assert len(manifest["skipped"]) == 1
    assert manifest["skipped"][0]["path"] == str(root / "dog" / "broken.png")
    assert "undecodable png" in manifest["skipped"][0]["reason"]
    assert "dog/broken.png" not in index_of(out)


def test_undecodable_image_with_on_error_fail(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    truncated_png(root / "dog" / "broken.png")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="dog/broken.png: undecodable png"):
        data.ingest(str(root), str(out), on_error="fail", progress=False)
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".tmp-*"))


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    png_header_only(root / "cat" / "bomb.png", 100_000, 100_000)
    manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    (skipped,) = manifest["skipped"]
    assert skipped["path"].endswith("cat/bomb.png")
    assert skipped["reason"].startswith("refused before decoding")

    with pytest.raises(DataError, match=r"max_pixels=40"):
        data.ingest(str(root), str(tmp_path / "out2"), max_pixels=40, on_error="fail")


def test_symlink_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    write_image(tmp_path / "secret.png", pixels(1))
    os.symlink(tmp_path / "secret.png", root / "cat" / "link.png")
    os.symlink(root / "dog" / "0.png", root / "cat" / "inside.png")  # inside the root: fine
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["skipped"] == [
        {"path": str(root / "cat" / "link.png"), "reason": "path escapes the source root"}
    ]
    assert "cat/inside.png" in index_of(out)
    with pytest.raises(DataError, match="cat/link.png: path escapes the source root"):
        data.ingest(str(root), str(tmp_path / "out2"), on_error="fail", progress=False)


def test_symlinked_class_folder_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "images"
    make_folder(root, classes=("a", "b"))
    make_folder(tmp_path / "elsewhere", classes=("c",))
    os.symlink(tmp_path / "elsewhere" / "c", root / "c")
    with pytest.raises(DataError, match="escapes the source root"):
        data.ingest(str(root), str(tmp_path / "out"), progress=False)


# --- bad folder structure ----------------------------------------------------------------------


def test_empty_class_folder(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    (root / "fox").mkdir()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"class folder is empty: .*images/fox"):
        data.ingest(str(root), str(out), progress=False)
    assert not out.exists() or not (out / "manifest.json").exists()


def test_single_class(tmp_path):
    root = tmp_path / "images"
    make_folder(root, classes=("only",))
    with pytest.raises(DataError, match=r"only one class folder \('only'\)"):
        data.ingest(str(root), str(tmp_path / "out"), progress=False)


def test_no_images_at_all(tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "x.txt").write_text("text")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no images found in .*images"):
        data.ingest(str(root), str(out), progress=False)
    assert not (out / "manifest.json").exists()


def test_class_whose_files_are_all_unreadable(tmp_path):
    root = tmp_path / "images"
    make_folder(root, classes=("a", "b"))
    (root / "c").mkdir()
    truncated_png(root / "c" / "x.png")
    with pytest.raises(DataError, match="class 'c' has no readable images"):
        data.ingest(str(root), str(tmp_path / "out"), progress=False)


def test_test_class_without_train_class(tmp_path):
    root = tmp_path / "images"
    make_folder(root / "train", classes=("a", "b"))
    make_folder(root / "test", classes=("a", "zebra"))
    with pytest.raises(DataError, match="test/zebra: test class folder has no train counterpart"):
        data.ingest(str(root), str(tmp_path / "out"), progress=False)


def test_output_inside_the_source_folder_is_refused(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    with pytest.raises(DataError, match="lies inside the source folder"):
        data.ingest(str(root), str(root / "out"), progress=False)
    assert not (root / "out").exists()


def test_failed_overwrite_keeps_the_committed_dataset(tmp_path):
    root = tmp_path / "images"
    make_folder(root)
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), progress=False)
    truncated_png(root / "dog" / "broken.png")
    with pytest.raises(DataError, match="broken.png"):
        data.ingest(str(root), str(out), overwrite=True, on_error="fail", progress=False)
    assert data.read_manifest(str(out)) == manifest
    assert (
        len(data.load_arrays(str(out), "train")[0]) == manifest["splits"]["train"]["num_examples"]
    )
    assert not list(out.glob(".tmp-*"))
