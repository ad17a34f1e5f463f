"""Helpers the data tests share: encoded test images and what a dataset stored."""

import io
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from contrastive import data


def encoded(pixels, image_format="PNG", *, orientation=None, **options) -> bytes:
    """`pixels` (uint8 [H, W] or [H, W, 3]) encoded by Pillow, with an EXIF Orientation tag
    when `orientation` is given (PNG: an eXIf chunk; JPEG, WebP: APP1; TIFF: IFD0)."""
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def index_of(out) -> dict[str, dict]:
    """`index.parquet` of the dataset at `out` (local), as {id: row}."""
    return {row["id"]: row for row in pq.read_table(Path(out) / "index.parquet").to_pylist()}


def decoded(out, split) -> dict[str, tuple]:
    """{id: (pixels as the reader decodes them, label)} of a split (one shard: record order)."""
    rows = sorted(
        (row for row in index_of(out).values() if row["split"] == split),
        key=lambda row: row["record"],
    )
    x, y = data.load_arrays(str(out), split)
    return {row["id"]: (image, label) for row, image, label in zip(rows, x, y, strict=True)}
