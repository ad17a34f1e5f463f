"""What a source holds, as a short digest that changes when its content does.

A local run keys kfp.local's cache by it (`pipelines.local`): the same source string naming
changed files must not be served the results of the old ones. Nothing is decoded and no
image is read; the digest is built from what a listing gives:

- an ingested dataset (a location holding `manifest.json`): the manifest's bytes (it holds
  every shard's sha256, and a new ingest writes a new one);
- an image folder, local or `gs://`, and `idx:DIR`: every file's relative path, size and
  version (its modification time in ns; on `gs://` the object generation);
- `npz:FILE`: the file's size and version;
- `fashion_mnist`: the IDX folder it reads (`sources.FASHION_MNIST_DIR`), as `idx:DIR`;
- `tfds:NAME`: nothing beyond the name (TFDS versions its datasets).

A listing is one `stat` per file (one object listing on `gs://`): a few seconds for 100k
local files. A file rewritten with the same size and modification time (`cp -p` of an older
copy) is not seen; pass `data_snapshot` to force a new ingest then.
"""

from __future__ import annotations

import hashlib

from contrastive import storage
from contrastive.data.sources import FASHION_MNIST_DIR

_MANIFEST = "manifest.json"  # ingestion.MANIFEST_NAME, spelled here to import without TF
DIGITS = 12


def source_fingerprint(source: str, *, fashion_mnist_dir: str = FASHION_MNIST_DIR) -> str:
    """`DIGITS` hex digits of what `source` holds (see the module docstring); the same for
    the same content. A source that cannot be listed (missing, unreadable) gets the digest of
    its name alone: the ingest step then reports it."""
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape"))
    for line in _content(source.strip(), fashion_mnist_dir):
        digest.update(b"\0" + line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:DIGITS]


def _content(source: str, fashion_mnist_dir: str) -> list[str]:
    scheme, _, rest = source.partition(":")
    try:
        if source == "fashion_mnist":
            return _folder(fashion_mnist_dir)
        if scheme == "tfds" and rest:
            return []
        if scheme == "npz" and rest:
            entry = storage.file_version(rest)
            return [f"{entry.size} {entry.version}"]
        if scheme in ("idx", "folder") and rest:
            return _folder(rest)
        manifest = storage.join(storage.strip_trailing_slash(source), _MANIFEST)
        if storage.exists(manifest):
            return ["manifest " + hashlib.sha256(storage.read_bytes(manifest)).hexdigest()]
        return _folder(source)
    except (OSError, ValueError):
        return []


def _folder(folder: str) -> list[str]:
    entries = storage.list_file_versions(storage.strip_trailing_slash(folder))
    return [f"{entry.path} {entry.size} {entry.version}" for entry in entries]
