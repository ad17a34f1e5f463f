"""Data ingest and streaming input (the one TensorFlow-using part of the library).

`ingest` turns a source (Fashion-MNIST, IDX, TFDS, npz, an image folder) into sharded TFRecords
with an `index.parquet` and a `manifest.json` committed last; `read_split` streams a split as
`tf.data` batches of `(uint8 images [B, H, W, C], int64 labels [B])`; `load_arrays` loads one
into memory. Paths may be local or `gs://` throughout.
"""

from contrastive.data.errors import CorruptShardError, DataError, DatasetIncompleteError
from contrastive.data.ingestion import FORMAT_VERSION, ingest, parse_image_size
from contrastive.data.reader import (
    TrainingData,
    dataset_info,
    load_arrays,
    load_training_data,
    read_manifest,
    read_split,
    verify_shards,
)
from contrastive.data.sources import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FORMAT_VERSION",
    "TrainingData",
    "CorruptShardError",
    "DataError",
    "DatasetIncompleteError",
    "dataset_info",
    "ingest",
    "load_arrays",
    "load_training_data",
    "parse_image_size",
    "read_manifest",
    "read_split",
    "verify_shards",
]
