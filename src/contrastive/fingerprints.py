"""Fingerprints that say whether a run would train on what the champion was trained on: the
library's source, the code as a whole (library, frameworks, configuration, methods) and the
training data's content."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

# The distributions whose version is part of the code (TensorFlow under either wheel's name).
FRAMEWORKS = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "numpy")
# The splits a model learns from; test only measures it.
TRAINING_SPLITS = ("train", "validation", "unlabeled")


def library_fingerprint() -> str:
    """12 hex digits of the library's source and profiles (`src/contrastive`), which a
    component's own code does not include."""
    import contrastive

    root = Path(contrastive.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".yaml") and path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_fingerprint(config: dict, methods: Sequence[str] = ()) -> str:
    """16 hex digits of what decides how a model is trained: the library's source, the
    installed versions of `FRAMEWORKS`, the resolved configuration and the methods the
    pipeline trains (order-free)."""
    versions = {}
    for name in FRAMEWORKS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    payload = {
        "library": library_fingerprint(),
        "frameworks": versions,
        "config": config,
        "methods": sorted(methods),
    }
    return _digest(json.dumps(payload, sort_keys=True, default=str).encode())


def data_fingerprint(data_uri: str) -> str:
    """16 hex digits of a dataset's training content: every record of `TRAINING_SPLITS` as
    (split, label, sha256 of its stored bytes), order-free, from `index.parquet`; the shards'
    sha256 from the manifest when there is no index. A re-ingest of the same images with the
    same split gives the same fingerprint; any changed image, label or split assignment
    another."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from contrastive import storage
    from contrastive.data import read_manifest

    data_uri = storage.strip_trailing_slash(data_uri)
    manifest = read_manifest(data_uri)
    index_path = storage.join(data_uri, manifest.get("index", "index.parquet"))
    if not storage.exists(index_path):
        shards = sorted(
            shard["sha256"]
            for split, entry in manifest["splits"].items()
            if split in TRAINING_SPLITS
            for shard in entry["shards"]
        )
        return _digest("\n".join(shards).encode())
    table = pq.read_table(
        pa.BufferReader(storage.read_bytes(index_path)), columns=["split", "label", "sha256"]
    )
    table = table.filter(pc.is_in(table["split"], pa.array(TRAINING_SPLITS)))
    rows = sorted(
        zip(
            table["split"].to_pylist(),
            table["label"].to_pylist(),
            table["sha256"].to_pylist(),
            strict=True,
        )
    )
    return _digest("\n".join(f"{s}\t{label}\t{h}" for s, label, h in rows).encode())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
