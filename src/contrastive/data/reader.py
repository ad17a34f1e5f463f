"""Reading a committed dataset: manifest, `tf.data` pipelines, in-memory arrays, checks.

Shards are read where they are (local or `gs://`, through TensorFlow's filesystems); nothing
is copied to local disk.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from contrastive import storage, validation
from contrastive.data.errors import CorruptShardError, DataError, DatasetIncompleteError
from contrastive.data.ingestion import FORMAT_VERSION, MANIFEST_NAME, parse_image_size
from contrastive.data.records import FEATURE_SPEC

SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
# `verify=None` checksums a split's shards when they total at most this much (~0.3 s a GiB
# locally); larger splits get the cheap size check only.
AUTO_VERIFY_MAX_BYTES = 512 << 20
DEFAULT_SHUFFLE_BUFFER = 10_000
_MAX_PARALLEL_SHARDS = 16
_LOAD_BATCH = 4096
_READ_CHUNK = 128


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
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise DataError(
            f"{path}: format_version={version!r} is not supported by this reader (supported: "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}); upgrade contrastive or ingest again"
        )
    return manifest


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
    checked = 0
    for split in splits or list(manifest["splits"]):
        for shard in _split_entry(manifest, split, uri)["shards"]:
            path = storage.join(uri, shard["path"])
            if not storage.exists(path):
                raise CorruptShardError(f"corrupt dataset {uri}: shard {path} is missing")
            size = storage.file_size(path)
            if size != shard["num_bytes"]:
                raise CorruptShardError(
                    f"corrupt shard {path}: {size} bytes, the manifest says {shard['num_bytes']} "
                    "(truncated or replaced)"
                )
            if checksums and storage.sha256_file(path) != shard["sha256"]:
                raise CorruptShardError(
                    f"corrupt shard {path}: sha256 differs from the manifest (damaged or replaced)"
                )
            checked += 1
    return checked


def read_split(
    uri: str,
    split: str,
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
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(images uint8 [B, H, W, C], labels int64 [B])` batches.

    Pipeline: shard list (shuffled when `shuffle`) -> parallel interleave of TFRecord readers
    -> `limit` -> `cache` (serialized records, in memory) -> `shuffle` -> `repeat` -> batch ->
    one `parse_example` per batch + decode (raw bytes: one reshape; PNG/JPEG: per image) ->
    resize -> prefetch.

    Args:
        split: `train`, `validation`, `test` or `unlabeled` (labels -1).
        shuffle: shuffle shard order and examples (buffer `shuffle_buffer`), seeded by `seed`,
            reshuffled each epoch.
        repeat: repeat forever.
        cache: keep the (first epoch's) records in memory.
        image_size: `(height, width)` to resize to (bilinear, antialiased, rounded to uint8).
        limit: at most this many examples (the first ones in read order).
        deterministic: fixed element order (None = True), so that a seeded shuffle repeats
            exactly; False lets parallel readers and decoders hand over out of order.
        verify: check shards against the manifest before reading: True = sha256, False =
            sizes only, None = sha256 when the split's shards total at most 512 MiB.

    Raises:
        DatasetIncompleteError, CorruptShardError (naming the shard), DataError.
    """
    uri = storage.strip_trailing_slash(uri)
    manifest = read_manifest(uri)
    entry = _split_entry(manifest, split, uri)
    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        validation.check_int(name, value, error=DataError)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"limit must be an integer >= 1 or None. Received: limit={limit!r}")
    image_size = parse_image_size(image_size)
    if deterministic is None:
        deterministic = True
    if verify is None:
        verify = sum(shard["num_bytes"] for shard in entry["shards"]) <= AUTO_VERIFY_MAX_BYTES
    verify_shards(uri, [split], checksums=verify, manifest=manifest)

    paths = [storage.join(uri, shard["path"]) for shard in entry["shards"]]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # Each reader hands over chunks of records, not single records: a parallel interleave
    # passes elements between threads one at a time, which costs more than reading a record.
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path).batch(_READ_CHUNK),
        cycle_length=min(len(paths), _MAX_PARALLEL_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    ).unbatch()
    if limit is not None:
        records = records.take(limit)
    if cache:
        records = records.cache()
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    decode = functools.partial(
        _decode_batch,
        image_shape=tuple(manifest["image_shape"]),
        raw_only=set(entry.get("formats", {})) == {"raw"},
        image_size=image_size,
    )
    return (
        records.batch(batch_size, drop_remainder=drop_remainder)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        .prefetch(tf.data.AUTOTUNE)
    )


def _decode_batch(serialized, *, image_shape, raw_only, image_size):
    features = tf.io.parse_example(serialized, FEATURE_SPEC)
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
    return images, features["label"]


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
    for image_batch, label_batch in dataset.as_numpy_iterator():
        images[filled : filled + len(label_batch)] = image_batch
        labels[filled : filled + len(label_batch)] = label_batch
        filled += len(label_batch)
    if filled != count:
        raise CorruptShardError(
            f"{uri}: split {split} holds {filled} records, the manifest says {count}"
        )
    return images, labels


@dataclass
class TrainingData:
    """In-memory splits (uint8 images, int64 labels; unlabeled images carry label -1)."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None
    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    manifest: dict


def load_training_data(
    uri: str, *, limit: int | None = None, include_unlabeled: bool = False
) -> TrainingData:
    """Load the train (and validation) split of a committed dataset into memory.

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
    )


def dataset_info(uri: str) -> dict:
    """A summary: source, classes, image shape, and per split counts, shards, bytes, labels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri = storage.strip_trailing_slash(uri)
    manifest = read_manifest(uri)
    label_counts: dict[str, dict[str, int]] = {}
    index_path = storage.join(uri, manifest.get("index", "index.parquet"))
    if storage.exists(index_path):
        buffer = pa.BufferReader(storage.read_bytes(index_path))
        table = pq.read_table(buffer, columns=["split", "label"])
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


def _split_entry(manifest: dict, split: str, uri: str) -> dict:
    if split not in manifest["splits"]:
        raise DataError(f"{uri} has no split {split!r}; it has {sorted(manifest['splits'])}")
    return manifest["splits"][split]
