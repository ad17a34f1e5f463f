"""Rolling TFRecord shard writer for one split."""

from __future__ import annotations

import tensorflow as tf

from contrastive import storage

# TFRecord framing per record: length (8 bytes) + its CRC (4) + data + data CRC (4).
_RECORD_OVERHEAD_BYTES = 16


class ShardWriter:
    """Writes one split's records to `<root>/<split>/<split>-NNNNN.tfrecord`.

    A new shard starts when the current one would pass `shard_size_bytes`. Each closed shard is
    read back once to take its sha256 (and to prove it landed whole on the store).
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
        size = len(record) + _RECORD_OVERHEAD_BYTES
        if self._writer is not None and self._bytes + size > self._shard_size_bytes:
            self._close_shard()
        if self._writer is None:
            self._path = f"{self._split}/{self._split}-{len(self._shards):05d}.tfrecord"
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
        full_path = storage.join(self._root, self._path)
        size = storage.file_size(full_path)
        if size != self._bytes:
            raise OSError(f"{full_path}: wrote {self._bytes} bytes but the store holds {size}")
        self._shards.append(
            {
                "path": self._path,
                "num_examples": self._count,
                "num_bytes": size,
                "sha256": storage.sha256_file(full_path),
            }
        )
        self._count = 0
        self._bytes = 0
