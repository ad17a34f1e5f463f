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

`ingest` runs three steps, each in its own module: `planning` (argument checks, sizes, the
split plan), `reading` (read, check, encode and write every example to staged shards) and
`commit` (manifest, index and the commit protocol above).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence

from contrastive import storage
from contrastive.data.commit import (
    _TMP_PREFIX,
    FORMAT_VERSION,
    INDEX_NAME,
    MANIFEST_NAME,
    _build_manifest,
    _commit,
    _remove_stale_files,
    _shards,
    _write_index,
    claiming,
    refuse_committed,
)
from contrastive.data.errors import DataError
from contrastive.data.images import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPSCALE,
    RESIZE_METHOD,
    SizeRules,
    parse_image_size,
)
from contrastive.data.planning import (
    _check_arguments,
    _check_array_sizes,
    _median_size_if_mixed,
    _resize_arrays,
)
from contrastive.data.reading import ImageRules, _write_examples
from contrastive.data.runners import DEFAULT_JOB_TIMEOUT, check_engine
from contrastive.data.sources import FASHION_MNIST_DIR, open_source
from contrastive.data.splits import plan_splits

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "INDEX_NAME",
    "MANIFEST_NAME",
    "copy_ingested",
    "ingest",
    "is_ingested",
    "parse_image_size",
]

DEFAULT_SHARD_SIZE_BYTES = 128 << 20
_LOGGED_PATHS = 20  # skipped / ignored files named in the log; the manifest lists them all


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
    class_name_variants: str = "refuse",
    max_upscale: float = DEFAULT_MAX_UPSCALE,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
    runner: str = "inprocess",
    beam_options: str | Sequence[str] = (),
    job_timeout: float = DEFAULT_JOB_TIMEOUT,
) -> dict:
    """Ingest `source` into a committed dataset at `output`; returns the manifest.

    Args:
        source: `fashion_mnist`, a `scheme:LOCATION` of `contrastive.data.sources.FORMATS`
            (`idx:DIR`, `npz:FILE`, `parquet:PATH`, ...), or an image folder path (local or
            `gs://`); see `contrastive.data.sources`.
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
        num_workers: threads reading and checking encoded images (default `2 * cpu_count`);
            with `runner="direct"`, the DirectRunner's worker processes (default cpu_count).
        progress: show a progress bar when stderr is a terminal.
        fashion_mnist_dir: where the `fashion_mnist` source looks for its IDX files.
        class_names: class names for `idx:`/`npz:` sources (default "0".."K-1").
        max_pixels: images with more pixels are refused from their header, before decoding.
        array_format: how array sources (IDX, npz, TFDS) store pixels: `"raw"` uint8 bytes or
            `"png"`. Raw is the default: ~10x faster to write and ~3x faster to read than PNG
            for small images (measurements in this package's README.md), at a similar size.
        shard_size_bytes: target shard size.
        class_name_variants: class names that differ only in case or Unicode normalisation
            (`Cat/` and `cat/`): `"refuse"` (the error names both) or `"merge"` them into one
            class, recorded in `manifest["merged_classes"]`.
        max_upscale: an image whose centred crop would be enlarged more than this many times
            to reach the target size is skipped (listed with the threshold); >= 1.
        max_aspect_ratio: an image whose aspect ratio is more than this many times the
            target's (either way) is skipped, not cropped to a sliver; >= 1.
        runner: `"inprocess"` (threads in this process), or a Beam runner that runs the same
            per-image functions as a job: `"direct"` (here), `"dataflow"`, `"flink"`,
            `"spark"` (`contrastive.data.runners`). The dataset is byte-identical either way.
        beam_options: Beam pipeline flags for the runner (`"--project=p --region=r ..."`);
            Dataflow needs `--project`, `--region` and `--temp_location`, Flink and Spark
            `--job_endpoint`.
        job_timeout: seconds to wait for the Beam job; past it the job is cancelled and the
            ingest fails (`IngestJobError`).

    Returns:
        The manifest dict (also written to `<output>/manifest.json`).

    Raises:
        DataError: bad arguments or data; the message names the file, field and value.
        IngestJobError: the Beam job failed (with the runner's error) or ran past job_timeout.
    """
    started = time.perf_counter()
    image_size = parse_image_size(image_size)
    size_rules = SizeRules(max_upscale, max_aspect_ratio)
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
    engine = check_engine(
        runner, beam_options, job_timeout=job_timeout, num_workers=num_workers, output=output
    )
    if not overwrite:  # fail fast; `claiming` checks again under the output's lease
        refuse_committed(output)

    opened = open_source(
        source,
        fashion_mnist_dir=fashion_mnist_dir,
        tfds_data_dir=tfds_data_dir,
        class_names=class_names,
        image_size=image_size,
        tfds_limit=limit,
        class_name_variants=class_name_variants,
        max_pixels=max_pixels,
        size_rules=size_rules,
        num_workers=num_workers,
    )
    if opened.kind == "folder" and storage.within(opened.location, output):
        raise DataError(f"output {output} lies inside the source folder {opened.location}")
    if on_error == "fail" and opened.skipped:
        first = opened.skipped[0]
        raise DataError(f"{first['path']}: {first['reason']}")
    _check_array_sizes(opened, image_size, max_pixels, size_rules)
    resized_arrays = _resize_arrays(opened, image_size) if image_size is not None else None
    chosen = "given"
    plan = plan_splits(
        {name: split.labels for name, split in opened.splits.items()},
        validation_fraction=validation_fraction,
        labeled_fraction=labeled_fraction,
        limit=limit,
        seed=seed,
        test_fraction=test_fraction,
    )
    survey = image_size is None and opened.encoded  # mixed sizes go to the median
    if survey:
        chosen = "median"
        if engine.in_process:
            threads = num_workers or 2 * (os.cpu_count() or 1)
            image_size = _median_size_if_mixed(opened, plan, threads)
            survey = False

    what = "ingest" if engine.in_process else f"ingest (Beam: {engine.runner})"
    with claiming(output, what, overwrite=overwrite) as claim:
        committed = claim.committed is not None
        storage.makedirs(output)
        _remove_stale_files(output, committed=committed)
        tmp = storage.join(output, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        try:
            rules = ImageRules(image_size, max_pixels, size_rules, array_format)
            if engine.in_process:
                written = _write_examples(
                    opened,
                    plan,
                    tmp,
                    rules=rules,
                    on_error=on_error,
                    shard_size_bytes=shard_size_bytes,
                    num_workers=num_workers or 2 * (os.cpu_count() or 1),
                    progress=progress,
                )
            else:
                from contrastive.data import beam_pipeline

                written, image_size = beam_pipeline.write_examples(
                    opened,
                    plan,
                    tmp,
                    rules=rules,
                    survey=survey,
                    on_error=on_error,
                    shard_size_bytes=shard_size_bytes,
                    engine=engine,
                )
            resize = {"image_size": list(image_size) if image_size else None, "chosen": chosen}
            if opened.encoded:
                resize["resized"] = len(written.resized)
                resize["examples"] = written.resized[:_LOGGED_PATHS]
            elif resized_arrays is not None:
                resize["resized"] = resized_arrays
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
                    "class_name_variants": class_name_variants,
                    "max_upscale": float(max_upscale),
                    "max_aspect_ratio": float(max_aspect_ratio),
                },
            )
            _write_index(storage.join(tmp, INDEX_NAME), written.index)
            _commit(output, tmp, manifest, replace=committed, claim=claim)
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
    source: str,
    output: str,
    *,
    image_size: str | int | Sequence[int] | None = None,
    overwrite: bool = False,
) -> dict:
    """Use an already-ingested dataset: copy the files its manifest names (shards, index) to
    `output` and commit the copy as an ingest commits (staged, manifest last, one writer at a
    time); returns the copy's manifest.

    A run's Dataset artifact then holds exactly what it trained on. `image_size`, when given,
    must be the dataset's: a stored dataset is never resized again (ingest the images afresh
    for another size).

    Raises:
        DataError: the manifest is unreadable, of an unknown format, or of another image size;
            `output` is `source` or lies inside it (or the reverse); `output` holds a
            committed dataset and `overwrite` is False.
    """
    source = storage.strip_trailing_slash(source)
    output = storage.strip_trailing_slash(output)
    if storage.within(source, output) or storage.within(output, source):
        raise DataError(
            f"output {output} and the dataset {source} it copies overlap; choose an output "
            "outside the dataset's folder"
        )
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
    if not overwrite:
        refuse_committed(output)
    with claiming(output, "ingest (copy)", overwrite=overwrite) as claim:
        storage.makedirs(output)
        _remove_stale_files(output, committed=claim.committed is not None)
        tmp = storage.join(output, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        try:
            for name in [shard["path"] for shard in _shards(manifest)]:
                storage.copy_file(storage.join(source, name), storage.join(tmp, name))
            index = manifest.get("index", INDEX_NAME)
            storage.copy_file(storage.join(source, index), storage.join(tmp, INDEX_NAME))
            manifest = {**manifest, "index": INDEX_NAME, "copied_from": source}
            _commit(output, tmp, manifest, replace=claim.committed is not None, claim=claim)
        finally:
            storage.remove_tree(tmp)
    logger.info(
        "%s is an ingested dataset (%s, %dx%dx%d): ingest skipped, copied to %s",
        source,
        ", ".join(f"{k}={v['num_examples']}" for k, v in manifest["splits"].items()),
        *manifest["image_shape"],
        output,
    )
    return manifest


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
    if manifest["oriented"]:
        logger.info(
            "turned %d images upright by their EXIF orientation (value: count %s); "
            "index.parquet's orientation column names each",
            sum(manifest["oriented"].values()),
            manifest["oriented"],
        )
    missing = missing_classes(manifest)
    if missing:
        logger.warning(
            "%d of %d classes have no train images in %s: %s. A model trained on it cannot "
            "learn them; give each class train images (the hold-outs never take a class's last "
            "one, so these had none in the source's train split, or lost them to `limit`)",
            len(missing), manifest["num_classes"], output, ", ".join(map(repr, missing)),
        )  # fmt: skip
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


def missing_classes(manifest: dict, split: str = "train") -> list[str]:
    """The names of the classes with no labelled example in `split` (manifests that record
    `class_counts`; older ones: none known)."""
    counts = manifest["splits"].get(split, {}).get("class_counts")
    if counts is None:
        return []
    return [name for name, count in zip(manifest["class_names"], counts, strict=False) if not count]


def _log_paths(what: str, entries: list[dict]) -> None:
    """Warn with the first `_LOGGED_PATHS` paths and reasons, then how many more."""
    if not entries:
        return
    lines = [f"  {entry['path']}: {entry['reason']}" for entry in entries[:_LOGGED_PATHS]]
    if len(entries) > _LOGGED_PATHS:
        lines.append(f"  ... and {len(entries) - _LOGGED_PATHS} more (manifest.json lists all)")
    logger.warning("%d %s:\n%s", len(entries), what, "\n".join(lines))
