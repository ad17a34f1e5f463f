"""Vertex AI image-classification import files as sources: `csv:FILE` and `jsonl:FILE`.

The two formats Vertex AI reads for single-label image classification (schema
`gs://google-cloud-aiplatform/schema/dataset/ioformat/image_classification_single_label_io_format_1.0.0.yaml`):

    CSV, no header, one image per row:   [ML_USE,]GCS_FILE_PATH[,LABEL]
        test,gs://bucket/filename1.jpeg,daisy
        training,gs://bucket/filename2.gif,dandelion
        gs://bucket/filename3.png
        gs://bucket/filename4.bmp,sunflowers
        validation,gs://bucket/filename5.tiff,tulips
    JSON Lines, one object per line:
        {"imageGcsUri": "gs://bucket/filename1.jpeg",
         "classificationAnnotation": {"displayName": "daisy"},
         "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": "test"}}

`ML_USE` (`training`, `validation`, `test`; any case) is honoured as the split: `training`
rows and rows without one are the source's train split (from which `test_fraction` and
`validation_fraction` cut their shares only when the file names no test or validation rows),
`validation` and `test` rows are those splits. A row without a label is unlabelled (the
`unlabeled` split, whatever its ML_USE). Class names are the labels, sorted.

Paths may be `gs://` URIs (as Vertex requires) or local paths, relative ones taken from the
import file's folder. The same rules as an image folder's files apply to each image (read,
checked, converted by `reading.prepare`); each listed file counts as an image, so a missing,
unreadable or non-image one is skipped and listed (`on_error="fail"` fails on it). Rows that
cannot be used (a malformed row, JSON that does not parse, no image URI, multi-label
annotations, a URI listed twice) are listed in `skipped` as `FILE:LINE` with the reason.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath

import numpy as np

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.sources import FileSplit, Source, display_path

# ML_USE values -> source split (any case); Vertex writes training / validation / test.
ML_USES = {
    "training": "train",
    "train": "train",
    "validation": "validation",
    "test": "test",
    "unassigned": "train",
}
ML_USE_KEY = "aiplatform.googleapis.com/ml_use"


def open_import_file(path: str, scheme: str) -> Source:
    """A `csv:` or `jsonl:` import file as a `Source` of `FileSplit`s (see the module doc).

    Raises:
        DataError: the file is missing, not UTF-8 text, or lists no usable row.
    """
    if not storage.exists(path):
        raise DataError(f"{scheme} import file not found: {path}")
    try:
        text = storage.read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    parse = _csv_rows if scheme == "csv" else _jsonl_rows
    skipped: list[dict] = []
    rows = []  # (line, split, uri, label or "")
    first_line: dict[str, int] = {}
    for line, row in parse(text, path, skipped):
        ml_use, uri, label = row
        uri = _resolve(path, uri)
        if uri in first_line:
            skipped.append(
                {
                    "path": f"{path}:{line}",
                    "reason": f"{uri} listed again (first at line {first_line[uri]})",
                }
            )
            continue
        first_line[uri] = line
        rows.append((ML_USES[ml_use] if ml_use else "train", uri, label))
    if not rows:
        raise DataError(f"{path}: no image rows ({len(skipped)} rows could not be used)")
    class_names = sorted({label for _, _, label in rows if label})
    label_of = {name: number for number, name in enumerate(class_names)}
    members: dict[str, list[tuple[str, int]]] = {}
    for split, uri, label in rows:
        split = split if label else "unlabeled"
        members.setdefault(split, []).append((uri, label_of[label] if label else -1))
    root = _folder(path)
    splits = {
        split: FileSplit(
            [uri for uri, _ in listed],
            np.asarray([label for _, label in listed], np.int64),
            root,
            ids=[display_path(uri) for uri, _ in listed],
            declared=True,
        )
        for split, listed in members.items()
    }
    return Source(scheme, path, class_names, splits, skipped)


def _csv_rows(text: str, path: str, skipped: list):
    """`(line, (ml_use, uri, label))` per usable CSV row; problems go to `skipped`."""
    for line, fields in enumerate(csv.reader(text.splitlines()), 1):
        fields = [field.strip() for field in fields]
        if not any(fields):
            continue
        ml_use = fields[0].lower() if fields[0].lower() in ML_USES else ""
        rest = fields[1:] if ml_use else fields
        if len(rest) > 2 or (len(fields) == 3 and not ml_use):
            problem = (
                f"ML_USE {fields[0]!r} is not one of {sorted(set(ML_USES))}"
                if len(fields) == 3
                else f"{len(fields)} columns; a row is [ML_USE,]GCS_FILE_PATH[,LABEL]"
            )
            skipped.append({"path": f"{path}:{line}", "reason": problem})
            continue
        uri, label = rest[0] if rest else "", rest[1] if len(rest) > 1 else ""
        if not uri:
            skipped.append({"path": f"{path}:{line}", "reason": "no image path"})
            continue
        yield line, (ml_use, uri, label)


def _jsonl_rows(text: str, path: str, skipped: list):
    """`(line, (ml_use, uri, label))` per usable JSON Lines row; problems go to `skipped`."""
    for line, content in enumerate(text.splitlines(), 1):
        if not content.strip():
            continue
        where = f"{path}:{line}"
        try:
            item = json.loads(content)
        except ValueError as error:
            skipped.append({"path": where, "reason": f"not valid JSON ({error})"})
            continue
        problem = _jsonl_problem(item)
        if problem:
            skipped.append({"path": where, "reason": problem})
            continue
        annotation = item.get("classificationAnnotation") or {}
        labels = item.get("dataItemResourceLabels") or {}
        ml_use = str(labels.get(ML_USE_KEY, "")).strip().lower()
        if ml_use and ml_use not in ML_USES:
            reason = f"ML_USE {ml_use!r} is not one of {sorted(set(ML_USES))}"
            skipped.append({"path": where, "reason": reason})
            continue
        label = str(annotation.get("displayName") or "").strip()
        yield line, (ml_use, item["imageGcsUri"].strip(), label)


def _jsonl_problem(item) -> str | None:
    if not isinstance(item, dict):
        return f"a JSON {type(item).__name__}, not an object with imageGcsUri"
    uri = item.get("imageGcsUri")
    if not isinstance(uri, str) or not uri.strip():
        return "no imageGcsUri"
    if "classificationAnnotations" in item:
        return "multi-label annotations (classificationAnnotations); single-label only"
    annotation = item.get("classificationAnnotation")
    if annotation is not None and not isinstance(annotation, dict):
        return "classificationAnnotation is not an object"
    labels = item.get("dataItemResourceLabels")
    if labels is not None and not isinstance(labels, dict):
        return "dataItemResourceLabels is not an object"
    return None


def _folder(path: str) -> str:
    return posixpath.dirname(path) if storage.is_gcs(path) else os.path.dirname(path)


def _resolve(import_file: str, uri: str) -> str:
    """A listed path: `gs://` and absolute paths as they are, relative ones from the import
    file's folder."""
    if "://" in uri or os.path.isabs(uri):
        return uri
    folder = _folder(import_file)
    if storage.is_gcs(import_file):
        return posixpath.normpath(posixpath.join(folder, uri)).replace("gs:/", "gs://", 1)
    return os.path.normpath(os.path.join(folder, uri))
