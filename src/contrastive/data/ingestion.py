"""`ingest`: any image source -> sharded TFRecords + `index.parquet` + `manifest.json`.

Layout written at the output URI (local path or `gs://`):

    <output>/train/train-00000.tfrecord ...      tf.train.Example records (see `records.py`)
    <output>/validation/... test/... unlabeled/...
    <output>/index.parquet                       one row per example (lineage, dedup, analysis)
    <output>/manifest.json                       written last: its presence commits the dataset

Shards are first written under `<output>/.tmp-<uuid>/` and moved into place only when every
example is written; the manifest is written last, so a first ingest killed at any moment
leaves no `manifest.json` and readers refuse the location until a rerun completes. An
overwrite (`overwrite=True`) moves the new shards and index in under names of their own
(`train/train-<id>-00000.tfrecord`, `index-<id>.parquet`) beside the old dataset, which stays
readable until the new manifest replaces the old one; the old files are removed after.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.images import (
    RESIZE_METHOD,
    EncodedImage,
    ImageRejected,
    header_size,
    looks_like_image_name,
    parse_image_size,
    prepare_encoded,
    resize_arrays,
    sniff_format,
)
from contrastive.data.images import encode as encode_image
from contrastive.data.records import ExampleSerializer
from contrastive.data.sources import (
    FASHION_MNIST_DIR,
    ArraySplit,
    FileSplit,
    Source,
    display_path,
    open_source,
)
from contrastive.data.splits import SPLITS, plan_splits
from contrastive.data.writer import ShardWriter

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.parquet"
DEFAULT_SHARD_SIZE_BYTES = 128 << 20
DEFAULT_MAX_PIXELS = 40_000_000
_TMP_PREFIX = ".tmp-"
_RESIZE_CHUNK = 4096
_PROGRESS_EVERY = 512
_SNIFF_BYTES = 32
_LOGGED_PATHS = 20  # skipped / ignored files named in the log; the manifest lists them all
# Array sources resized by `image_size` are held in memory; refuse before resizing past this.
MAX_RESIZED_ARRAY_BYTES = 16 << 30

# index.parquet: one row per example, column -> Arrow type.
_INDEX_COLUMNS = {
    "id": "string",  # unique in the dataset: "<source split>/<position>" or the relative path
    "split": "string",
    "label": "int64",  # as stored (-1 in unlabeled)
    "source_label": "int64",  # the source's label, kept for examples moved to unlabeled
    "shard": "string",  # path relative to the dataset root
    "record": "int64",  # position within the shard
    "source_path": "string",  # the image file, or the array file / TFDS split
    "source_offset": "int64",  # position within source_path's array (-1 for image files)
    "format": "string",  # png | jpeg | raw
    "num_bytes": "int64",  # of the stored image bytes
    "sha256": "string",  # of the stored image bytes
}


def ingest(
    source: str,
    output: str,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    image_size: str | int | Sequence[int] | None = None,
    on_error: str = "skip",
    overwrite: bool = False,
    labeled_fraction: float | None = None,
    test_fraction: float | None = None,
    tfds_data_dir: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    fashion_mnist_dir: str = FASHION_MNIST_DIR,
    class_names: Sequence[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    array_format: str = "raw",
    shard_size_bytes: int = DEFAULT_SHARD_SIZE_BYTES,
) -> dict:
    """Ingest `source` into a committed dataset at `output`; returns the manifest.

    Args:
        source: `fashion_mnist`, `idx:DIR`, `tfds:NAME`, `npz:FILE`, or an image folder path
            (local or `gs://`); see `contrastive.data.sources`.
        output: dataset URI (local path or `gs://`).
        validation_fraction: stratified, seeded share of the source train split held out as
            `validation`, in `[0, 1)`.
        seed: seeds every random choice (limit sample, validation, labeled subset, order).
        limit: keep at most this many examples of each source split (stratified sample).
        image_size: `(height, width)`, `"H,W"` or an int; resize every image to it by
            `images.RESIZE_METHOD` (aspect ratio kept, centred crop). None: images that all
            share one size keep it; a folder of mixed sizes is resized to the median height x
            median width of its images (so that the common size, if most share one, is kept).
        on_error: `"skip"` records bad images in `manifest["skipped"]`; `"fail"` raises.
        overwrite: replace a committed dataset at `output`.
        labeled_fraction: keep labels on this stratified share of train, in `(0, 1]`; the rest
            moves to `unlabeled` (label -1).
        test_fraction: a source without a test split (a folder of `<root>/<class>/` only)
            holds out this stratified share of train as `test`, in `[0, 1)`; None or 0: none.
        tfds_data_dir: TFDS data directory (may be `gs://`).
        num_workers: threads reading and checking folder images (default `2 * cpu_count`).
        progress: show a progress bar when stderr is a terminal.
        fashion_mnist_dir: where the `fashion_mnist` source looks for its IDX files.
        class_names: class names for `idx:`/`npz:` sources (default "0".."K-1").
        max_pixels: images with more pixels are refused from their header, before decoding.
        array_format: how array sources (IDX, npz, TFDS) store pixels: `"raw"` uint8 bytes or
            `"png"`. Raw is the default: ~10x faster to write and ~3x faster to read than PNG
            for small images (measurements in this package's README.md), at a similar size.
        shard_size_bytes: target shard size.

    Returns:
        The manifest dict (also written to `<output>/manifest.json`).

    Raises:
        DataError: bad arguments or data; the message names the file, field and value.
    """
    started = time.perf_counter()
    image_size = parse_image_size(image_size)
    _check_arguments(
        validation_fraction=validation_fraction,
        seed=seed,
        limit=limit,
        on_error=on_error,
        labeled_fraction=labeled_fraction,
        test_fraction=test_fraction,
        num_workers=num_workers,
        max_pixels=max_pixels,
        array_format=array_format,
        shard_size_bytes=shard_size_bytes,
    )
    if image_size is not None and image_size[0] * image_size[1] > max_pixels:
        raise DataError(
            f"image_size={image_size[0]},{image_size[1]} is {image_size[0] * image_size[1]:,} "
            f"pixels per image, over max_pixels={max_pixels:,}"
        )
    # Plain Python numbers from here on: NumPy scalars would not serialize into the manifest.
    seed, validation_fraction = int(seed), float(validation_fraction)
    test_fraction = float(test_fraction or 0.0)
    limit = None if limit is None else int(limit)
    labeled_fraction = None if labeled_fraction is None else float(labeled_fraction)
    if not isinstance(output, str) or not output.strip():
        raise DataError(f"output must be a non-empty path or URI. Received: output={output!r}")
    output = storage.strip_trailing_slash(output.strip())
    manifest_path = storage.join(output, MANIFEST_NAME)
    committed = storage.exists(manifest_path)
    if committed and not overwrite:
        raise DataError(
            f"{output} already holds a committed dataset ({MANIFEST_NAME}); pass overwrite=True "
            "(--overwrite) to replace it"
        )

    opened = open_source(
        source,
        fashion_mnist_dir=fashion_mnist_dir,
        tfds_data_dir=tfds_data_dir,
        class_names=class_names,
        image_size=image_size,
        tfds_limit=limit,
    )
    if opened.kind == "folder" and _inside(opened.location, output):
        raise DataError(f"output {output} lies inside the source folder {opened.location}")
    if on_error == "fail" and opened.skipped:
        first = opened.skipped[0]
        raise DataError(f"{first['path']}: {first['reason']}")
    _check_array_sizes(opened, image_size, max_pixels)
    resize = {"image_size": list(image_size) if image_size else None, "chosen": "given"}
    if image_size is not None:
        resize["resized"] = _resize_arrays(opened, image_size)
    plan = plan_splits(
        {name: split.labels for name, split in opened.splits.items()},
        validation_fraction=validation_fraction,
        labeled_fraction=labeled_fraction,
        limit=limit,
        seed=seed,
        test_fraction=test_fraction,
    )
    if image_size is None and opened.kind == "folder":
        image_size = _median_size_if_mixed(opened, plan, num_workers or 2 * (os.cpu_count() or 1))
        resize = {"image_size": list(image_size) if image_size else None, "chosen": "median"}

    if storage.exists(output) and not storage.isdir(output):
        raise DataError(f"output {output} is a file, not a directory")
    storage.makedirs(output)
    _remove_stale_files(output, committed=committed)
    tmp = storage.join(output, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
    try:
        written = _write_examples(
            opened,
            plan,
            tmp,
            image_size=image_size,
            on_error=on_error,
            max_pixels=max_pixels,
            array_format=array_format,
            shard_size_bytes=shard_size_bytes,
            num_workers=num_workers or 2 * (os.cpu_count() or 1),
            progress=progress,
        )
        if opened.kind == "folder":
            resize["resized"] = len(written.resized)
            resize["examples"] = written.resized[:_LOGGED_PATHS]
        manifest = _build_manifest(
            source,
            opened,
            written,
            resize={**resize, "method": RESIZE_METHOD} if resize["image_size"] else None,
            parameters={
                "seed": seed,
                "validation_fraction": validation_fraction,
                "labeled_fraction": labeled_fraction,
                "test_fraction": test_fraction,
                "limit": limit,
                "image_size": list(image_size) if image_size else None,
                "on_error": on_error,
                "max_pixels": max_pixels,
                "array_format": array_format,
                "shard_size_bytes": shard_size_bytes,
            },
        )
        _write_index(storage.join(tmp, INDEX_NAME), written.index)
        _commit(output, tmp, manifest, replace=committed)
    finally:
        storage.remove_tree(tmp)

    _log_summary(source, output, manifest, time.perf_counter() - started)
    return manifest


def is_ingested(source: str) -> bool:
    """True when `source` is a location holding a committed dataset (its `manifest.json`)."""
    if not isinstance(source, str):
        return False
    if ":" in source.split("/")[0] and not storage.is_gcs(source):
        return False  # npz:FILE, idx:DIR, tfds:NAME are sources, not datasets
    return storage.exists(storage.join(storage.strip_trailing_slash(source), MANIFEST_NAME))


def copy_ingested(
    source: str, output: str, *, image_size: str | int | Sequence[int] | None = None
) -> dict:
    """Use an already-ingested dataset: copy the files its manifest names (shards, index; the
    manifest last, so the copy commits like an ingest) to `output`; returns the manifest.

    A run's Dataset artifact then holds exactly what it trained on, and on GCS the copy is
    server-side. `image_size`, when given, must be the dataset's: a stored dataset is never
    resized again (ingest the images afresh for another size).

    Raises:
        DataError: the manifest is unreadable, of an unknown format, or of another image size.
    """
    source = storage.strip_trailing_slash(source)
    manifest_path = storage.join(source, MANIFEST_NAME)
    try:
        manifest = storage.read_json(manifest_path)
    except ValueError as error:
        raise DataError(f"{manifest_path}: not valid JSON ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{manifest_path}: format_version={manifest.get('format_version')!r} is not "
            f"{FORMAT_VERSION}; ingest the images again"
        )
    wanted = parse_image_size(image_size)
    stored = tuple(manifest["image_shape"][:2])
    if wanted is not None and wanted != stored:
        raise DataError(
            f"{source} is an ingested dataset of {stored[0]}x{stored[1]} images; "
            f"image_size={wanted[0]},{wanted[1]} asks for another size. Leave image_size unset "
            "to train at the stored size, or ingest the image folder again with that size"
        )
    names = [shard["path"] for entry in manifest["splits"].values() for shard in entry["shards"]]
    for name in [*names, manifest.get("index", INDEX_NAME), MANIFEST_NAME]:
        storage.copy_file(storage.join(source, name), storage.join(output, name))
    logger.info(
        "%s is an ingested dataset (%s, %dx%dx%d): ingest skipped, copied to %s",
        source,
        ", ".join(f"{k}={v['num_examples']}" for k, v in manifest["splits"].items()),
        *manifest["image_shape"],
        output,
    )
    return manifest


def _check_arguments(
    *,
    validation_fraction,
    seed,
    limit,
    on_error,
    labeled_fraction,
    test_fraction,
    num_workers,
    max_pixels,
    array_format,
    shard_size_bytes,
) -> None:
    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    def is_number(value):
        return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)

    checks = [
        (
            "validation_fraction",
            validation_fraction,
            "in [0, 1)",
            is_number(validation_fraction) and 0 <= validation_fraction < 1,
        ),
        (
            "labeled_fraction",
            labeled_fraction,
            "in (0, 1] or None",
            labeled_fraction is None or (is_number(labeled_fraction) and 0 < labeled_fraction <= 1),
        ),
        (
            "test_fraction",
            test_fraction,
            "in [0, 1) or None",
            test_fraction is None or (is_number(test_fraction) and 0 <= test_fraction < 1),
        ),
        ("seed", seed, "an integer >= 0", is_int(seed) and seed >= 0),
        (
            "limit",
            limit,
            "an integer >= 1, or None for all",
            limit is None or (is_int(limit) and limit >= 1),
        ),
        ("on_error", on_error, "'skip' or 'fail'", on_error in ("skip", "fail")),
        (
            "num_workers",
            num_workers,
            "an integer >= 1 or None",
            num_workers is None or (is_int(num_workers) and num_workers >= 1),
        ),
        ("max_pixels", max_pixels, "an integer >= 1", is_int(max_pixels) and max_pixels >= 1),
        ("array_format", array_format, "'raw' or 'png'", array_format in ("raw", "png")),
        (
            "shard_size_bytes",
            shard_size_bytes,
            "an integer >= 1",
            is_int(shard_size_bytes) and shard_size_bytes >= 1,
        ),
    ]
    for name, value, expectation, valid in checks:
        if not valid:
            raise DataError(f"{name} must be {expectation}. Received: {name}={value!r}")


def _inside(root: str, path: str) -> bool:
    """True when `path` is `root` or lies below it."""
    if storage.is_local(root) != storage.is_local(path):
        return False
    if storage.is_local(root):
        root, path = os.path.realpath(root), os.path.realpath(path)
        return os.path.commonpath([root, path]) == root
    return path == root or path.startswith(root.rstrip("/") + "/")


def _check_array_sizes(opened: Source, image_size, max_pixels: int) -> None:
    """Pixels per image and the memory of resized arrays, before any array is touched."""
    for split in opened.splits.values():
        if not isinstance(split, ArraySplit):
            continue
        count, height, width, channels = split.images.shape
        if height * width > max_pixels:
            raise DataError(
                f"{split.origin}: images are {height}x{width} = {height * width:,} pixels, over "
                f"max_pixels={max_pixels:,}"
            )
        if image_size is not None and (height, width) != tuple(image_size):
            needed = count * image_size[0] * image_size[1] * channels
            if needed > MAX_RESIZED_ARRAY_BYTES:
                raise DataError(
                    f"{split.origin}: resizing {count:,} images to image_size="
                    f"{image_size[0]},{image_size[1]} needs {needed / 2**30:.1f} GiB in memory, "
                    f"over MAX_RESIZED_ARRAY_BYTES={MAX_RESIZED_ARRAY_BYTES / 2**30:.0f} GiB; "
                    "use a smaller image_size or a limit"
                )


def _resize_arrays(opened: Source, image_size: tuple[int, int]) -> int:
    """Resize array splits in place (`RESIZE_METHOD`); returns how many images changed size."""
    resized = 0
    for name, split in opened.splits.items():
        if isinstance(split, ArraySplit) and split.images.shape[1:3] != image_size:
            count, height, width = split.images.shape[:3]
            logger.info(
                "resizing %d images of %s from %dx%d to %dx%d (%s)",
                count, split.origin, height, width, *image_size, RESIZE_METHOD,
            )  # fmt: skip
            resized += count
            chunks = [
                resize_arrays(split.images[start : start + _RESIZE_CHUNK], image_size)
                for start in range(0, len(split.images), _RESIZE_CHUNK)
            ]
            opened.splits[name] = ArraySplit(
                np.concatenate(chunks), split.labels, split.origin, split.labels_origin
            )
    return resized


def _median_size_if_mixed(
    opened: Source, plan: dict[str, list[tuple[str, int, int]]], num_workers: int
) -> tuple[int, int] | None:
    """None when every planned folder image has the same size (from its header); else the
    median height x median width, the size the images are resized to.

    The median, not the most common size: photos rarely share a size exactly, and the most
    common of 240 distinct sizes is an accident; when most images do share one, the median is
    that size, so they are stored untouched. Reads each file once more (headers only decoded).
    """
    items = [item for split_items in plan.values() for item in split_items]

    def size_of(item):
        path = opened.splits[item[0]].paths[item[1]]
        try:
            data = _read_regular_file(path)
        except Exception:  # the full read reports the file
            return None
        source_format = sniff_format(data[:_SNIFF_BYTES])
        return header_size(data, source_format) if source_format else None

    with ThreadPoolExecutor(num_workers) as executor:
        sizes = [size for size in executor.map(size_of, items) if size is not None]
    distinct = set(sizes)
    if len(distinct) <= 1:
        return None
    heights, widths = zip(*sizes, strict=True)
    size = (int(np.median(heights)), int(np.median(widths)))
    logger.info(
        "images differ in size: %d sizes among %d images, heights %d..%d, widths %d..%d; "
        "resizing to %dx%d (median height x median width; set image_size to choose). "
        "Method: %s",
        len(distinct), len(sizes), min(heights), max(heights), min(widths), max(widths),
        *size, RESIZE_METHOD,
    )  # fmt: skip
    return size


# --- writing ---------------------------------------------------------------------------------


class _Written:
    """What `_write_examples` produced: shard lists, index columns, skipped files, shape."""

    def __init__(self):
        self.shards: dict[str, list[dict]] = {}
        self.formats: dict[str, dict[str, int]] = {}
        self.index: dict[str, list] = {column: [] for column in _INDEX_COLUMNS}
        self.skipped: list[dict] = []
        self.ignored: list[dict] = []
        self.resized: list[dict] = []  # {"path", "from": [h, w]} of each resized file
        self.image_shape: list[int] = []


def _write_examples(
    opened: Source,
    plan: dict[str, list[tuple[str, int, int]]],
    tmp: str,
    *,
    image_size,
    on_error,
    max_pixels,
    array_format,
    shard_size_bytes,
    num_workers,
    progress,
) -> _Written:
    """Encode every planned example and write it to `<tmp>/<split>/` shards, in plan order.

    Also collects the index rows and checks what needs every image: one size for all (unless
    `image_size`), the dataset's channel count, at least one image per class.
    """
    written = _Written()
    written.skipped += opened.skipped
    written.ignored += opened.ignored
    serializer = ExampleSerializer()
    index = written.index
    first_size: tuple[tuple[int, int], str] | None = None
    channels = 0
    total = sum(len(items) for items in plan.values())
    with _Progress(total, enabled=progress) as bar:
        for split_name, items in plan.items():
            writer = ShardWriter(tmp, split_name, shard_size_bytes)
            formats: dict[str, int] = {}
            if opened.kind == "folder":
                results = _read_files(opened, items, image_size, max_pixels, num_workers)
            else:
                results = _encode_arrays(opened, items, array_format)
            for done, ((source_split, position, label), result) in enumerate(results, 1):
                if done % _PROGRESS_EVERY == 0:
                    bar.advance(_PROGRESS_EVERY)
                split = opened.splits[source_split]
                example_id, source_path, source_offset = _lineage(split, source_split, position)
                if result is None:
                    written.ignored.append({"path": source_path, "reason": "not an image"})
                    continue
                if isinstance(result, ImageRejected):
                    if on_error == "fail":
                        raise DataError(f"{source_path}: {result.reason}")
                    written.skipped.append({"path": source_path, "reason": result.reason})
                    continue
                size = (result.height, result.width)
                if result.resized_from is not None:
                    written.resized.append({"path": source_path, "from": list(result.resized_from)})
                if first_size is None:
                    first_size = (size, source_path)
                elif size != first_size[0]:
                    (height, width), other = first_size
                    raise DataError(
                        f"images differ in size: {other} is {height}x{width}, {source_path} is "
                        f"{size[0]}x{size[1]} (height x width); pass image_size to resize them"
                    )
                channels = max(channels, result.channels)
                record = serializer.serialize(
                    image=result.data,
                    image_format=result.format,
                    label=label,
                    example_id=example_id,
                    height=result.height,
                    width=result.width,
                    channels=result.channels,
                )
                shard, number = writer.write(record)
                formats[result.format] = formats.get(result.format, 0) + 1
                index["id"].append(example_id)
                index["split"].append(split_name)
                index["label"].append(label)
                index["source_label"].append(int(split.labels[position]))
                index["shard"].append(shard)
                index["record"].append(number)
                index["source_path"].append(source_path)
                index["source_offset"].append(source_offset)
                index["format"].append(result.format)
                index["num_bytes"].append(len(result.data))
                index["sha256"].append(hashlib.sha256(result.data).hexdigest())
            bar.advance(len(items) % _PROGRESS_EVERY)
            shards = writer.close()
            if shards:
                written.shards[split_name] = shards
                written.formats[split_name] = formats

    if not written.shards:
        raise DataError(
            f"no images found in {opened.location} ({len(written.ignored)} non-image files, "
            f"{len(written.skipped)} skipped)"
        )
    if "train" not in written.shards:
        raise DataError(f"{opened.location}: no readable train images")
    if opened.kind == "folder":
        _check_every_class_has_images(opened, index)
    written.image_shape = [*first_size[0], channels]
    return written


def _lineage(split: ArraySplit | FileSplit, source_split: str, position: int):
    """`(id, source_path, source_offset)` of one source example."""
    if isinstance(split, ArraySplit):
        return f"{source_split}/{position}", split.origin, position
    path = display_path(split.paths[position])
    return path[len(display_path(split.root)) + 1 :], path, -1


def _encode_arrays(
    opened: Source, items: list[tuple[str, int, int]], array_format: str
) -> Iterator[tuple[tuple[str, int, int], EncodedImage]]:
    for item in items:
        split = opened.splits[item[0]]
        pixels = split.images[item[1]]
        height, width, channels = pixels.shape
        if array_format == "raw":
            data = pixels.tobytes()
        else:
            data = encode_image(pixels, array_format)
        yield item, EncodedImage(data, array_format, height, width, channels)


def _read_files(
    opened: Source,
    items: list[tuple[str, int, int]],
    image_size: tuple[int, int] | None,
    max_pixels: int,
    num_workers: int,
) -> Iterator[tuple[tuple[str, int, int], EncodedImage | ImageRejected | None]]:
    """Read, check and (when needed) convert files on `num_workers` threads, in `items` order.

    Threads, not processes: PIL releases the GIL while decoding and `tf.io.gfile` reads
    (local or GCS) release it while waiting, and threads share the already-imported
    TensorFlow instead of paying its import (or an unsafe fork) per worker.
    """

    def read(item):
        path = opened.splits[item[0]].paths[item[1]]
        try:
            return read_image_file(path, image_size=image_size, max_pixels=max_pixels)
        except MemoryError:
            return ImageRejected("out of memory while decoding")

    window = 4 * num_workers
    with ThreadPoolExecutor(num_workers) as executor:
        pending: deque = deque()
        try:
            for item in items:
                pending.append((item, executor.submit(read, item)))
                if len(pending) >= window:
                    done_item, future = pending.popleft()
                    yield done_item, future.result()
            while pending:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def read_image_file(
    path: str, *, image_size: tuple[int, int] | None, max_pixels: int
) -> EncodedImage | ImageRejected | None:
    """One folder image ready to store, the reason it was refused, or None if not an image.

    A file is an image when its content says so (magic bytes) or its name does (extension):
    one named like an image that is empty, of another format or undecodable is refused, not
    ignored, so that `on_error="fail"` fails on it.
    """
    try:
        data = _read_regular_file(path)
    except ImageRejected as rejected:
        return rejected
    except Exception as error:  # OSError, tf.errors.OpError
        return ImageRejected(f"unreadable file: {error}")
    source_format = sniff_format(data[:_SNIFF_BYTES])
    if source_format is None:
        if not looks_like_image_name(path):
            return None
        what = "an empty file" if not data else f"content starting {data[:8]!r}"
        return ImageRejected(f"named as an image but not a supported image format ({what})")
    try:
        return prepare_encoded(data, source_format, image_size=image_size, max_pixels=max_pixels)
    except ImageRejected as rejected:
        return rejected
    except Exception as error:  # a decoder bug must not end the ingest without the file name
        return ImageRejected(f"undecodable {source_format}: {type(error).__name__}: {error}")


def _read_regular_file(path: str) -> bytes:
    """The bytes of a regular file; anything else (a pipe replacing a listed file, a device) is
    refused without blocking: the open is non-blocking and the type checked on the handle."""
    if not storage.is_local(path):
        return storage.read_bytes(path)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ImageRejected("not a regular file")
        return handle.read()


def _check_every_class_has_images(opened: Source, index: dict[str, list]) -> None:
    counts = np.bincount(
        [label for label in index["source_label"] if label >= 0],
        minlength=len(opened.class_names),
    )
    for label, count in enumerate(counts):
        if count == 0:
            raise DataError(
                f"class {opened.class_names[label]!r} has no readable images in "
                f"{opened.location} (every file in its folder was skipped or is not an image)"
            )


# --- manifest, index, commit -----------------------------------------------------------------


def _build_manifest(
    source: str, opened: Source, written: _Written, *, resize: dict | None, parameters: dict
) -> dict:
    from contrastive import __version__

    splits = {}
    for name in SPLITS:
        if name in written.shards:
            shards = written.shards[name]
            splits[name] = {
                "num_examples": sum(shard["num_examples"] for shard in shards),
                "formats": written.formats[name],
                "shards": shards,
            }
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "source_kind": opened.kind,
        "source_location": opened.location,
        "class_names": list(opened.class_names),
        "num_classes": len(opened.class_names),
        "image_shape": written.image_shape,
        # How images reached image_shape: the size, how it was chosen ("given" or "median" of
        # a mixed folder), the method, how many images changed size and the first of them.
        "resize": resize,
        "splits": splits,
        "index": INDEX_NAME,
        "skipped": sorted(written.skipped, key=lambda entry: entry["path"]),
        "ignored": sorted(written.ignored, key=lambda entry: entry["path"]),
        "ignored_files": len(written.ignored),
        "duplicates": _count_duplicates(written.index),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        "parameters": parameters,
    }


def _count_duplicates(index: dict[str, list]) -> dict[str, int]:
    """Byte-identical examples: repeats within a split, and held-out examples also in train."""
    seen: dict[str, set] = {}
    within = 0
    for split, digest in zip(index["split"], index["sha256"], strict=True):
        hashes = seen.setdefault(split, set())
        within += digest in hashes
        hashes.add(digest)
    train = seen.get("train", set())
    across = sum(len(seen.get(split, set()) & train) for split in ("validation", "test"))
    return {"within_splits": within, "held_out_in_train": across}


def _write_index(path: str, index: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _INDEX_COLUMNS.items()])
    table = pa.Table.from_pydict(index, schema=schema)
    buffer = pa.BufferOutputStream()  # pyarrow cannot write to a GFile handle; stage in memory
    pq.write_table(table, buffer)
    storage.write_bytes(path, buffer.getvalue().to_pybytes())


def _remove_stale_files(output: str, *, committed: bool) -> None:
    """Delete what an unfinished ingest left; refuse to delete anything an ingest did not write.

    Split folders and the index go only when no manifest commits them; a committed dataset
    being overwritten stays readable until `_commit`.
    """
    for name, is_dir, _ in storage.list_dir(output, include_hidden=True):
        path = storage.join(output, name)
        if name in SPLITS and is_dir:
            foreign = [
                entry.name
                for entry in storage.list_dir(path, include_hidden=True)
                if entry.is_dir or not entry.name.endswith(".tfrecord")
            ]
            if foreign:
                raise DataError(
                    f"output {output} holds {storage.join(path, foreign[0])}, which an ingest "
                    "did not write; choose an empty output or remove it"
                )
            if not committed:
                storage.remove_tree(path)
        elif name.startswith(_TMP_PREFIX) and is_dir:
            storage.remove_tree(path)
        elif name == INDEX_NAME and not committed:
            storage.remove(path)


def _commit(output: str, tmp: str, manifest: dict, *, replace: bool = False) -> None:
    """Move the staged files into `output` and write the manifest last.

    `replace` (overwriting a committed dataset): the new shards and index move in under names
    of their own (`train/train-<id>-00000.tfrecord`, `index-<id>.parquet`) beside the old
    ones, so the old manifest and every file it names stay readable until the new manifest
    replaces it in one atomic write; the old files go after that.
    """
    manifest_path = storage.join(output, MANIFEST_NAME)
    if replace:
        _rename_staged(manifest, tmp.rsplit(_TMP_PREFIX, 1)[-1][:12])
    else:
        storage.remove(manifest_path)
        for split in SPLITS:
            storage.remove_tree(storage.join(output, split))
    for split, entry in manifest["splits"].items():
        storage.makedirs(storage.join(output, split))
        for shard in entry["shards"]:
            staged = shard.pop("staged", shard["path"])
            storage.rename(storage.join(tmp, staged), storage.join(output, shard["path"]))
    storage.rename(storage.join(tmp, INDEX_NAME), storage.join(output, manifest["index"]))
    staged = storage.join(tmp, MANIFEST_NAME)
    storage.write_json(staged, manifest)
    storage.rename(staged, manifest_path)  # the new dataset is committed from here
    if replace:
        _remove_unlisted(output, manifest)


def _shards(manifest: dict) -> list[dict]:
    return [shard for entry in manifest["splits"].values() for shard in entry["shards"]]


def _rename_staged(manifest: dict, token: str) -> None:
    """Give the new shards and index names no committed file has (`staged` keeps the old)."""
    for shard in _shards(manifest):
        split, name = shard["path"].split("/", 1)
        stem, number = name[: -len(".tfrecord")].rsplit("-", 1)
        shard["staged"] = shard["path"]
        shard["path"] = f"{split}/{stem}-{token}-{number}.tfrecord"
    manifest["index"] = f"index-{token}.parquet"


def _remove_unlisted(output: str, manifest: dict) -> None:
    """After an overwrite commits: drop the old dataset's shards and index."""
    keep = {shard["path"] for shard in _shards(manifest)} | {manifest["index"], MANIFEST_NAME}
    for name, is_dir, _ in storage.list_dir(output, include_hidden=True):
        if name in SPLITS and is_dir and name not in manifest["splits"]:
            storage.remove_tree(storage.join(output, name))
        elif name in SPLITS and is_dir:
            for entry in storage.list_dir(storage.join(output, name), include_hidden=True):
                relative = f"{name}/{entry.name}"
                if entry.name.endswith(".tfrecord") and relative not in keep:
                    storage.remove(storage.join(output, name, entry.name))
        elif name.startswith("index") and name.endswith(".parquet") and name not in keep:
            storage.remove(storage.join(output, name))


def _log_summary(source: str, output: str, manifest: dict, seconds: float) -> None:
    counts = {name: entry["num_examples"] for name, entry in manifest["splits"].items()}
    total = sum(counts.values())
    logger.info(
        "ingested %s -> %s: %s; %d skipped, %d non-image files ignored; %.1f s (%.0f images/s)",
        source,
        output,
        ", ".join(f"{name}={count}" for name, count in counts.items()),
        len(manifest["skipped"]),
        manifest["ignored_files"],
        seconds,
        total / max(seconds, 1e-9),
    )
    resize = manifest.get("resize")
    if resize and resize.get("examples"):
        lines = [f"  {e['path']}: {e['from'][0]}x{e['from'][1]}" for e in resize["examples"]]
        if resize["resized"] > len(lines):
            lines.append(f"  ... and {resize['resized'] - len(lines)} more")
        logger.info(
            "resized %d images to %dx%d (height x width) from:\n%s",
            resize["resized"], *resize["image_size"], "\n".join(lines),
        )  # fmt: skip
    _log_paths("images skipped", manifest["skipped"])
    _log_paths("non-image files ignored", manifest["ignored"])
    if manifest["duplicates"]["held_out_in_train"]:
        logger.warning(
            "%d validation/test examples are byte-identical to train examples",
            manifest["duplicates"]["held_out_in_train"],
        )


def _log_paths(what: str, entries: list[dict]) -> None:
    """Warn with the first `_LOGGED_PATHS` paths and reasons, then how many more."""
    if not entries:
        return
    lines = [f"  {entry['path']}: {entry['reason']}" for entry in entries[:_LOGGED_PATHS]]
    if len(entries) > _LOGGED_PATHS:
        lines.append(f"  ... and {len(entries) - _LOGGED_PATHS} more (manifest.json lists all)")
    logger.warning("%d %s:\n%s", len(entries), what, "\n".join(lines))


class _Progress:
    """A rich progress bar (count and rate) on a terminal; nothing otherwise."""

    def __init__(self, total: int, *, enabled: bool):
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr),
            )
            self._task = self._bar.add_task("ingest", total=total, rate="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, count: int) -> None:
        if self._bar is not None:
            task = self._bar.tasks[0]
            rate = f"{task.speed:,.0f} images/s" if task.speed else ""
            self._bar.update(self._task, advance=count, rate=rate)

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()
