"""Reading a committed dataset: manifest, `tf.data` pipelines, in-memory arrays, checks.

Shards are read where they are (local or `gs://`, through TensorFlow's filesystems); nothing
is copied to local disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from contrastive import storage, validation
from contrastive.data.balanced import balanced_batches, with_balanced_labels
from contrastive.data.commit import FORMAT_VERSION, MANIFEST_NAME
from contrastive.data.errors import CorruptShardError, DataError, DatasetIncompleteError
from contrastive.data.images import parse_image_size
from contrastive.data.records import FEATURE_SPEC

SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
# `verify=None` checksums a split's shards when they total at most this much (~0.3 s a GiB
# locally); larger splits get the cheap size check only.
AUTO_VERIFY_MAX_BYTES = 512 << 20
DEFAULT_SHUFFLE_BUFFER = 10_000
# The shuffle buffer holds serialized records: at most this many bytes of them (a 128x128 RGB
# image is 49 kB, so 20,000 of them would be 1 GB); `shuffle_buffer` examples when smaller.
DEFAULT_SHUFFLE_BUFFER_BYTES = 64 << 20
_MAX_PARALLEL_SHARDS = 16
_LOAD_BATCH = 4096
_READ_CHUNK = 128
_READ_CHUNK_BYTES = 1 << 20
_SCAN_CHUNK_BYTES = 8 << 20

log = logging.getLogger(__name__)


def read_manifest(uri: str) -> dict:
    """The manifest of the dataset at `uri`.

    Raises:
        DatasetIncompleteError: no `manifest.json` (never ingested, or the ingest did not
            finish).
        DataError: unreadable manifest, or a `format_version` this reader does not know.
    """
    uri = storage.strip_trailing_slash(uri)
    path = storage.join(uri, MANIFEST_NAME)
    if not storage.exists(path):
        raise DatasetIncompleteError(
            f"dataset incomplete: {uri} has no {MANIFEST_NAME} (never ingested, or the ingest "
            "did not finish; run `contrastive ingest` again)"
        )
    try:
        manifest = storage.read_json(path)
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"corrupt dataset {path}: not a JSON object")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise DataError(
            f"{path}: format_version={version!r} is not supported by this reader (supported: "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}); upgrade contrastive or ingest again"
        )
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest: dict, path: str) -> None:
    """CorruptShardError naming the manifest, split and shard where the manifest contradicts
    itself: fields missing, a split without shards, counts that do not add up."""
    for field in ("splits", "class_names", "num_classes", "image_shape"):
        if field not in manifest:
            raise CorruptShardError(f"corrupt dataset {path}: no {field!r} field")
    for split, entry in manifest["splits"].items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not shards or not isinstance(shards, list):
            raise CorruptShardError(
                f"corrupt dataset {path}: split {split} lists no shards "
                f"(num_examples={entry.get('num_examples') if isinstance(entry, dict) else None})"
            )
        counts = []
        for shard in shards:
            if not isinstance(shard, dict) or not isinstance(shard.get("path"), str):
                raise CorruptShardError(f"corrupt dataset {path}: split {split} lists {shard!r}")
            for field in ("num_bytes", "sha256"):
                if field not in shard:
                    raise CorruptShardError(
                        f"corrupt dataset {path}: split {split}, shard {shard['path']} has no "
                        f"{field!r}"
                    )
            count = shard.get("num_examples")
            if count is not None and (not validation.is_int(count) or count < 1):
                raise CorruptShardError(
                    f"corrupt dataset {path}: split {split}, shard {shard['path']} says "
                    f"num_examples={count!r}"
                )
            counts.append(count)
        if None not in counts and sum(counts) != entry.get("num_examples"):
            raise CorruptShardError(
                f"corrupt dataset {path}: split {split} says num_examples="
                f"{entry.get('num_examples')!r}, its shards say {sum(counts)} in all"
            )


def verify_shards(
    uri: str,
    splits: Sequence[str] | None = None,
    *,
    checksums: bool = True,
    manifest: dict | None = None,
) -> int:
    """Check that each shard exists with the manifest's size and (optionally) sha256.

    `tf.data` reports a damaged shard as `DataLossError: corrupted record at 1234` without
    naming the file; this names it.

    Args:
        splits: splits to check (default: all).
        checksums: also compare sha256 (reads every byte); else only sizes (one stat each).

    Returns:
        The number of shards checked.

    Raises:
        CorruptShardError: the message names the shard file.
    """
    uri = storage.strip_trailing_slash(uri)
    manifest = manifest or read_manifest(uri)
    where = f"corrupt dataset {storage.join(uri, MANIFEST_NAME)}"
    checked = 0
    for split in splits or list(manifest["splits"]):
        for shard in _split_entry(manifest, split, uri)["shards"]:
            path = storage.join(uri, shard["path"])
            named = f"{where}: split {split}, shard {path}"
            if not storage.exists(path):
                raise CorruptShardError(f"{named} is missing")
            size = storage.file_size(path)
            if size != shard["num_bytes"]:
                raise CorruptShardError(
                    f"{named} is {size} bytes, the manifest says {shard['num_bytes']} "
                    "(truncated or replaced)"
                )
            if checksums:
                digest, records = _scan_shard(path)
                if digest != shard["sha256"]:
                    raise CorruptShardError(
                        f"{named}: sha256 differs from the manifest's (damaged or replaced)"
                    )
                expected = shard.get("num_examples")
                if records is None or (expected is not None and records != expected):
                    held = "a record cut short" if records is None else f"{records} records"
                    raise CorruptShardError(f"{named} holds {held}, the manifest says {expected}")
            checked += 1
    return checked


@contextlib.contextmanager
def naming_damage(uri: str) -> Iterator[None]:
    """Inside the block, tf.data's own errors about a damaged dataset (a record count that
    disagrees with the manifest, a corrupted record) become the `CorruptShardError` of a full
    `verify_shards`, naming the manifest, split and shard; splits too large for `read_split`
    to checksum up front (`AUTO_VERIFY_MAX_BYTES`) fail this way."""
    try:
        yield
    except (tf.errors.FailedPreconditionError, tf.errors.DataLossError, tf.errors.OutOfRangeError):
        verify_shards(uri, checksums=True)  # names the shard, if the damage is in one
        raise


def _scan_shard(path: str) -> tuple[str, int | None]:
    """`(sha256, records)` of a TFRecord file in one streamed read: records are counted from
    their length headers (`uint64 length, uint32 crc, data, uint32 crc`); None when the last
    one is cut short."""
    digest = hashlib.sha256()
    records, next_record, start, buffer = 0, 0, 0, b""
    opener = open if storage.is_local(path) else tf.io.gfile.GFile
    with opener(path, "rb") as handle:
        while chunk := handle.read(_SCAN_CHUNK_BYTES):
            digest.update(chunk)
            buffer = buffer + chunk if buffer else chunk
            end = start + len(buffer)
            while next_record + 8 <= end:
                at = next_record - start
                (length,) = struct.unpack("<Q", buffer[at : at + 8])
                records += 1
                next_record += 16 + length
            if next_record < end:
                buffer, start = buffer[next_record - start :], next_record
            else:
                buffer, start = b"", end
    return digest.hexdigest(), records if next_record == start + len(buffer) else None


def read_split(
    uri: str,
    split: str | Sequence[str],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    cache: bool = False,
    drop_remainder: bool = False,
    image_size: str | int | Sequence[int] | None = None,
    limit: int | None = None,
    deterministic: bool | None = None,
    verify: bool | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    shuffle_buffer_bytes: int = DEFAULT_SHUFFLE_BUFFER_BYTES,
    process_index: int = 0,
    process_count: int = 1,
    labelled_ids: Sequence[str] | None = None,
    drop_unlabelled: bool = False,
    with_ids: bool = False,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(images uint8 [B, H, W, C], labels int64 [B])` batches
    (`with_ids`: `(images, labels, ids string [B])`, the records' ids as in `index.parquet`).

    Pipeline: shard list (this process's shards; shuffled when `shuffle`) -> parallel
    interleave of TFRecord readers -> `limit` -> `cache` (serialized records, in memory) ->
    `shuffle` (bounded buffer) -> `repeat` -> batch -> one `parse_example` per batch + decode
    (raw bytes: one reshape; PNG/JPEG: per image) -> resize -> prefetch. Memory is bounded by
    the shuffle buffer and the prefetched batches, whatever the split's size (unless `cache`).

    Several processes (data-parallel training over hosts: `jax.process_index()`,
    `jax.process_count()`) each call it with their own `process_index` and read disjoint parts
    that together cover the split once per epoch:

    - shard-level (when the split has at least `process_count` shards): the shard list, in
      manifest order, is permuted with `seed` (the same permutation in every process, whether
      or not `shuffle` is set) and process `i` reads shards `i, i + count, i + 2 * count, ...`
      of it. Each shard is read by one process only.
    - example-level (fewer shards than processes, e.g. a one-shard validation split): every
      process reads every shard and keeps the records at positions `i, i + count, ...` of the
      fixed read order (`Dataset.shard`). Correct but every process reads the whole split;
      ingest with more shards to avoid it. Logged as a warning.

    The per-process parts differ in size by up to one shard (shard-level) or one example
    (example-level); the caller decides how to step processes in lock-step.

    Args:
        split: `train`, `validation`, `test` or `unlabeled` (labels -1), or a list of splits
            read as one (e.g. `["train", "unlabeled"]`).
        shuffle: shuffle shard order and examples, seeded by `seed`, a new order each epoch
            (the sequence of orders is fixed by `seed`). The buffer holds `shuffle_buffer`
            examples or `shuffle_buffer_bytes` of records (the split's mean record size),
            whichever is fewer, at least one.
        repeat: repeat forever.
        cache: keep the (first epoch's) records in memory.
        image_size: `(height, width)` to resize to (bilinear, antialiased, rounded to uint8).
        limit: at most this many examples (the first ones of the fixed read order: with
            `limit`, shard order is not shuffled, so every epoch sees the same subset).
        deterministic: fixed element order (None = True), so that a seeded shuffle repeats
            exactly; False lets parallel readers and decoders hand over out of order.
        verify: check shards against the manifest before reading: True = sha256, False =
            sizes only, None = sha256 when the split's shards total at most 512 MiB.
        process_index: this process's index in `[0, process_count)`.
        process_count: number of processes sharing the split, >= 1.
        labelled_ids: few labels: only the records with these ids keep their label, the
            others read as -1 (`labelled_subset_ids`); None: every label as stored.
        drop_unlabelled: with `labelled_ids`, leave the other records out instead (after
            `limit`); the records kept are cached in memory when they fit the shuffle buffer
            (they are then read from the files once, not every epoch).
        with_ids: also give each batch's record ids (to name an example: its file for a
            folder source, `<split>/<position>` for arrays).

    The dataset's cardinality (`len()`) is set when it is finite: the batches of this
    process's examples.

    Raises:
        DatasetIncompleteError, CorruptShardError (naming the shard), DataError.
    """
    uri = storage.strip_trailing_slash(uri)
    manifest = read_manifest(uri)
    splits = [split] if isinstance(split, str) else list(split)
    if not splits:
        raise DataError(f"split must name at least one split. Received: split={split!r}")
    entries = [_split_entry(manifest, name, uri) for name in splits]
    for name, value in (
        ("batch_size", batch_size),
        ("shuffle_buffer", shuffle_buffer),
        ("shuffle_buffer_bytes", shuffle_buffer_bytes),
        ("process_count", process_count),
    ):
        validation.check_int(name, value, error=DataError)
    if not isinstance(process_index, (int, np.integer)) or not 0 <= process_index < process_count:
        raise DataError(
            f"process_index must be an integer in [0, process_count={process_count}). "
            f"Received: process_index={process_index!r}"
        )
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"limit must be an integer >= 1 or None. Received: limit={limit!r}")
    image_size = parse_image_size(image_size)
    if deterministic is None:
        deterministic = True
    if verify is None:
        total = sum(shard["num_bytes"] for entry in entries for shard in entry["shards"])
        verify = total <= AUTO_VERIFY_MAX_BYTES
    verify_shards(uri, splits, checksums=verify, manifest=manifest)

    shards = [shard for entry in entries for shard in entry["shards"]]
    selected, example_level = process_shards(len(shards), process_index, process_count, seed)
    if example_level:
        log.warning(
            "%s %s: %d shard(s) for %d processes; every process reads every shard and keeps "
            "every %d-th record (ingest with more shards to split the reading)",
            uri,
            "+".join(splits),
            len(shards),
            process_count,
            process_count,
        )
    shards = [shards[index] for index in selected]
    count = sum(int(shard.get("num_examples", -1)) for shard in shards)
    if any(int(shard.get("num_examples", -1)) < 0 for shard in shards):
        count = -1  # an older manifest without per-shard counts: length unknown
    elif example_level:
        count = len(range(process_index, count, process_count))
    record_bytes = _mean_record_bytes(entries)
    shuffle_buffer = max(1, min(shuffle_buffer, shuffle_buffer_bytes // record_bytes))
    chunk = max(1, min(_READ_CHUNK, _READ_CHUNK_BYTES // record_bytes))
    paths = [storage.join(uri, shard["path"]) for shard in shards]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle and limit is None:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # Each reader hands over chunks of records, not single records: a parallel interleave
    # passes elements between threads one at a time, which costs more than reading a record.
    # Chunks stay under ~1 MiB, so that large images do not multiply the memory in flight.
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path).batch(chunk),
        cycle_length=min(len(paths), _MAX_PARALLEL_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic or example_level,
    ).unbatch()
    if example_level:
        records = records.shard(process_count, process_index)
    if limit is not None:
        records = records.take(limit)
        count = limit if count < 0 else min(limit, count)
    kept = None
    if labelled_ids is not None:
        kept = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(labelled_ids) or [""], tf.string),
                tf.ones([max(1, len(labelled_ids))], tf.int64),
            ),
            default_value=0,
        )
    if kept is not None and drop_unlabelled:
        records = records.filter(lambda record: kept.lookup(_record_id(record)) > 0)
        count = -1  # the caller knows the subset's size
        cache = cache or len(labelled_ids) <= shuffle_buffer  # a small subset: read once
    if cache:
        records = records.cache()
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    decode = functools.partial(
        _decode_batch,
        image_shape=tuple(manifest["image_shape"]),
        raw_only=all(set(entry.get("formats", {})) == {"raw"} for entry in entries),
        image_size=image_size,
        kept=kept,
        with_ids=with_ids,
    )
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    if not repeat and count >= 0:
        steps = count // batch_size if drop_remainder else -(-count // batch_size)
        batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    return batches.map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    ).prefetch(tf.data.AUTOTUNE)


def _mean_record_bytes(entries: list[dict]) -> int:
    total = sum(shard["num_bytes"] for entry in entries for shard in entry["shards"])
    count = sum(entry["num_examples"] for entry in entries)
    return max(1, total // max(1, count))


def process_shards(
    num_shards: int, process_index: int, process_count: int, seed: int = 0
) -> tuple[list[int], bool]:
    """The shard indices process `process_index` of `process_count` reads (see `read_split`).

    Returns:
        `(indices, example_level)`: with at least `process_count` shards, the process's own
        shards (a `seed`-permuted round robin) and False; with fewer, every shard and True
        (the caller then keeps every `process_count`-th record).
    """
    if process_count == 1:
        return list(range(num_shards)), False
    if num_shards < process_count:
        return list(range(num_shards)), True
    order = np.random.default_rng(seed).permutation(num_shards)
    return sorted(int(index) for index in order[process_index::process_count]), False


def _record_id(record):
    return tf.io.parse_single_example(record, {"id": FEATURE_SPEC["id"]})["id"]


def _decode_batch(serialized, *, image_shape, raw_only, image_size, kept=None, with_ids=False):
    features = tf.io.parse_example(serialized, FEATURE_SPEC)
    labels = features["label"]
    if kept is not None:  # few labels: the records outside the subset lose theirs
        labels = tf.where(kept.lookup(features["id"]) > 0, labels, tf.constant(-1, tf.int64))
    height, width, channels = image_shape
    if raw_only:
        images = tf.io.decode_raw(features["image"], tf.uint8)
        images = tf.reshape(images, [-1, height, width, channels])
        images.set_shape([serialized.shape[0], height, width, channels])  # keep a static batch
    else:

        def decode_one(args):
            data, image_format = args
            return tf.cond(
                tf.equal(image_format, b"raw"),
                lambda: tf.reshape(tf.io.decode_raw(data, tf.uint8), [height, width, channels]),
                lambda: tf.ensure_shape(
                    tf.io.decode_image(data, channels=channels, expand_animations=False),
                    [height, width, channels],
                ),
            )

        images = tf.map_fn(
            decode_one,
            (features["image"], features["format"]),
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8),
        )
    if image_size is not None and tuple(image_size) != (height, width):
        images = tf.image.resize(images, image_size, method="bilinear", antialias=True)
        images = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    return (images, labels, features["id"]) if with_ids else (images, labels)


def load_arrays(uri: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A whole split in memory: `(x uint8 [N, H, W, C], y int64 [N])`.

    The order is fixed (shard order, interleaved in chunks of 128 records when the split has
    several shards); `limit` keeps the first examples of that order.
    """
    manifest = read_manifest(uri)
    entry = _split_entry(manifest, split, uri)
    count = entry["num_examples"] if limit is None else min(limit, entry["num_examples"])
    images = np.empty([count, *manifest["image_shape"]], np.uint8)
    labels = np.empty([count], np.int64)
    filled = 0
    dataset = read_split(uri, split, _LOAD_BATCH, limit=limit, deterministic=True)
    with naming_damage(uri):
        for image_batch, label_batch in dataset.as_numpy_iterator():
            images[filled : filled + len(label_batch)] = image_batch
            labels[filled : filled + len(label_batch)] = label_batch
            filled += len(label_batch)
    if filled != count:
        verify_shards(uri, [split], manifest=manifest)  # names the shard, if one is at fault
        raise CorruptShardError(
            f"corrupt dataset {storage.join(uri, MANIFEST_NAME)}: split {split} holds {filled} "
            f"records, the manifest says {count}"
        )
    return images, labels


@dataclass
class TrainingData:
    """The train (and validation) data of a step, with the dataset's description.

    `train` / `validation` are `(x uint8 [N, H, W, C], y int64 [N])` NumPy pairs
    (`load_training_data`) or finite `tf.data` datasets of such batches
    (`stream_training_data`); unlabeled images carry label -1. `num_train` /
    `num_validation` count their examples either way.
    """

    train: Any
    validation: Any
    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    manifest: dict
    num_train: int = 0
    num_validation: int = 0
    # Whole batches only (data-parallel): examples each epoch leaves out, per split.
    dropped_per_epoch: dict = dataclasses.field(default_factory=dict)
    # Labelled train examples of each class the step sees (its labelled subset with few
    # labels), from the manifest or index.parquet; None when the dataset does not say.
    class_counts: list[int] | None = None


def load_training_data(
    uri: str, *, limit: int | None = None, include_unlabeled: bool = False
) -> TrainingData:
    """Load the train (and validation) split of a committed dataset into memory.

    For small datasets, notebooks and tests; the pipeline's steps stream instead
    (`stream_training_data`).

    Args:
        uri: the dataset (a folder or gs:// prefix with a `manifest.json`).
        limit: at most this many examples per split; None = all.
        include_unlabeled: append the `unlabeled` split to train, with label -1.
    """
    manifest = read_manifest(uri)
    x, y = load_arrays(uri, "train", limit=limit)
    splits = manifest["splits"]
    if include_unlabeled and splits.get("unlabeled", {}).get("num_examples", 0):
        xu, _ = load_arrays(uri, "unlabeled", limit=limit)
        x = np.concatenate([x, xu])
        y = np.concatenate([y, np.full(len(xu), -1, dtype=y.dtype)])
    validation = None
    if splits.get("validation", {}).get("num_examples", 0):
        validation = load_arrays(uri, "validation", limit=limit)
    return TrainingData(
        train=(x, y),
        validation=validation,
        num_classes=int(manifest["num_classes"]),
        class_names=list(manifest["class_names"]),
        image_shape=tuple(manifest["image_shape"]),
        manifest=manifest,
        num_train=len(y),
        num_validation=0 if validation is None else len(validation[1]),
    )


def stream_training_data(
    uri: str,
    *,
    batch_size: int,
    seed: int = 0,
    limit: int | None = None,
    include_unlabeled: bool = False,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    shuffle_buffer_bytes: int = DEFAULT_SHUFFLE_BUFFER_BYTES,
    process_index: int = 0,
    process_count: int = 1,
    labeled_fraction: float = 1.0,
    labelled_only: bool = False,
    labeled_steps_per_epoch: int = 0,
    min_steps_per_epoch: int = 0,
    whole_batches: bool = False,
    labeled_per_class: int = 0,
) -> TrainingData:
    """The train (and validation) split of a committed dataset as streaming `tf.data` inputs.

    Train: shuffled (bounded buffer `shuffle_buffer`, a new seeded order each epoch), batched
    by `batch_size`, prefetched, finite (one pass = one epoch; `len()` is its batch count).
    Validation: in file order, same batch size. Memory does not grow with the dataset.

    Args:
        uri: the dataset (a folder or gs:// prefix with a `manifest.json`).
        batch_size: examples per batch.
        seed: seed of the shuffles.
        limit: at most this many examples per split (the first of the fixed read order, the
            same subset as `load_training_data`); None = all.
        include_unlabeled: read the `unlabeled` split with train (labels -1); with `limit`,
            `limit` examples of each.
        shuffle_buffer, shuffle_buffer_bytes: the train shuffle holds at most this many
            examples and this many bytes of records (see `read_split`).
        process_index, process_count: data-parallel training over several processes: this
            process reads its own part of each split (`read_split`), `batch_size` is its
            share of the global batch, and every process yields the same number of full
            batches per epoch, `examples // (batch_size * process_count)` (a collective step
            waits for every process, so the counts must agree); a part shorter than that
            wraps around.
        labeled_fraction: few labels, in `(0, 1]`: only the train split's stratified,
            `seed`-drawn subset of this fraction keeps its labels (`labelled_subset_ids`);
            the others are read as unlabelled (-1), or left out with `labelled_only`.
        labelled_only: train holds the labelled subset only (a cross-entropy step): one
            epoch is one pass over it, repeated up to `labeled_steps_per_epoch` batches when
            a pass is shorter (`splits.subset_epoch_examples`); `num_train` counts it.
        min_steps_per_epoch: an epoch over train holds at least this many batches: a
            shorter pass is repeated, reshuffled, to fill them (`num_train` counts the
            examples of one epoch); 0 = one pass.
        labeled_per_class: with `labeled_fraction` < 1 and not `labelled_only` (SupCon at
            few labels): every train batch ends with this many labelled images of each
            class that has some (`class_balanced_subset`), the rest of the batch drawn from
            the pool as without it; the epoch keeps its number of batches.
    """
    manifest = read_manifest(uri)
    splits = manifest["splits"]
    subset = None
    class_counts = splits.get("train", {}).get("class_counts")
    if labeled_fraction < 1:
        subset, class_counts = _labelled_subset(uri, labeled_fraction, seed, manifest)

    def size(name: str) -> int:
        count = splits.get(name, {}).get("num_examples", 0)
        return count if limit is None else min(limit, count)

    def read(name: str, **options):
        dataset = read_split(
            uri,
            name,
            batch_size,
            limit=limit,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            drop_remainder=whole_batches and process_count == 1,
            **options,
        )
        if process_count == 1:
            return dataset
        steps = size(name) // (batch_size * process_count)
        return (
            dataset.unbatch()
            .repeat()
            .batch(batch_size, drop_remainder=True)
            .take(steps)
            .apply(tf.data.experimental.assert_cardinality(steps))
            .prefetch(tf.data.AUTOTUNE)
        )

    shuffling = {
        "shuffle": True,
        "shuffle_buffer": shuffle_buffer,
        "shuffle_buffer_bytes": shuffle_buffer_bytes,
    }
    whole = whole_batches or process_count > 1
    if subset is None:
        train, num_train = read("train", **shuffling), size("train")
        if min_steps_per_epoch and num_train:
            train, num_train = _filled_epochs(
                train, num_train, batch_size, process_count, min_steps_per_epoch, whole=whole
            )
    elif labelled_only:
        min_steps = max(labeled_steps_per_epoch, min_steps_per_epoch)
        train, num_train = _labelled_subset_epochs(
            read,
            subset,
            limit,
            batch_size,
            process_count,
            min_steps,
            shuffling,
            whole=whole,
        )
    else:
        train = read("train", labelled_ids=subset, **shuffling)
        num_train = size("train")
    if include_unlabeled and size("unlabeled"):
        unlabeled = read("unlabeled", **shuffling)
        # Draw examples from both streams at random (seeded), in proportion to their sizes:
        # batches mix labelled and unlabelled images, and each epoch covers both once.
        mixed = tf.data.Dataset.sample_from_datasets(
            [train.unbatch(), unlabeled.unbatch()],
            weights=[float(num_train), float(size("unlabeled"))],
            seed=seed,
            stop_on_empty_dataset=False,
        )
        num_train += size("unlabeled")
        steps = -(-num_train // batch_size)
        if whole:  # equal full batches on every process (see above)
            steps = num_train // (batch_size * process_count)
            mixed = mixed.repeat().take(steps * batch_size)
        train = (
            mixed.batch(batch_size)
            .apply(tf.data.experimental.assert_cardinality(steps))
            .prefetch(tf.data.AUTOTUNE)
        )
    if labeled_per_class and subset is not None and not labelled_only:
        train = with_balanced_labels(
            train,
            class_balanced_subset(
                uri, subset, labeled_per_class, seed=seed + process_index, limit=limit
            ),
            batch_size,
        )
    validation = None
    full_batches = size("validation") // (batch_size * process_count)
    if size("validation") and (not whole or full_batches):
        validation = read("validation")
    dropped = {}
    if whole:
        global_batch = batch_size * process_count
        dropped = {"train": num_train % global_batch, "validation": size("validation")}
        if validation is not None:
            dropped["validation"] = size("validation") % global_batch
    return TrainingData(
        train=train,
        validation=validation,
        num_classes=int(manifest["num_classes"]),
        class_names=list(manifest["class_names"]),
        image_shape=tuple(manifest["image_shape"]),
        manifest=manifest,
        num_train=num_train,
        num_validation=size("validation"),
        dropped_per_epoch=dropped,
        class_counts=None if class_counts is None else [int(c) for c in class_counts],
    )


def labelled_subset_ids(
    uri: str, fraction: float, seed: int, *, manifest: dict | None = None
) -> list[str]:
    """The ids of the train records that keep their label when a step sees `fraction` of the
    labels: `splits.labeled_subset` of the train split's labels in `index.parquet` (its row
    order), so stratified, seeded and nested across fractions."""
    return _labelled_subset(uri, fraction, seed, manifest)[0]


def _labelled_subset(
    uri: str, fraction: float, seed: int, manifest: dict | None
) -> tuple[list[str], np.ndarray]:
    """`labelled_subset_ids` and the subset's labelled examples per class."""
    import pyarrow.compute as pc

    from contrastive.data.splits import labeled_subset

    uri = storage.strip_trailing_slash(uri)
    manifest = manifest or read_manifest(uri)
    index_path = storage.join(uri, manifest.get("index", "index.parquet"))
    if not storage.exists(index_path):
        raise DataError(
            f"{uri} has no {index_path.rsplit('/', 1)[-1]}: a labelled subset "
            f"(labeled_fraction={fraction}) is drawn from it; ingest the dataset again"
        )
    table = _read_index(index_path, ["id", "split", "label"])
    table = table.filter(pc.equal(table["split"], "train"))
    labels = table["label"].to_numpy()
    ids = table["id"].to_pylist()
    chosen = labeled_subset(labels, fraction, seed)
    counts = np.bincount(labels[chosen][labels[chosen] >= 0], minlength=manifest["num_classes"])
    return [ids[position] for position in chosen], counts


# The labelled subset `class_balanced_subset` holds in memory, at most.
BALANCED_SUBSET_MAX_BYTES = 512 << 20


def class_balanced_subset(
    uri: str,
    subset: Sequence[str],
    per_class: int,
    *,
    seed: int = 0,
    limit: int | None = None,
) -> tf.data.Dataset:
    """An endless stream of batches of the train split's labelled `subset` (record ids), each
    `per_class` images of every class that has labelled images, class by class; each
    class's images are dealt in a new `seed`-seeded order on every pass over them.

    The subset is read once into memory (at most `BALANCED_SUBSET_MAX_BYTES` of images).

    Raises:
        DataError: the subset is empty, or too large to hold.
    """
    validation.check_int("train.labeled_per_class", per_class, minimum=1, error=DataError)
    manifest = read_manifest(uri)
    image_shape = tuple(manifest["image_shape"])
    count = len(subset) if limit is None else min(len(subset), limit)
    needed = count * int(np.prod(image_shape))
    if needed > BALANCED_SUBSET_MAX_BYTES:
        raise DataError(
            f"train.labeled_per_class={per_class} holds the labelled subset in memory: "
            f"{count} images of {image_shape} are {needed >> 20} MiB, more than "
            f"{BALANCED_SUBSET_MAX_BYTES >> 20} MiB; lower train.labeled_fraction or set "
            "train.labeled_per_class=0"
        )
    images, labels = [], []
    for image_batch, label_batch in read_split(
        uri, "train", _LOAD_BATCH, limit=limit, labelled_ids=subset, drop_unlabelled=True
    ):
        images.append(image_batch.numpy())
        labels.append(label_batch.numpy())
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
    if labels.size == 0:
        raise DataError(f"the labelled subset of {uri} is empty; raise train.labeled_fraction")
    return balanced_batches(np.concatenate(images), labels, per_class, seed=seed)


def _labelled_subset_epochs(
    read, subset, limit, batch_size, process_count, min_steps, shuffling, *, whole=False
):
    """The train split's labelled subset as finite epochs: `(dataset, examples an epoch)`;
    `whole`: whole batches only."""
    count = len(subset) if limit is None else min(len(subset), limit)
    records = read("train", labelled_ids=subset, drop_unlabelled=True, **shuffling)
    if count == 0:
        raise DataError("the labelled subset is empty; raise train.labeled_fraction")
    # With `limit` the subset's members among the first records are fewer than `count`;
    # repeating keeps every epoch the same length either way.
    return _filled_epochs(
        records, count, batch_size, process_count, min_steps, whole=whole, always=True
    )


def _filled_epochs(
    records, count, batch_size, process_count, min_steps, *, whole=False, always=False
):
    """`records` (batches of a pass over `count` examples) as epochs of at least `min_steps`
    batches, the pass repeated to fill them: `(dataset, examples an epoch)`; `whole`: whole
    batches only. A pass already long enough is returned as it is, unless `always`."""
    from contrastive.data.splits import subset_epoch_examples

    examples = subset_epoch_examples(count, batch_size * process_count, min_steps)
    if examples == count and not always:
        return records, count
    steps = examples // (batch_size * process_count) if whole else -(-examples // batch_size)
    train = (
        records.unbatch()
        .repeat()
        .take(steps * batch_size if whole else examples)
        .batch(batch_size, drop_remainder=whole)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .prefetch(tf.data.AUTOTUNE)
    )
    return train, examples


def sample_arrays(
    uri: str, split: str, count: int, *, labelled: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """At most `count` examples of a split in memory (the first of its fixed read order).

    A bounded sample for the kNN monitor and the embedding map: it reads only as many
    records as it keeps (plus the unlabelled ones it skips when `labelled`).
    """
    validation.check_int("count", count, error=DataError)
    manifest = read_manifest(uri)
    image_shape = manifest["image_shape"]
    images = np.empty([count, *image_shape], np.uint8)
    labels = np.empty([count], np.int64)
    filled = 0
    for image_batch, label_batch in read_split(uri, split, min(count, _LOAD_BATCH)):
        image_batch, label_batch = image_batch.numpy(), label_batch.numpy()
        if labelled:
            keep = label_batch >= 0
            image_batch, label_batch = image_batch[keep], label_batch[keep]
        take = min(count - filled, len(label_batch))
        images[filled : filled + take] = image_batch[:take]
        labels[filled : filled + take] = label_batch[:take]
        filled += take
        if filled == count:
            break
    return images[:filled], labels[:filled]


def dataset_info(uri: str) -> dict:
    """A summary: source, classes, image shape, and per split counts, shards, bytes, labels."""
    uri = storage.strip_trailing_slash(uri)
    manifest = read_manifest(uri)
    label_counts: dict[str, dict[str, int]] = {}
    index_path = storage.join(uri, manifest.get("index", "index.parquet"))
    if storage.exists(index_path):
        table = _read_index(index_path, ["split", "label"])
        names = manifest["class_names"]
        grouped = table.group_by(["split", "label"]).aggregate([("label", "count")])
        grouped = grouped.sort_by([("label", "ascending")])
        columns = (grouped[name].to_pylist() for name in ("split", "label", "label_count"))
        for split, label, count in zip(*columns, strict=True):
            name = names[label] if label >= 0 else "(unlabeled)"
            label_counts.setdefault(split, {})[name] = count
    return {
        "uri": uri,
        "source": manifest["source"],
        "created_at": manifest["created_at"],
        "num_classes": manifest["num_classes"],
        "class_names": manifest["class_names"],
        "image_shape": manifest["image_shape"],
        "splits": {
            name: {
                "num_examples": entry["num_examples"],
                "num_shards": len(entry["shards"]),
                "num_bytes": sum(shard["num_bytes"] for shard in entry["shards"]),
                "formats": entry.get("formats", {}),
                "label_counts": label_counts.get(name, {}),
            }
            for name, entry in manifest["splits"].items()
        },
        "skipped": len(manifest["skipped"]),
        "duplicates": manifest.get("duplicates", {}),
    }


def _read_index(path: str, columns: list[str]):
    """Columns of a dataset's `index.parquet` as a pyarrow Table; CorruptShardError naming
    the file when it is not a readable Parquet file with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(storage.read_bytes(path)), columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise CorruptShardError(
            f"corrupt dataset: {path} is not a readable index ({type(error).__name__}: {error})"
        ) from None


def _split_entry(manifest: dict, split: str, uri: str) -> dict:
    if split not in manifest["splits"]:
        raise DataError(f"{uri} has no split {split!r}; it has {sorted(manifest['splits'])}")
    return manifest["splits"][split]


def knn_sample(uri: str, count: int):
    """`(train_x, train_y, validation_x, validation_y)`: at most `count` labelled images of
    train and of validation (the first of their read order) for a kNN figure; None when the
    dataset has no validation split."""
    manifest = read_manifest(uri)
    if not manifest["splits"].get("validation", {}).get("num_examples", 0):
        return None
    return (*sample_arrays(uri, "train", count), *sample_arrays(uri, "validation", count))
