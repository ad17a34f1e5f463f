"""Parquet datasets as sources: `parquet:PATH[?image=COLUMN&label=COLUMN]`.

PATH is a Parquet file or a folder of them (local or `gs://`), as Hugging Face publishes
datasets (`data/train-00000-of-00002.parquet`, `default/test/0000.parquet`). Each file's
split comes from its name or its folder's (`train`, `validation`/`valid`/`val`, `test`,
`unlabeled`/`unsupervised`, followed by `-`, `_`, `.` or the end); a single file without one
is train, a file in a folder without one is ignored (listed).

The image column (default: `image`, else the first column of a type below) holds, per row,
the encoded image bytes (binary), a path to the image (string: `gs://`, absolute, or
relative to the Parquet file's folder), or Hugging Face's `Image()` struct `{bytes, path}`
(the bytes when present, else the path). The label column (default `label`) holds class
ids (integers; -1 = unlabelled) or class names (strings). Class names: the label feature's
`ClassLabel` names from the Hugging Face metadata the file carries (`huggingface` key of the
Parquet schema metadata), else the sorted strings, else "0".."K-1".

Each image goes through the folder rules (`reading.prepare`: decoded, checked, converted;
a refused one is skipped and listed as `FILE[ROW]`); a row with a null label or no image
(null bytes and path) is skipped and listed likewise, before any image is read.

The image bytes of every file are held in memory while ingesting (as the in-process ingest
holds array sources): for datasets larger than memory, store paths in the Parquet files, or
split the dataset into several ingests.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
from urllib.parse import parse_qs

import numpy as np

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.sources import MAX_CLASSES, Source, TableSplit

# File or folder name prefixes -> split.
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "test": "test",
    "testing": "test",
    "unlabeled": "unlabeled",
    "unlabelled": "unlabeled",
    "unsupervised": "unlabeled",
}
_SPLIT_PATTERN = re.compile(r"^(" + "|".join(_SPLIT_NAMES) + r")(?:[-_.]|$)", re.IGNORECASE)


def open_parquet(location: str) -> Source:
    """A `parquet:` source (see the module doc) as a `Source` of `TableSplit`s.

    Raises:
        DataError: no Parquet file; a file that does not read; no image or label column (the
            message lists the columns); a label column of another type.
    """
    import pyarrow as pa

    location, image_column, label_column = _parse(location)
    files, ignored = _files_by_split(location)
    tables: dict[str, list] = {}
    names: list[str] | None = None
    for split, paths in files.items():
        for path in paths:
            table, column, hf_names = _read(path, image_column, label_column)
            tables.setdefault(split, []).append((path, table, column))
            names = names or hf_names
    all_tables = [table for parts in tables.values() for _, table, _ in parts]
    kinds = {pa.types.is_string(table.column("label").type) for table in all_tables}
    if len(kinds) > 1:
        raise DataError(
            f"{location}: the label column holds class names in some files, ids in others"
        )
    by_name = kinds == {True}
    if by_name:
        names = sorted(
            {value for table in all_tables for value in table.column("label").to_pylist() if value}
        )
    skipped: list[dict] = []
    label_of = {name: number for number, name in enumerate(names)} if by_name else None
    splits: dict[str, TableSplit] = {}
    for split, parts in tables.items():
        for name, made in _table_splits(split, parts, label_of, skipped).items():
            if name in splits:  # rows labelled -1 of several files join one unlabeled split
                made = _concatenate(splits[name], made)
            splits[name] = made
    if not by_name and names is None:
        names = _id_names(splits, location)
    return Source("parquet", location, list(names), splits, skipped, ignored)


def _parse(location: str) -> tuple[str, str | None, str | None]:
    """`PATH?image=a&label=b` -> `(PATH, "a", "b")`."""
    if "?" not in location:
        return location, None, None
    path, _, query = location.rpartition("?")
    options = {key: values[-1] for key, values in parse_qs(query).items()}
    unknown = set(options) - {"image", "label"}
    if unknown or not path:
        raise DataError(
            f"parquet:{location}: options are ?image=COLUMN&label=COLUMN. Received: "
            f"{sorted(unknown) or query!r}"
        )
    return path, options.get("image"), options.get("label")


def _files_by_split(location: str) -> tuple[dict[str, list[str]], list[dict]]:
    location = storage.strip_trailing_slash(location)
    if storage.isdir(location):
        found = [name for name in storage.list_files(location) if name.endswith(".parquet")]
        if not found:
            raise DataError(f"{location}: no .parquet files in the folder")
        files: dict[str, list[str]] = {}
        ignored = []
        for name in found:
            split = _split_of(name)
            path = storage.join(location, name)
            if split is None:
                ignored.append(
                    {"path": path, "reason": "no split (train, validation, test) in its name"}
                )
            else:
                files.setdefault(split, []).append(path)
        if "train" not in files:
            raise DataError(
                f"{location}: no train Parquet files (names or folders starting train-, "
                f"train_ or train/); found {found[:5]}"
            )
        return files, ignored
    if not storage.exists(location):
        raise DataError(f"Parquet file or folder not found: {location}")
    return {_split_of(location.rsplit("/", 1)[-1]) or "train": [location]}, []


def _split_of(relative: str) -> str | None:
    """The split named by a file's name or its folders', nearest first."""
    for part in reversed(relative.split("/")):
        match = _SPLIT_PATTERN.match(part)
        if match:
            return _SPLIT_NAMES[match.group(1).lower()]
    return None


def _read(path: str, image_column: str | None, label_column: str | None):
    """`(table of image and label, image column kind, HF ClassLabel names or None)`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
        schema = parquet.schema_arrow
    except Exception as error:  # pyarrow's ArrowInvalid and friends
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None
    columns = {field.name: field.type for field in schema}
    image = image_column or _find_image_column(columns)
    label = label_column or ("label" if "label" in columns else None)
    for what, name in (("image", image), ("label", label)):
        if name is None or name not in columns:
            listed = ", ".join(f"{n} ({t})" for n, t in columns.items())
            given = f"{what}={name!r} is not one of them" if name else "none found"
            raise DataError(
                f"{path}: no {what} column ({given}; pass parquet:PATH?{what}=COLUMN). "
                f"Columns: {listed}"
            )
    kind = _image_kind(columns[image])
    if kind is None:
        raise DataError(
            f"{path}: column {image!r} ({columns[image]}) holds no images: expected binary "
            "bytes, string paths or a {bytes, path} struct"
        )
    label_type = columns[label]
    if not (pa.types.is_integer(label_type) or pa.types.is_string(label_type)):
        raise DataError(
            f"{path}: label column {label!r} is {label_type}; expected class ids (integers) "
            "or class names (strings)"
        )
    try:
        table = parquet.read(columns=[image, label])
    except Exception as error:
        raise DataError(f"{path}: columns {image!r}, {label!r} do not read ({error})") from None
    table = table.rename_columns(["image", "label"])
    return table, kind, _huggingface_names(schema, label)


def _find_image_column(columns: dict) -> str | None:
    if "image" in columns:
        return "image"
    for name, kind in columns.items():
        if _image_kind(kind) in ("bytes", "struct"):
            return name
    return None


def _image_kind(kind) -> str | None:
    import pyarrow as pa

    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytes"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "path"
    if pa.types.is_struct(kind):
        fields = {kind.field(i).name for i in range(kind.num_fields)}
        if "bytes" in fields or "path" in fields:
            return "struct"
    return None


def _huggingface_names(schema, label: str) -> list[str] | None:
    """The `ClassLabel` names of `label` from a Hugging Face Parquet file's metadata."""
    try:
        metadata = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        feature = metadata.get("info", {}).get("features", {}).get(label, {})
    except (ValueError, AttributeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        return names
    return None


def _table_splits(split: str, parts: list, label_of: dict | None, skipped: list) -> dict:
    """One split's files as `{split: TableSplit}`, rows labelled -1 as `{"unlabeled": ...}`;
    rows without a label or an image are skipped and listed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kept: dict[str, list] = {}  # split -> [(file number, row, label, blob, path)]
    files = [path for path, _, _ in parts]
    for number, (path, table, kind) in enumerate(parts):
        column = table.column("image").combine_chunks()
        empty_bytes, empty_paths = pa.nulls(len(column), pa.binary()), pa.nulls(len(column))
        if kind == "struct":
            fields = {column.type.field(i).name for i in range(column.type.num_fields)}
            data = column.field("bytes") if "bytes" in fields else empty_bytes
            where = column.field("path") if "path" in fields else empty_paths
            data = pc.if_else(column.is_valid(), data, pa.nulls(len(column), data.type))
            where = pc.if_else(column.is_valid(), where, pa.nulls(len(column), where.type))
        elif kind == "bytes":
            data, where = column, empty_paths
        else:
            data, where = empty_bytes, column
        folder = posixpath.dirname(path) if storage.is_gcs(path) else os.path.dirname(path)
        values = table.column("label").to_pylist()
        for row, (value, blob, target) in enumerate(
            zip(values, data.to_pylist(), where.to_pylist(), strict=True)
        ):
            reason = None
            if value is None or (label_of is not None and not value):
                reason = "label is null"
            elif blob is None and not target:
                reason = "no image (null bytes and path)"
            if reason:
                skipped.append({"path": f"{path}[{row}]", "reason": reason})
                continue
            label = label_of[value] if label_of is not None else int(value)
            destination = "unlabeled" if label < 0 or split == "unlabeled" else split
            target = None if blob is not None else _resolve(folder, target)
            kept.setdefault(destination, []).append((number, row, label, blob, target))
    made = {}
    for destination, rows in kept.items():
        file_of, positions, labels, blobs, paths = zip(*rows, strict=True)
        made[destination] = TableSplit(
            pa.array(blobs, pa.large_binary()),
            list(paths),
            np.asarray(labels if destination != "unlabeled" else [-1] * len(labels), np.int64),
            files,
            np.asarray(file_of, np.int64),
            np.asarray(positions, np.int64),
        )
    return made


def _concatenate(first: TableSplit, second: TableSplit) -> TableSplit:
    import pyarrow as pa

    return TableSplit(
        pa.concat_arrays([first.blobs, second.blobs]),
        first.paths + second.paths,
        np.concatenate([first.labels, second.labels]),
        first.files + second.files,
        np.concatenate([first.file_of, second.file_of + len(first.files)]),
        np.concatenate([first.rows, second.rows]),
    )


def _resolve(folder: str, target: str) -> str:
    if "://" in target or os.path.isabs(target):
        return target
    if storage.is_gcs(folder):
        return storage.join(folder, target)
    return os.path.normpath(os.path.join(folder, target))


def _id_names(splits: dict, location: str) -> list[str]:
    labelled = [split.labels for name, split in splits.items() if name != "unlabeled"]
    top = max((int(labels.max()) for labels in labelled if len(labels)), default=-1)
    if top >= MAX_CLASSES:
        raise DataError(
            f"{location}: label {top} implies {top + 1:,} classes; at most MAX_CLASSES="
            f"{MAX_CLASSES:,} are supported (labels must be class ids 0..K-1)"
        )
    return [str(label) for label in range(top + 1)]
