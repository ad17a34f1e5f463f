"""Ingest, step 2: read every planned example, check and encode it, write staged shards.

The per-example work is a set of plain functions that every engine calls:

- `planned_example`: a plan item -> `Example` (where it goes, its id and lineage, and the
  `Payload` to read: a file, encoded bytes or decoded pixels);
- `prepare`: a `Payload` -> the `EncodedImage` to store, the reason it is refused
  (`ImageRejected`), or None (a folder's file that is not an image);
- `to_record`: the `tf.train.Example` bytes of a prepared example;
- `_Collector`: takes the outcomes in plan order and builds what the manifest and the index
  need (`_Written`), raising on the first refused image with `on_error="fail"` or on a second
  image size.

`_write_examples` is the in-process engine (a thread pool for encoded images, `ShardWriter`
streaming the shards); `beam_pipeline` runs the same functions as an Apache Beam pipeline
and replays its outcomes through the same `_Collector`, so both write the same bytes.
(`reader.py` is the other direction: it streams a committed dataset to the training steps.)
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
from contrastive.data.sources import ArraySplit, Source, TableSplit, display_path
from contrastive.data.writer import ShardWriter

_PROGRESS_EVERY = 512
_SNIFF_BYTES = 32


@dataclass(frozen=True)
class ImageRules:
    """The per-image rules of one ingest, the same object for every engine (Beam ships it to
    its workers): the target size, the pixel limit, the size rules, how arrays are stored."""

    image_size: tuple[int, int] | None
    max_pixels: int
    size_rules: SizeRules = SizeRules()
    array_format: str = "raw"


@dataclass(frozen=True)
class Payload:
    """What to read for one example: exactly one of `path`, `data` and `pixels`."""

    path: str | None = None  # a file to read (folder, import file, a Parquet path cell)
    data: bytes | None = None  # encoded image bytes (a Parquet bytes cell)
    pixels: np.ndarray | None = None  # decoded uint8 [H, W, C] (IDX, npz, TFDS)
    orientation: int = 0  # EXIF orientation already applied to `pixels`
    # The source lists it as an image (an import file, a table): a file that is not one is
    # refused, not ignored as a stray file beside a folder's images is.
    declared: bool = False


@dataclass(frozen=True)
class Example:
    """One planned example: its output split and label, its id and lineage, what to read."""

    split: str
    label: int  # as stored (-1 in unlabeled)
    source_label: int  # the source's label (kept for examples moved to unlabeled)
    example_id: str
    source_path: str
    source_offset: int  # position within source_path's array or table; -1 for image files
    payload: Payload
    # How lists and messages name it: the image file it reads, else `FILE[ROW]` of its array
    # or table (`source_path[source_offset]`).
    name: str = ""


@dataclass(frozen=True)
class Stored:
    """What the index and the manifest keep of one stored example (not its bytes)."""

    format: str
    height: int
    width: int
    channels: int
    num_bytes: int
    sha256: str
    orientation: int
    resized_from: tuple[int, int] | None

    @classmethod
    def of(cls, image: EncodedImage) -> Stored:
        return cls(
            image.format,
            image.height,
            image.width,
            image.channels,
            len(image.data),
            hashlib.sha256(image.data).hexdigest(),
            image.orientation,
            image.resized_from,
        )


def planned_example(opened: Source, split_name: str, item: tuple[str, int, int]) -> Example:
    """The `Example` of plan item `(source_split, position, stored_label)` of `split_name`."""
    source_split, position, label = item
    split = opened.splits[source_split]
    source_label = int(split.labels[position])
    if isinstance(split, ArraySplit):
        offset = position if split.offsets is None else int(split.offsets[position])
        orientation = 0 if split.orientations is None else int(split.orientations[position])
        payload = Payload(pixels=split.images[position], orientation=orientation)
        example_id, source_path = f"{source_split}/{offset}", split.origin
        name = f"{source_path}[{offset}]"
    elif isinstance(split, TableSplit):
        blob = split.blobs[position]
        path = split.paths[position]
        example_id = f"{source_split}/{position}"
        source_path = split.files[int(split.file_of[position])]
        offset = int(split.rows[position])
        if blob.is_valid:
            payload, name = Payload(data=blob.as_py(), declared=True), f"{source_path}[{offset}]"
        else:
            payload, name = Payload(path=path, declared=True), display_path(path)
    else:
        path = split.paths[position]
        source_path = display_path(path)
        if split.ids is not None:
            example_id = split.ids[position]
        else:
            example_id = source_path[len(display_path(split.root)) + 1 :]
        payload = Payload(path=path, declared=split.declared)
        offset, name = -1, source_path
    return Example(split_name, label, source_label, example_id, source_path, offset, payload, name)


def prepare(payload: Payload, rules: ImageRules) -> EncodedImage | ImageRejected | None:
    """The image to store for `payload`, the reason it is refused, or None (a folder file
    that is not an image). Never raises for a bad image: every refusal names its reason."""
    if payload.pixels is not None:
        pixels = payload.pixels
        height, width, channels = pixels.shape
        if rules.array_format == "raw":
            data = pixels.tobytes()
        else:
            data = encode_image(pixels, rules.array_format)
        return EncodedImage(
            data, rules.array_format, height, width, channels, None, payload.orientation
        )
    try:
        if payload.data is not None:
            return check_image_bytes(payload.data, "", rules, declared=True)
        return read_image_file(
            payload.path,
            image_size=rules.image_size,
            max_pixels=rules.max_pixels,
            size_rules=rules.size_rules,
            declared=payload.declared,
        )
    except MemoryError:
        return ImageRejected("out of memory while decoding")


def to_record(serializer: ExampleSerializer, example: Example, image: EncodedImage) -> bytes:
    """The shard record of a prepared example (the layout in `records.py`)."""
    return serializer.serialize(
        image=image.data,
        image_format=image.format,
        label=example.label,
        example_id=example.example_id,
        height=image.height,
        width=image.width,
        channels=image.channels,
    )


class _Written:
    """What the writing step produced: shard lists, index columns, skipped files, shape."""

    def __init__(self):
        self.shards: dict[str, list[dict]] = {}
        self.formats: dict[str, dict[str, int]] = {}
        self.index: dict[str, list] = {column: [] for column in _INDEX_COLUMNS}
        self.skipped: list[dict] = []
        self.ignored: list[dict] = []
        self.resized: list[dict] = []  # {"path", "from": [h, w]} of each resized file
        self.image_shape: list[int] = []


class _Collector:
    """Takes every example's outcome in plan order and builds `_Written`.

    Checks what needs every image: `on_error="fail"` raises on the first refused one, all
    stored images must share one size (unless resized), the dataset's channel count, and at
    the end at least one stored image per class of an encoded source.
    """

    def __init__(self, opened: Source, on_error: str):
        self._opened = opened
        self._on_error = on_error
        self._first_size: tuple[tuple[int, int], str] | None = None
        self._channels = 0
        self._formats: dict[str, int] = {}
        self.written = _Written()
        self.written.skipped += opened.skipped
        self.written.ignored += opened.ignored

    def accept(self, example: Example, result: EncodedImage | Stored | ImageRejected | None):
        """A `Stored` for an image to write; None (listed as skipped or ignored) otherwise.

        Raises:
            DataError: a refused image with `on_error="fail"`, or a second image size.
        """
        if result is None:
            self.written.ignored.append({"path": example.name, "reason": "not an image"})
            return None
        if isinstance(result, ImageRejected):
            if self._on_error == "fail":
                raise DataError(f"{example.name}: {result.reason}")
            self.written.skipped.append({"path": example.name, "reason": result.reason})
            return None
        stored = result if isinstance(result, Stored) else Stored.of(result)
        size = (stored.height, stored.width)
        if self._first_size is None:
            self._first_size = (size, example.name)
        elif size != self._first_size[0]:
            (height, width), other = self._first_size
            raise DataError(
                f"images differ in size: {other} is {height}x{width}, {example.name} is "
                f"{size[0]}x{size[1]} (height x width); pass image_size to resize them"
            )
        return stored

    def store(self, example: Example, stored: Stored, shard: str, record: int) -> None:
        """Record an accepted example written as `record` of `shard`."""
        if stored.resized_from is not None:
            self.written.resized.append({"path": example.name, "from": list(stored.resized_from)})
        self._channels = max(self._channels, stored.channels)
        self._formats[stored.format] = self._formats.get(stored.format, 0) + 1
        index = self.written.index
        index["id"].append(example.example_id)
        index["split"].append(example.split)
        index["label"].append(example.label)
        index["source_label"].append(example.source_label)
        index["shard"].append(shard)
        index["record"].append(record)
        index["source_path"].append(example.source_path)
        index["source_offset"].append(example.source_offset)
        index["format"].append(stored.format)
        index["num_bytes"].append(stored.num_bytes)
        index["sha256"].append(stored.sha256)
        index["orientation"].append(stored.orientation)

    def close_split(self, split_name: str, shards: list[dict]) -> None:
        if shards:
            self.written.shards[split_name] = shards
            self.written.formats[split_name] = self._formats
        self._formats = {}

    def finish(self) -> _Written:
        written = self.written
        if not written.shards:
            raise DataError(
                f"no images found in {self._opened.location} ({len(written.ignored)} non-image "
                f"files, {len(written.skipped)} skipped)"
            )
        if "train" not in written.shards:
            raise DataError(f"{self._opened.location}: no readable train images")
        if self._opened.encoded:
            _check_every_class_has_images(self._opened, written.index)
        written.image_shape = [*self._first_size[0], self._channels]
        return written


def _write_examples(
    opened: Source,
    plan: dict[str, list[tuple[str, int, int]]],
    tmp: str,
    *,
    rules: ImageRules,
    on_error: str,
    shard_size_bytes: int,
    num_workers: int,
    progress: bool,
) -> _Written:
    """In-process engine: encode every planned example and write it to `<tmp>/<split>/`
    shards, in plan order (threads read and check encoded images ahead of the writer)."""
    collector = _Collector(opened, on_error)
    serializer = ExampleSerializer()
    total = sum(len(items) for items in plan.values())
    with _Progress(total, enabled=progress) as bar:
        for split_name, items in plan.items():
            writer = ShardWriter(tmp, split_name, shard_size_bytes)
            examples = [planned_example(opened, split_name, item) for item in items]
            threads = num_workers if opened.encoded else 0
            for done, (example, result) in enumerate(_prepared(examples, rules, threads), 1):
                if done % _PROGRESS_EVERY == 0:
                    bar.advance(_PROGRESS_EVERY)
                stored = collector.accept(example, result)
                if stored is not None:
                    shard, number = writer.write(to_record(serializer, example, result))
                    collector.store(example, stored, shard, number)
            bar.advance(len(items) % _PROGRESS_EVERY)
            collector.close_split(split_name, writer.close())
    return collector.finish()


def _prepared(
    examples: list[Example], rules: ImageRules, num_workers: int
) -> Iterator[tuple[Example, EncodedImage | ImageRejected | None]]:
    """`(example, prepare(payload))` in `examples` order; on `num_workers` threads when > 0.

    Threads, not processes: PIL releases the GIL while decoding and `tf.io.gfile` reads
    (local or GCS) release it while waiting, and threads share the already-imported
    TensorFlow instead of paying its import (or an unsafe fork) per worker.
    """
    if num_workers <= 0:
        for example in examples:
            yield example, prepare(example.payload, rules)
        return
    window = 4 * num_workers
    with ThreadPoolExecutor(num_workers) as executor:
        pending: deque = deque()
        try:
            for example in examples:
                pending.append((example, executor.submit(prepare, example.payload, rules)))
                if len(pending) >= window:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def read_image_file(
    path: str,
    *,
    image_size: tuple[int, int] | None,
    max_pixels: int,
    size_rules: SizeRules = SizeRules(),
    declared: bool = False,
) -> EncodedImage | ImageRejected | None:
    """One image file ready to store, the reason it was refused, or None if not an image.

    A file is an image when its content says so (magic bytes), its name does (extension) or
    the source lists it as one (`declared`): one named or listed as an image that is empty,
    of another format or undecodable is refused, not ignored, so that `on_error="fail"`
    fails on it.
    """
    try:
        data = _read_regular_file(path)
    except ImageRejected as rejected:
        return rejected
    except FileNotFoundError:
        return ImageRejected("not found")
    except Exception as error:  # OSError, tf.errors.OpError, google.api_core errors
        return ImageRejected(f"unreadable file: {error}")
    return check_image_bytes(
        data,
        path,
        ImageRules(image_size, max_pixels, size_rules),
        declared=declared or looks_like_image_name(path),
    )


def check_image_bytes(
    data: bytes, name: str, rules: ImageRules, *, declared: bool
) -> EncodedImage | ImageRejected | None:
    """`prepare_encoded` of bytes whose format is sniffed; None when they are not an image and
    nothing `declared` them one."""
    source_format = sniff_format(data[:_SNIFF_BYTES])
    if source_format is None:
        if not declared:
            return None
        what = "an empty file" if not data else f"content starting {data[:8]!r}"
        named = "named" if name and looks_like_image_name(name) else "listed"
        return ImageRejected(f"{named} as an image but not a supported image format ({what})")
    try:
        return prepare_encoded(
            data,
            source_format,
            image_size=rules.image_size,
            max_pixels=rules.max_pixels,
            size_rules=rules.size_rules,
        )
    except ImageRejected as rejected:
        return rejected
    except Exception as error:  # a decoder bug must not end the ingest without the file name
        return ImageRejected(f"undecodable {source_format}: {type(error).__name__}: {error}")


def payload_bytes(payload: Payload) -> bytes:
    """The encoded bytes of a file or bytes payload (for a header survey).

    Raises:
        ImageRejected, OSError: the file cannot be read.
    """
    return payload.data if payload.data is not None else _read_regular_file(payload.path)


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
                f"{opened.location} (every image listed for it was skipped or is not an image)"
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
