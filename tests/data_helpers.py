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


def dataset_bytes(out) -> dict[str, bytes]:
    """Every file of a local dataset but its manifest and lease, `{relative path: bytes}`."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(Path(out).rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", ".writer.json")
    }


def manifest_content(out) -> dict:
    """The manifest of a local dataset without what names the run (when, which writer)."""
    import json

    manifest = json.loads((Path(out) / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k not in ("created_at", "writer")}


def photo_folder(root, *, classes=("cat", "dog", "eel"), per_class=10, seed=0) -> Path:
    """A class folder of small photos as users have them: mixed sizes, grey and RGB, PNG and
    JPEG, one turned by its EXIF orientation, plus a broken PNG and a stray text file."""
    import numpy as np

    rng = np.random.default_rng(seed)
    root = Path(root)
    for number, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = 10 + (i % 3) * 2, 12 + (i % 2) * 2
            shape = (height, width, 3) if (i + number) % 2 else (height, width)
            pixels = rng.integers(0, 255, shape, dtype=np.uint8)
            if i % 4 == 3:
                (root / name / f"{i:02d}.jpg").write_bytes(
                    encoded(pixels, "JPEG", orientation=6 if i == 3 else None)
                )
            else:
                (root / name / f"{i:02d}.png").write_bytes(encoded(pixels))
    (root / classes[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / classes[1] / "notes.txt").write_text("not an image")
    return root


def import_csv(path, images, *, ml_uses=("training", "validation", "test", ""), labels=None):
    """A Vertex AI import CSV listing `images` (paths), cycling through `ml_uses` and the
    labels `labels` (default: each image's parent folder name); returns `csv:PATH`."""
    rows = []
    for number, image in enumerate(images):
        label = labels[number % len(labels)] if labels else Path(image).parent.name
        ml_use = ml_uses[number % len(ml_uses)]
        rows.append(",".join(field for field in (ml_use, str(image), label) if field))
    Path(path).write_text("\n".join(rows) + "\n")
    return f"csv:{path}"


def small_npz(path, *, train=60, test=20, classes=2, shape=(5, 4), seed=0) -> str:
    """An npz source of random uint8 images (`shape`), labels cycling through `classes`;
    returns `npz:PATH`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (train, *shape), dtype=np.uint8),
        y_train=np.arange(train) % classes,
        x_test=rng.integers(0, 255, (test, *shape), dtype=np.uint8),
        y_test=np.arange(test) % classes,
    )
    return f"npz:{path}"
