"""Messy real inputs: every Pillow mode scaled to 8 bits, limits checked before work, names that
are not UTF-8, special files, silent drops, odd layouts. Each case failed before its fix."""

import gzip
import hashlib
import io
import json
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from contrastive import data
from contrastive.data import DataError
from contrastive.data.images import ImageRejected, prepare_encoded, sniff_format, to_uint8

RNG = np.random.default_rng(13)


def _half_up(numerator, denominator):
    """round(numerator / denominator), half up, in exact integer arithmetic."""
    return ((np.asarray(numerator, np.int64) * 2 + denominator) // (2 * denominator)).astype(
        np.uint8
    )


def _encoded(image, image_format):
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _stored_pixels(image, image_format="PNG"):
    """What ingest stores for `image` saved as `image_format`, decoded again."""
    data_bytes = _encoded(image, image_format)
    result = prepare_encoded(
        data_bytes, sniff_format(data_bytes[:32]), image_size=None, max_pixels=10**6
    )
    decoded = np.asarray(Image.open(io.BytesIO(result.data)))
    return result, decoded


# --- every mode to 8 bits, against numpy arithmetic on the raw values ------------------------


def test_16_bit_grey_png_is_scaled_not_clipped():
    raw = RNG.integers(0, 65536, (9, 7)).astype(np.uint16)
    raw[0, :4] = [0, 65535, 128, 32768]
    result, stored = _stored_pixels(Image.fromarray(raw))
    assert Image.open(io.BytesIO(_encoded(Image.fromarray(raw), "PNG"))).mode == "I;16"
    np.testing.assert_array_equal(stored, _half_up(raw.astype(np.int64) * 255, 65535))
    assert list(stored[0, :4]) == [0, 255, 0, 128]
    assert result.channels == 1 and result.format == "png"


def test_32_bit_integer_tiff_is_scaled_from_its_declared_range():
    raw = RNG.integers(0, 2**31 - 1, (5, 6)).astype(np.int32)
    _, stored = _stored_pixels(Image.fromarray(raw), "TIFF")
    expected = _half_up(raw.astype(object) * 255, 2**31 - 1)  # signed samples: max 2**31 - 1
    np.testing.assert_array_equal(stored, expected)


def test_float_tiff_in_unit_range_is_scaled_by_255():
    raw = RNG.random((5, 6)).astype(np.float32)
    raw[0, 0], raw[0, 1] = 0.0, 1.0
    _, stored = _stored_pixels(Image.fromarray(raw), "TIFF")
    np.testing.assert_array_equal(stored, np.rint(raw.astype(np.float64) * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.full((4, 4), 2.5, np.float32), "float image values span [2.5, 2.5]"),
        (np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
        (np.full((4, 4), -3, np.int32), "negative pixel values (min -3)"),
    ],
)
def test_values_that_cannot_be_scaled_are_refused(values, reason):
    data_bytes = _encoded(Image.fromarray(values), "TIFF")
    with pytest.raises(ImageRejected, match=re.escape(reason)):
        prepare_encoded(data_bytes, "tiff", image_size=None, max_pixels=10**6)


def test_bilevel_maps_to_0_and_255():
    bits = RNG.integers(0, 2, (6, 10)).astype(bool)
    _, stored = _stored_pixels(Image.fromarray(bits))
    np.testing.assert_array_equal(stored, bits.astype(np.uint8) * 255)


def test_grey_alpha_is_composited_over_black():
    raw = RNG.integers(0, 256, (6, 5, 2)).astype(np.uint8)
    _, stored = _stored_pixels(Image.fromarray(raw, "LA"))
    np.testing.assert_array_equal(stored, _half_up(raw[..., 0].astype(int) * raw[..., 1], 255))


def test_rgba_is_composited_over_black():
    raw = RNG.integers(0, 256, (6, 5, 4)).astype(np.uint8)
    result, stored = _stored_pixels(Image.fromarray(raw, "RGBA"))
    expected = _half_up(raw[..., :3].astype(int) * raw[..., 3:], 255)
    np.testing.assert_array_equal(stored, expected)
    assert result.channels == 3


def test_palette_with_transparency_is_composited_over_black():
    palette = RNG.integers(0, 256, (4, 3)).astype(np.uint8)
    indices = RNG.integers(0, 4, (6, 7)).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.ravel().tolist())
    image.info["transparency"] = 2  # palette entry 2 fully transparent
    _, stored = _stored_pixels(image)
    expected = palette[indices].copy()
    expected[indices == 2] = 0
    np.testing.assert_array_equal(stored, expected)


def test_cmyk_jpeg_source_values_convert_by_the_cmyk_formula():
    raw = RNG.integers(0, 256, (6, 5, 4)).astype(np.uint8)
    image = Image.fromarray(raw, "CMYK")
    np.testing.assert_array_equal(
        to_uint8(image), _half_up((255 - raw[..., :3].astype(int)) * (255 - raw[..., 3:]), 255)
    )
    _, stored = _stored_pixels(image, "TIFF")  # TIFF keeps CMYK values exactly
    np.testing.assert_array_equal(stored, to_uint8(image))


# --- limits before work ----------------------------------------------------------------------


def test_npz_label_far_past_the_class_limit_is_refused_without_allocating(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x_train=np.zeros((4, 4, 4), np.uint8), y_train=np.array([0, 1, 0, 10**12]))
    with pytest.raises(DataError) as error:
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)
    assert str(error.value) == (
        f"{path}:y_train at position 3: label 1000000000000 implies 1,000,000,000,001 classes; "
        "at most MAX_CLASSES=100,000 are supported (labels must be class ids 0..K-1)"
    )
    assert not (tmp_path / "out").exists()


def test_image_size_over_max_pixels_is_refused_before_work(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 4, 4), np.uint8), y_train=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError) as error:
        data.ingest(f"npz:{path}", str(tmp_path / "out"), image_size="100000,100000")
    assert str(error.value) == (
        "image_size=100000,100000 is 10,000,000,000 pixels per image, over max_pixels=40,000,000"
    )
    assert not (tmp_path / "out").exists()


# --- sources that are not what they claim ----------------------------------------------------


def test_npy_given_as_npz_names_the_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(DataError, match=f"{path}: not an npz file \\(a single .npy array\\)"):
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)


def test_npz_with_a_corrupt_member_names_the_file_and_field(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(
        path, x_train=RNG.integers(0, 256, (50, 8, 8), dtype=np.uint8), y_train=np.arange(50) % 2
    )
    raw = bytearray(path.read_bytes())
    raw[200:260] = bytes(60)  # inside x_train's deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"{path}: field x_train is not readable .*Bad CRC-32"):
        data.ingest(f"npz:{path}", str(tmp_path / "out"), progress=False)


def _idx_dir(root, images, labels, *, gz_images=True):
    root.mkdir(parents=True, exist_ok=True)
    header = b"\0\0\x08\x03" + struct.pack(">3I", *images.shape)
    payload = header + images.tobytes()
    name = "train-images-idx3-ubyte" + (".gz" if gz_images else "")
    (root / name).write_bytes(gzip.compress(payload) if gz_images else payload)
    labels_payload = b"\0\0\x08\x01" + struct.pack(">I", len(labels)) + labels.tobytes()
    (root / "train-labels-idx1-ubyte").write_bytes(labels_payload)
    return root / name


def test_gz_idx_with_an_invalid_deflate_block_names_the_file(tmp_path):
    images = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    path = _idx_dir(tmp_path / "idx", images, np.arange(6, dtype=np.uint8) % 2)
    raw = bytearray(path.read_bytes())
    raw[10] = 0xFF  # first deflate block header: reserved block type 11
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"{path}: corrupt gzip data \\(Error -3"):
        data.ingest(f"idx:{tmp_path / 'idx'}", str(tmp_path / "out"), progress=False)


def test_gz_idx_truncated_and_oversized_streams(tmp_path):
    images = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    path = _idx_dir(tmp_path / "idx", images, np.arange(6, dtype=np.uint8) % 2)
    compressed = path.read_bytes()
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=f"{path}: corrupt gzip data \\(the compressed stream"):
        data.ingest(f"idx:{tmp_path / 'idx'}", str(tmp_path / "out"), progress=False)
    # A header declaring 6 images followed by 100 MB of zeros: refused after 97 bytes, not 100 MB.
    header = b"\0\0\x08\x03" + struct.pack(">3I", 6, 4, 4)
    path.write_bytes(gzip.compress(header + bytes(100 << 20), compresslevel=1))
    with pytest.raises(
        DataError, match="header declares 6x4x4 = 96 bytes of data, the file holds 97"
    ):
        data.ingest(f"idx:{tmp_path / 'idx'}", str(tmp_path / "out"), progress=False)


# --- folders: names, special files, silent drops, layout -------------------------------------


def _png(path, seed, shape=(6, 5)):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(_encoded(Image.fromarray(pixels), "PNG"))
    return pixels


def _index(out):
    return {row["id"]: row for row in pq.read_table(Path(out) / "index.parquet").to_pylist()}


def test_names_that_are_not_utf8_are_ingested_with_escaped_ids(tmp_path):
    root = os.fsencode(tmp_path / "images")
    written = {}
    for label, folder in enumerate((b"caf\xe9", b"plain")):
        for i in range(3):
            name = b"x\xff%d.png" % i
            pixels = _png(os.path.join(root, folder, name), label * 10 + i)
            written[(folder + b"/" + name).decode("utf-8", "backslashreplace")] = pixels
    out = tmp_path / "out"
    manifest = data.ingest(os.fsdecode(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["class_names"] == ["caf\\xe9", "plain"]
    index = _index(out)
    assert sorted(index) == sorted(written)
    assert index["caf\\xe9/x\\xff0.png"]["source_path"] == (
        f"{tmp_path}/images/caf\\xe9/x\\xff0.png"
    )
    images, labels = data.load_arrays(str(out), "train")
    rows = sorted(index.values(), key=lambda row: row["record"])
    for row, image, label in zip(rows, images, labels, strict=True):
        np.testing.assert_array_equal(image[..., 0], written[row["id"]])
        assert label == (0 if row["id"].startswith("caf") else 1)
    json.loads((out / "manifest.json").read_text())  # valid JSON, valid UTF-8


def _folder(root, per_class=3):
    for label, name in enumerate(("a", "b")):
        for i in range(per_class):
            _png(root / name / f"{i}.png", label * 10 + i)


@pytest.mark.timeout(60)
def test_named_pipe_named_like_an_image_is_skipped_without_blocking(tmp_path):
    root = tmp_path / "images"
    _folder(root)
    os.mkfifo(root / "a" / "pipe.png")
    manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert manifest["skipped"] == [
        {"path": str(root / "a" / "pipe.png"), "reason": "not a regular file (named pipe)"}
    ]
    assert (
        manifest["splits"]["train"]["num_examples"]
        + manifest["splits"]["validation"]["num_examples"]
        == 6
    )
    with pytest.raises(DataError, match=r"a/pipe.png: not a regular file \(named pipe\)"):
        data.ingest(str(root), str(tmp_path / "out2"), on_error="fail", progress=False)


@pytest.mark.timeout(60)
def test_a_pipe_swapped_in_after_listing_is_refused_without_blocking(tmp_path):
    from contrastive.data.reading import read_image_file

    os.mkfifo(tmp_path / "late.png")
    result = read_image_file(str(tmp_path / "late.png"), image_size=None, max_pixels=100)
    assert isinstance(result, ImageRejected) and result.reason == "not a regular file"


def test_files_named_as_images_that_do_not_decode_are_skipped_and_listed(tmp_path, caplog):
    root = tmp_path / "images"
    _folder(root)
    (root / "a" / "zero.jpg").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("hello")
    (root / "a" / "notes.txt").write_text("not an image")
    _png(root / "b" / "nested" / "deep.png", 99)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="contrastive.data"):
        manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["skipped"] == [
        {
            "path": str(root / "a" / "text.jpg"),
            "reason": "named as an image but not a supported image format "
            "(content starting b'hello')",
        },
        {
            "path": str(root / "a" / "zero.jpg"),
            "reason": "named as an image but not a supported image format (an empty file)",
        },
    ]
    assert manifest["ignored"] == [
        {"path": str(root / "a" / "notes.txt"), "reason": "not an image"},
        {"path": str(root / "b" / "nested"), "reason": "folder below the class level"},
    ]
    assert manifest["ignored_files"] == 2
    assert manifest["splits"]["train"]["num_examples"] == 6
    assert f"{root / 'a' / 'zero.jpg'}: named as an image" in caplog.text
    assert f"{root / 'b' / 'nested'}: folder below the class level" in caplog.text

    with pytest.raises(DataError, match=r"a/(text|zero).jpg: named as an image"):
        data.ingest(str(root), str(tmp_path / "out2"), on_error="fail", progress=False)
    assert not (tmp_path / "out2" / "manifest.json").exists()


def test_log_names_the_first_20_then_counts(tmp_path, caplog):
    root = tmp_path / "images"
    _folder(root)
    for i in range(25):
        (root / "a" / f"note{i:02d}.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="contrastive.data"):
        manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert len(manifest["ignored"]) == 25
    (message,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert message.startswith("25 non-image files ignored:\n")
    assert f"{root / 'a' / 'note19.txt'}: not an image" in message
    assert "note20.txt" not in message
    assert message.endswith("... and 5 more (manifest.json lists all)")


def test_test_folder_without_train_is_refused_not_read_as_a_class(tmp_path):
    root = tmp_path / "images"
    _folder(root / "test")
    with pytest.raises(DataError) as error:
        data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert str(error.value).startswith(
        f"{root / 'test'} holds class folders but {root} has no train/ folder"
    )


def test_a_class_named_test_holding_images_is_still_a_class(tmp_path):
    root = tmp_path / "images"
    _folder(root)
    _png(root / "test" / "0.png", 5)
    manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    assert manifest["class_names"] == ["a", "b", "test"]


def test_corrupt_zlib_in_a_png_is_skipped_naming_the_file(tmp_path):
    root = tmp_path / "images"
    _folder(root)
    good = (root / "a" / "0.png").read_bytes()
    start = good.index(b"IDAT") + 4
    broken = good[:start] + zlib.compress(b"\xff" * 3)[:4] + good[start + 4 :]
    (root / "a" / "0.png").write_bytes(broken)
    manifest = data.ingest(str(root), str(tmp_path / "out"), progress=False)
    (skipped,) = manifest["skipped"]
    assert skipped["path"] == str(root / "a" / "0.png")
    assert skipped["reason"].startswith("undecodable png")


@pytest.mark.parametrize("damage", ["no_iend", "iend_cut_short"])
def test_png_that_pil_accepts_but_libpng_refuses_is_stored_re_encoded(tmp_path, damage):
    """Found by the fuzz test: such bytes, kept as they were, made `load_arrays` fail."""
    root = tmp_path / "images"
    _folder(root)
    original = (root / "a" / "0.png").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(original)))
    if damage == "no_iend":
        damaged = original[: original.index(b"IEND") - 4]
    else:
        damaged = original[:-2]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(damaged))), pixels)
    (root / "a" / "0.png").write_bytes(damaged)
    out = tmp_path / "out"
    manifest = data.ingest(str(root), str(out), validation_fraction=0.0, progress=False)
    assert manifest["skipped"] == []
    images, _ = data.load_arrays(str(out), "train")
    rows = sorted(_index(out).values(), key=lambda row: row["record"])
    (position,) = [i for i, row in enumerate(rows) if row["id"] == "a/0.png"]
    np.testing.assert_array_equal(images[position][..., 0], pixels)
    assert rows[position]["sha256"] != hashlib.sha256(damaged).hexdigest()
