"""Data ingest and streaming input (the one TensorFlow-using part of the library).

`ingest` turns a source (Fashion-MNIST, IDX, TFDS, npz, an image folder) into sharded TFRecords
with an `index.parquet` and a `manifest.json` committed last; `read_split` streams a split as
`tf.data` batches of `(uint8 images [B, H, W, C], int64 labels [B])` (per process with
`process_index` / `process_count`); `stream_training_data` gives a training step its streamed
train and validation splits, `sample_arrays` a bounded sample; `load_arrays` loads a split
into memory (small data, tests). Paths may be local or `gs://` throughout.

The package imports lazily: `contrastive.data.splits`, `sources`, `images` and `errors` are
NumPy-only and import without TensorFlow (the benchmarks reuse them); the names below load
their module (and TensorFlow, for the reader and the ingest) on first use.
"""

import importlib

_EXPORTS = {
    "CorruptShardError": "errors",
    "DataError": "errors",
    "DatasetIncompleteError": "errors",
    "FORMAT_VERSION": "ingestion",
    "dataset_digest": "commit",
    "copy_ingested": "ingestion",
    "ingest": "ingestion",
    "is_ingested": "ingestion",
    "parse_image_size": "ingestion",
    "TrainingData": "reader",
    "dataset_info": "reader",
    "load_arrays": "reader",
    "load_training_data": "reader",
    "naming_damage": "reader",
    "process_shards": "reader",
    "sample_arrays": "reader",
    "knn_sample": "reader",
    "stream_training_data": "reader",
    "read_manifest": "reader",
    "read_split": "reader",
    "verify_shards": "reader",
    "FASHION_MNIST_CLASSES": "sources",
    "FASHION_MNIST_DIR": "sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
