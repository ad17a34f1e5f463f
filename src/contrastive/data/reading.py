"""Ingest, step 2: read every planned example, check and encode it, write staged shards.

Folder images are read on a thread pool (`_read_files`, `read_image_file`), array sources
encoded (`_encode_arrays`); `_write_examples` writes both to `<tmp>/<split>/` shards in plan
order and collects the index rows. (`reader.py` is the other direction: it streams a
committed dataset to the training steps.)
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from contrastive import storage
from contrastive.data.commit import _INDEX_COLUMNS
from contrastive.data.errors import DataError
from contrastive.data.images import (
    EncodedImage,
    ImageRejected,
    SizeRules,
    looks_like_image_name,
    prepare_encoded,
    sniff_format,
)
from contrastive.data.images import encode as encode_image
from contrastive.data.records import ExampleSerializer
from contrastive.data.sources import ArraySplit, FileSplit, Source, display_path
from contrastive.data.writer import ShardWriter

_PROGRESS_EVERY = 512
_SNIFF_BYTES = 32


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
    size_rules: SizeRules = SizeRules(),
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
                results = _read_files(
                    opened, items, image_size, max_pixels, num_workers, size_rules
                )
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
                index["orientation"].append(result.orientation)
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
        offset = position if split.offsets is None else int(split.offsets[position])
        return f"{source_split}/{offset}", split.origin, offset
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
        orientation = 0 if split.orientations is None else int(split.orientations[item[1]])
        yield item, EncodedImage(data, array_format, height, width, channels, None, orientation)


def _read_files(
    opened: Source,
    items: list[tuple[str, int, int]],
    image_size: tuple[int, int] | None,
    max_pixels: int,
    num_workers: int,
    size_rules: SizeRules = SizeRules(),
) -> Iterator[tuple[tuple[str, int, int], EncodedImage | ImageRejected | None]]:
    """Read, check and (when needed) convert files on `num_workers` threads, in `items` order.

    Threads, not processes: PIL releases the GIL while decoding and `tf.io.gfile` reads
    (local or GCS) release it while waiting, and threads share the already-imported
    TensorFlow instead of paying its import (or an unsafe fork) per worker.
    """

    def read(item):
        path = opened.splits[item[0]].paths[item[1]]
        try:
            return read_image_file(
                path, image_size=image_size, max_pixels=max_pixels, size_rules=size_rules
            )
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
    path: str,
    *,
    image_size: tuple[int, int] | None,
    max_pixels: int,
    size_rules: SizeRules = SizeRules(),
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
        return prepare_encoded(
            data, source_format, image_size=image_size, max_pixels=max_pixels, size_rules=size_rules
        )
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
