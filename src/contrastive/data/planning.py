"""Ingest, step 1: check the arguments and plan the work before any example is read.

Argument checks, the output-inside-source check, array-size limits, the in-memory resize of
array sources and the median size of encoded images of mixed sizes (`header_size_of` per
image, `median_size` of their histogram: the Beam engine runs the same two). The split plan
itself is `splits.plan_splits`; `ingestion.ingest` runs these in order, then `reading`, then
`commit`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from contrastive.data.errors import DataError
from contrastive.data.images import (
    RESIZE_METHOD,
    SizeRules,
    header_size,
    resize_arrays,
    resize_problem,
    sniff_format,
)
from contrastive.data.reading import _SNIFF_BYTES, Payload, payload_bytes, planned_example
from contrastive.data.sources import ArraySplit, Source

logger = logging.getLogger(__name__)

_RESIZE_CHUNK = 4096
# Array sources resized by `image_size` are held in memory; refuse before resizing past this.
MAX_RESIZED_ARRAY_BYTES = 16 << 30


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


def _check_array_sizes(
    opened: Source, image_size, max_pixels: int, size_rules: SizeRules = SizeRules()
) -> None:
    """Pixels per image, `size_rules` (an array holds images of one size: all pass or none)
    and the memory of resized arrays, before any array is touched."""
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
            problem = resize_problem(height, width, tuple(image_size), size_rules)
            if problem:
                raise DataError(f"{split.origin}: every image is refused: {problem}")
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
            opened.splits[name] = dataclasses.replace(split, images=np.concatenate(chunks))
    return resized


def _median_size_if_mixed(
    opened: Source, plan: dict[str, list[tuple[str, int, int]]], num_workers: int
) -> tuple[int, int] | None:
    """None when every planned image of an encoded source has the same size (from its
    header); else the median height x median width, the size the images are resized to.

    The median, not the most common size: photos rarely share a size exactly, and the most
    common of 240 distinct sizes is an accident; when most images do share one, the median is
    that size, so they are stored untouched. Reads each file once more (headers only decoded).
    """
    payloads = [
        planned_example(opened, name, item).payload
        for name, items in plan.items()
        for item in items
    ]
    with ThreadPoolExecutor(num_workers) as executor:
        sizes = Counter(size for size in executor.map(header_size_of, payloads) if size)
    return median_size(sizes)


def header_size_of(payload: Payload) -> tuple[int, int] | None:
    """The upright (height, width) an encoded payload's header declares; None when it cannot
    be read or is not an image (the full read reports it)."""
    try:
        data = payload_bytes(payload)
    except Exception:  # the full read reports the file
        return None
    source_format = sniff_format(data[:_SNIFF_BYTES])
    return header_size(data, source_format) if source_format else None


def median_size(sizes: Counter) -> tuple[int, int] | None:
    """From a histogram `{(height, width): count}` of image sizes: None when there is at most
    one size, else (median height, median width) (logged with the spread). The median is
    NumPy's (the mean of the two middle values for an even count), truncated to int."""
    if len(sizes) <= 1:
        return None
    shapes = np.asarray(list(sizes), np.int64)
    counts = np.asarray(list(sizes.values()), np.int64)
    heights, widths = np.repeat(shapes[:, 0], counts), np.repeat(shapes[:, 1], counts)
    size = (int(np.median(heights)), int(np.median(widths)))
    logger.info(
        "images differ in size: %d sizes among %d images, heights %d..%d, widths %d..%d; "
        "resizing to %dx%d (median height x median width; set image_size to choose). "
        "Method: %s",
        len(sizes), len(heights), heights.min(), heights.max(), widths.min(), widths.max(),
        *size, RESIZE_METHOD,
    )  # fmt: skip
    return size
