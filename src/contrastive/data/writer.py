"""TFRecord shards of one split: where each record goes, and the writer that puts it there.

One rule decides the shards, whichever engine writes them: records are taken in plan order
and a new shard starts when the current one would pass `shard_size_bytes`
(`starts_new_shard`). `ShardWriter` applies it while streaming (the in-process ingest);
`shard_starts` applies it to a list of record sizes (the Beam ingest, which writes each shard
on a worker), so both give the same shards, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from contrastive import storage

# TFRecord framing per record: length (8 bytes) + its CRC (4) + data + data CRC (4).
RECORD_OVERHEAD_BYTES = 16


def shard_path(split: str, number: int) -> str:
    """`train/train-00000.tfrecord`: a shard's path relative to the dataset (or staging) root."""
    return f"{split}/{split}-{number:05d}.tfrecord"


def starts_new_shard(open_bytes: int, record_bytes: int, shard_size_bytes: int) -> bool:
    """Whether a record of `record_bytes` (framing included) goes to a new shard, given an open
    shard of `open_bytes` (0: none open yet, so the record starts the first)."""
    return open_bytes > 0 and open_bytes + record_bytes > shard_size_bytes


def shard_starts(record_sizes: Iterable[int], shard_size_bytes: int) -> list[int]:
    """Positions (into the plan-ordered records, of serialized sizes `record_sizes`) at which
    a shard begins: `[0, ...]`, or `[]` for no records. `ShardWriter`'s rule."""
    starts, open_bytes = [], 0
    for position, size in enumerate(record_sizes):
        size += RECORD_OVERHEAD_BYTES
        if not starts or starts_new_shard(open_bytes, size, shard_size_bytes):
            starts.append(position)
            open_bytes = 0
        open_bytes += size
    return starts


def finish_shard(root: str, path: str, num_examples: int, expected_bytes: int) -> dict:
    """`{path, num_examples, num_bytes, sha256}` of a closed shard at `<root>/<path>`, read back
    once to take its sha256 (and to prove it landed whole on the store)."""
    full_path = storage.join(root, path)
    size = storage.file_size(full_path)
    if size != expected_bytes:
        raise OSError(f"{full_path}: wrote {expected_bytes} bytes but the store holds {size}")
    return {
        "path": path,
        "num_examples": num_examples,
        "num_bytes": size,
        "sha256": storage.sha256_file(full_path),
    }


def write_shard(root: str, path: str, records: Iterable[bytes]) -> dict:
    """Write `records` as one shard at `<root>/<path>`; returns `finish_shard`'s entry."""
    storage.makedirs(storage.join(root, path.rsplit("/", 1)[0]))
    count = total = 0
    with tf.io.TFRecordWriter(storage.join(root, path)) as stream:
        for record in records:
            stream.write(record)
            count += 1
            total += len(record) + RECORD_OVERHEAD_BYTES
    return finish_shard(root, path, count, total)


class ShardWriter:
    """Writes one split's records to `<root>/<split>/<split>-NNNNN.tfrecord`, streaming.

    A new shard starts when the current one would pass `shard_size_bytes`
    (`starts_new_shard`).
    """

    def __init__(self, root: str, split: str, shard_size_bytes: int):
        self._root = root
        self._split = split
        self._shard_size_bytes = shard_size_bytes
        self._writer: tf.io.TFRecordWriter | None = None
        self._shards: list[dict] = []
        self._path = ""
        self._count = 0
        self._bytes = 0
        storage.makedirs(storage.join(root, split))

    def write(self, record: bytes) -> tuple[str, int]:
        """Append one serialized record; returns (shard path relative to root, record number)."""
        size = len(record) + RECORD_OVERHEAD_BYTES
        if self._writer is not None and starts_new_shard(self._bytes, size, self._shard_size_bytes):
            self._close_shard()
        if self._writer is None:
            self._path = shard_path(self._split, len(self._shards))
            self._writer = tf.io.TFRecordWriter(storage.join(self._root, self._path))
        self._writer.write(record)
        number = self._count
        self._count += 1
        self._bytes += size
        return self._path, number

    def close(self) -> list[dict]:
        """Close the last shard; returns `[{path, num_examples, num_bytes, sha256}]`."""
        if self._writer is not None:
            self._close_shard()
        return self._shards

    def _close_shard(self) -> None:
        self._writer.close()
        self._writer = None
        self._shards.append(finish_shard(self._root, self._path, self._count, self._bytes))
        self._count = 0
        self._bytes = 0
