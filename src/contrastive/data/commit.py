"""Ingest, step 3: the dataset layout and its commit protocol.

The manifest and the index are built from what `reading` wrote; `_commit` moves the staged
shards and index from `<output>/.tmp-<uuid>/` into place and writes `manifest.json` last, so
its presence commits the dataset. `_remove_stale_files` clears what an unfinished ingest left;
an overwrite keeps the old dataset readable until the new manifest replaces it.

One writer at a time: `claiming` holds the output's lease (`contrastive.lease`) from before
the first write to after the commit, and reads the manifest's generation under it; `_commit`
writes the new manifest only if that generation is still the current one (compare-and-swap,
locally and on `gs://`). Of two writers without `overwrite` exactly one commits; the other
fails naming the winner (the manifest's `writer`) or the live holder of the lease.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from contrastive import lease, storage
from contrastive.data.errors import DataError
from contrastive.data.sources import Source
from contrastive.data.splits import SPLITS

if TYPE_CHECKING:
    from contrastive.data.reading import _Written

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.parquet"
_TMP_PREFIX = ".tmp-"


class Claim(NamedTuple):
    """An output held for writing: its lease, and the manifest found under the lease."""

    lease: lease.Lease
    generation: int  # of manifest.json when claimed; 0: no committed dataset
    committed: dict | None  # that manifest, None when there was none


@contextlib.contextmanager
def claiming(output: str, what: str, *, overwrite: bool) -> Iterator[Claim]:
    """Hold `output` for one writer while the block writes and commits a dataset there.

    Raises:
        DataError: `output` is a file, or holds a committed dataset and `overwrite` is False
            (naming who committed it and when).
        lease.OutputBusyError: another live writer holds `output`, named in the message.
    """
    if storage.exists(output) and not storage.isdir(output):
        raise DataError(f"output {output} is a file, not a directory")
    with lease.holding(output, what) as held:
        data, generation = storage.read_with_generation(storage.join(output, MANIFEST_NAME))
        committed = _parse_manifest(data, output) if data is not None else None
        if committed is not None and not overwrite:
            _refuse(output, committed)
        yield Claim(held, generation, committed)


def refuse_committed(output: str) -> None:
    """DataError when `output` holds a committed dataset (naming who committed it, when)."""
    path = storage.join(output, MANIFEST_NAME)
    if storage.exists(path):
        try:
            manifest = storage.read_json(path)
        except ValueError:
            manifest = {}
        _refuse(output, manifest if isinstance(manifest, dict) else {})


def _refuse(output: str, manifest: dict) -> None:
    raise DataError(
        f"{output} already holds a committed dataset ({MANIFEST_NAME}, "
        f"{committed_by(manifest)}); pass overwrite=True (--overwrite) to replace it"
    )


def committed_by(manifest: dict) -> str:
    """`committed 2025-01-01T00:00:00+00:00 by ingest (pid 1 on host, started ...)`."""
    writer = manifest.get("writer")
    by = f" by {lease.describe(writer)}" if writer else ""
    return f"committed {manifest.get('created_at', 'at an unknown time')}{by}"


def dataset_digest(manifest: dict) -> str:
    """sha256 naming a dataset's content: classes, image shape, and each split's shards by
    their sha256 (not their names, times or writer), so an identical ingest has the same."""
    content = {
        "class_names": manifest.get("class_names"),
        "image_shape": manifest.get("image_shape"),
        "splits": {
            name: [shard.get("sha256") for shard in entry.get("shards", [])]
            for name, entry in sorted(manifest.get("splits", {}).items())
        },
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def _parse_manifest(data: bytes, output: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise DataError(
            f"{storage.join(output, MANIFEST_NAME)}: not valid JSON ({error})"
        ) from None
    return value if isinstance(value, dict) else {}


# index.parquet: one row per example, column -> Arrow type.
_INDEX_COLUMNS = {
    "id": "string",  # unique in the dataset: "<source split>/<position>" or the relative path
    "split": "string",
    "label": "int64",  # as stored (-1 in unlabeled)
    "source_label": "int64",  # the source's label, kept for examples moved to unlabeled
    "shard": "string",  # path relative to the dataset root
    "record": "int64",  # position within the shard
    "source_path": "string",  # the image file, or the array file / TFDS split
    "source_offset": "int64",  # position within source_path's array (-1 for image files)
    "format": "string",  # png | jpeg | raw
    "num_bytes": "int64",  # of the stored image bytes
    "sha256": "string",  # of the stored image bytes
    "orientation": "int64",  # EXIF orientation applied to the source image (1..8), 0: none
}


def _build_manifest(
    source: str, opened: Source, written: _Written, *, resize: dict | None, parameters: dict
) -> dict:
    from contrastive import __version__

    splits = {}
    for name in SPLITS:
        if name in written.shards:
            shards = written.shards[name]
            splits[name] = {
                "num_examples": sum(shard["num_examples"] for shard in shards),
                "formats": written.formats[name],
                "shards": shards,
            }
            if name != "unlabeled":  # labelled examples of each class, in class order
                splits[name]["class_counts"] = _class_counts(
                    written.index, name, len(opened.class_names)
                )
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "source_kind": opened.kind,
        "source_location": opened.location,
        "class_names": list(opened.class_names),
        "num_classes": len(opened.class_names),
        # Source class names that differ only in case or Unicode normalisation, merged on
        # request (class_name_variants="merge"): stored name -> the source names it took.
        "merged_classes": dict(opened.merged_classes),
        "image_shape": written.image_shape,
        # How images reached image_shape: the size, how it was chosen ("given" or "median" of
        # a mixed folder), the method, how many images changed size and the first of them.
        "resize": resize,
        "splits": splits,
        "index": INDEX_NAME,
        "skipped": sorted(written.skipped, key=lambda entry: entry["path"]),
        "ignored": sorted(written.ignored, key=lambda entry: entry["path"]),
        "ignored_files": len(written.ignored),
        "duplicates": _count_duplicates(written.index),
        # Images turned upright by their EXIF orientation: value (2..8) -> count.
        "oriented": _count_oriented(written.index),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        "parameters": parameters,
    }


def _count_oriented(index: dict[str, list]) -> dict[str, int]:
    values, counts = np.unique(np.asarray(index["orientation"], np.int64), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True) if v > 1}


def _class_counts(index: dict[str, list], split: str, num_classes: int) -> list[int]:
    labels = [
        label
        for name, label in zip(index["split"], index["label"], strict=True)
        if name == split and label >= 0
    ]
    return [int(count) for count in np.bincount(labels, minlength=num_classes)]


def _count_duplicates(index: dict[str, list]) -> dict[str, int]:
    """Byte-identical examples: repeats within a split, and held-out examples also in train."""
    seen: dict[str, set] = {}
    within = 0
    for split, digest in zip(index["split"], index["sha256"], strict=True):
        hashes = seen.setdefault(split, set())
        within += digest in hashes
        hashes.add(digest)
    train = seen.get("train", set())
    across = sum(len(seen.get(split, set()) & train) for split in ("validation", "test"))
    return {"within_splits": within, "held_out_in_train": across}


def _write_index(path: str, index: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _INDEX_COLUMNS.items()])
    table = pa.Table.from_pydict(index, schema=schema)
    buffer = pa.BufferOutputStream()  # pyarrow cannot write to a GFile handle; stage in memory
    pq.write_table(table, buffer)
    storage.write_bytes(path, buffer.getvalue().to_pybytes())


def _remove_stale_files(output: str, *, committed: bool) -> None:
    """Delete what an unfinished ingest left; refuse to delete anything an ingest did not write.

    Split folders and the index go only when no manifest commits them; a committed dataset
    being overwritten stays readable until `_commit`.
    """
    for name, is_dir, _ in storage.list_dir(output, include_hidden=True):
        path = storage.join(output, name)
        if name in SPLITS and is_dir:
            foreign = [
                entry.name
                for entry in storage.list_dir(path, include_hidden=True)
                if entry.is_dir or not entry.name.endswith(".tfrecord")
            ]
            if foreign:
                raise DataError(
                    f"output {output} holds {storage.join(path, foreign[0])}, which an ingest "
                    "did not write; choose an empty output or remove it"
                )
            if not committed:
                storage.remove_tree(path)
        elif name.startswith(_TMP_PREFIX) and is_dir:
            storage.remove_tree(path)
        elif name == INDEX_NAME and not committed:
            storage.remove(path)


def _commit(
    output: str, tmp: str, manifest: dict, *, replace: bool = False, claim: Claim | None = None
) -> None:
    """Move the staged files into `output` and write the manifest last.

    `replace` (overwriting a committed dataset): the new shards and index move in under names
    of their own (`train/train-<id>-00000.tfrecord`, `index-<id>.parquet`) beside the old
    ones, so the old manifest and every file it names stay readable until the new manifest
    replaces it in one atomic write; the old files go after that.

    `claim` (the writer's `claiming`): nothing is moved unless the lease is still held and the
    manifest unchanged since it was claimed, and the manifest is written by compare-and-swap
    on that generation; a writer that lost either fails naming the winner.
    """
    manifest_path = storage.join(output, MANIFEST_NAME)
    generation = 0 if claim is None else claim.generation
    if claim is not None:
        claim.lease.check()
        manifest["writer"] = {k: v for k, v in claim.lease.record.items() if k != "token"}
        _check_unchanged(output, generation)
    if replace:
        _rename_staged(manifest, tmp.rsplit(_TMP_PREFIX, 1)[-1][:12])
    # (else `_remove_stale_files` removed the uncommitted split folders before any write)
    for split, entry in manifest["splits"].items():
        storage.makedirs(storage.join(output, split))
        for shard in entry["shards"]:
            staged = shard.pop("staged", shard["path"])
            storage.rename(storage.join(tmp, staged), storage.join(output, shard["path"]))
    storage.rename(storage.join(tmp, INDEX_NAME), storage.join(output, manifest["index"]))
    try:  # the new dataset is committed by this one atomic write
        storage.write_if_generation_match(manifest_path, storage.json_bytes(manifest), generation)
    except storage.PreconditionFailedError:
        _check_unchanged(output, generation)
        raise
    if replace:
        _remove_unlisted(output, manifest)


def _check_unchanged(output: str, generation: int) -> None:
    """DataError naming the winner when another writer committed `output` since
    `generation` was read."""
    path = storage.join(output, MANIFEST_NAME)
    data, current = storage.read_with_generation(path)
    if current == generation:
        return
    winner = "removed" if data is None else committed_by(_parse_manifest(data, output))
    raise DataError(
        f"{output}: its dataset was {winner} while this writer was writing; this one committed "
        "nothing (rerun it with --overwrite to replace that dataset)"
    )


def _shards(manifest: dict) -> list[dict]:
    return [shard for entry in manifest["splits"].values() for shard in entry["shards"]]


def _rename_staged(manifest: dict, token: str) -> None:
    """Give the new shards and index names no committed file has (`staged` keeps the old)."""
    for shard in _shards(manifest):
        split, name = shard["path"].split("/", 1)
        stem, number = name[: -len(".tfrecord")].rsplit("-", 1)
        shard["staged"] = shard["path"]
        shard["path"] = f"{split}/{stem}-{token}-{number}.tfrecord"
    manifest["index"] = f"index-{token}.parquet"


def _remove_unlisted(output: str, manifest: dict) -> None:
    """After an overwrite commits: drop the old dataset's shards and index."""
    keep = {shard["path"] for shard in _shards(manifest)} | {manifest["index"], MANIFEST_NAME}
    for name, is_dir, _ in storage.list_dir(output, include_hidden=True):
        if name in SPLITS and is_dir and name not in manifest["splits"]:
            storage.remove_tree(storage.join(output, name))
        elif name in SPLITS and is_dir:
            for entry in storage.list_dir(storage.join(output, name), include_hidden=True):
                relative = f"{name}/{entry.name}"
                if entry.name.endswith(".tfrecord") and relative not in keep:
                    storage.remove(storage.join(output, name, entry.name))
        elif name.startswith("index") and name.endswith(".parquet") and name not in keep:
            storage.remove(storage.join(output, name))
