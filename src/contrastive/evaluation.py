"""Classification metrics, a 2-D PCA map of embeddings and the most frequent confusions.

Pure NumPy: no TensorFlow, no Keras, no scikit-learn. Every function returns plain Python
numbers and lists (JSON-ready) or NumPy arrays, never NaN: a ratio whose denominator is zero
(a class never predicted, a class absent from the labels) is reported as 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from contrastive import validation


def classification_metrics(y_true, y_pred, num_classes: int, class_names=None) -> dict:
    """Accuracy, confusion matrix and per-class precision / recall / F1 of integer labels.

    Args:
        y_true: true labels, integer array-like `[n]`, each in `[0, num_classes)`.
        y_pred: predicted labels, integer array-like `[n]`, each in `[0, num_classes)`.
        num_classes: number of classes `C` (>= 1).
        class_names: optional `C` names; defaults to `"0"`, `"1"`, ...

    Returns:
        A dict with `accuracy` (float), `confusion_matrix` (`C x C` list of lists, rows = true
        class, columns = predicted class), per-class lists `precision`, `recall`, `f1`,
        `support` (0 where undefined), `macro_f1` (mean F1 over the classes that occur in
        `y_true` or `y_pred`, as scikit-learn's default label set), `num_examples` and
        `class_names`.

    Raises:
        ValueError: lengths differ, labels are not integers or fall outside `[0, num_classes)`
            (the message names the value and its position), bad `num_classes`/`class_names`.
    """
    return metrics_from_confusion_matrix(confusion_matrix(y_true, y_pred, num_classes), class_names)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """The `C x C` int64 count matrix of integer labels (rows = true class); the matrices of
    consecutive batches add up to the whole split's (streamed evaluation).

    Raises:
        ValueError: as `classification_metrics`.
    """
    num_classes = _check_num_classes(num_classes)
    y_true = _as_labels(y_true, "y_true", num_classes)
    y_pred = _as_labels(y_pred, "y_pred", num_classes)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            "y_true and y_pred must have the same length. "
            f"Received: len(y_true)={y_true.shape[0]}, len(y_pred)={y_pred.shape[0]}"
        )
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def metrics_from_confusion_matrix(confusion_matrix, class_names=None) -> dict:
    """The metrics of `classification_metrics`, computed from a `C x C` count matrix.

    Args:
        confusion_matrix: non-negative integer counts `[C, C]`, rows = true class.
        class_names: optional `C` names; defaults to `"0"`, `"1"`, ...
    """
    confusion = _as_confusion(confusion_matrix)
    num_classes = confusion.shape[0]
    names = _class_names(class_names, num_classes)
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    total = int(confusion.sum())

    precision = _safe_divide(true_positives, predicted)
    recall = _safe_divide(true_positives, support)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    macro_f1 = float(f1[present].mean()) if present.any() else 0.0
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "confusion_matrix": confusion.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": [int(s) for s in support],
        "macro_f1": macro_f1,
        "num_examples": total,
        "class_names": names,
    }


def pca_2d(features, max_points: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project (a deterministic subsample of) features onto their first two principal axes.

    The rows are centred and projected with an SVD (no scikit-learn). Each axis's sign is fixed
    so that its largest-magnitude loading is positive, which makes the map reproducible across
    LAPACK builds. Features of rank < 2 give zeros in the missing coordinates.

    Args:
        features: `[n, dim]` real array, `n >= 1`.
        max_points: keep at most this many rows, chosen without replacement by `seed`.
        seed: seed of the subsample (used only when `n > max_points`).

    Returns:
        `(points, indices)`: `points` float32 `[m, 2]` with `m = min(n, max_points)`, and
        `indices` int64 `[m]`, sorted, the rows of `features` that the points come from.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(
            f"features must be a non-empty 2-D array [n, dim]. Received: shape={features.shape}"
        )
    if isinstance(max_points, bool) or int(max_points) != max_points or max_points < 1:
        raise ValueError(f"max_points must be an integer >= 1. Received: max_points={max_points}")
    features = features.astype(np.float64)
    if not np.all(np.isfinite(features)):
        row = int(np.argwhere(~np.isfinite(features))[0, 0])
        raise ValueError(f"features must be finite. Received: a non-finite value in row {row}")

    num_rows = features.shape[0]
    if num_rows > max_points:
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(num_rows, size=int(max_points), replace=False))
    else:
        indices = np.arange(num_rows)
    indices = indices.astype(np.int64)

    centred = features[indices] - features[indices].mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), largest])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]

    points = np.zeros((centred.shape[0], 2), dtype=np.float64)
    points[:, : components.shape[0]] = centred @ components.T
    return points.astype(np.float32), indices


def top_confusions(confusion_matrix, class_names=None, k: int = 5) -> list[dict]:
    """The `k` most frequent off-diagonal cells (true class mistaken for predicted class).

    Args:
        confusion_matrix: integer counts `[C, C]`, rows = true class.
        class_names: optional `C` names; defaults to `"0"`, `"1"`, ...
        k: how many to return at most (>= 0). Cells with a zero count are never returned.

    Returns:
        A list, most frequent first (ties by true then predicted index), of dicts with
        `true`, `predicted` (names), `true_index`, `predicted_index`, `count` and `rate`
        (the count as a fraction of the true class's support).
    """
    confusion = _as_confusion(confusion_matrix)
    names = _class_names(class_names, confusion.shape[0])
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be an integer >= 0. Received: k={k}")
    support = confusion.sum(axis=1)
    cells = [
        (-int(confusion[t, p]), t, p)
        for t in range(confusion.shape[0])
        for p in range(confusion.shape[1])
        if t != p and confusion[t, p] > 0
    ]
    cells.sort()
    return [
        {
            "true": names[t],
            "predicted": names[p],
            "true_index": t,
            "predicted_index": p,
            "count": -negative_count,
            "rate": -negative_count / int(support[t]),
        }
        for negative_count, t, p in cells[: int(k)]
    ]


def metric_scalars(result: dict) -> dict[str, float]:
    """Flat figures of a `classification_metrics` result for a KFP Metrics artifact:
    `accuracy`, `macro_f1` and `precision_<class>` / `recall_<class>` / `f1_<class>`."""
    scalars = {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
    for index, name in enumerate(result["class_names"]):
        key = re.sub(r"[^0-9A-Za-z]+", "_", str(name)).strip("_").lower() or f"class_{index}"
        for metric in ("precision", "recall", "f1"):
            scalars[f"{metric}_{key}"] = float(result[metric][index])
    return scalars


def write_predictions(path, labels, predicted, probabilities) -> None:
    """Per-example predictions as Parquet (`index`, `label`, `predicted`, `confidence`,
    `probabilities`), written atomically through `contrastive.storage`.

    Args:
        path: local path or gs:// URI.
        labels, predicted: integer arrays `[n]`.
        probabilities: float array `[n, C]`.
    """
    writer = PredictionsWriter(path)
    writer.write(labels, predicted, probabilities)
    writer.close()


class PredictionsWriteError(OSError):
    """The predictions file could not be written (full disk, no permission, ...)."""


class PredictionsWriter:
    """`write_predictions` batch by batch: each `write` appends a row group to a local
    temporary file; `close` moves it to `path` (atomic rename locally, one upload to gs://),
    `abort` removes it. Memory holds one batch, not the split. A failed write (a full disk)
    removes the temporary file and raises `PredictionsWriteError` naming `path`."""

    def __init__(self, path) -> None:
        import os
        import tempfile

        self.path = os.fspath(path)
        self._writer = None
        self._temporary = None
        self._count = 0
        folder = None
        try:
            if "://" not in self.path:
                folder = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(folder, exist_ok=True)
            descriptor, self._temporary = tempfile.mkstemp(
                prefix=".tmp-", suffix=".parquet", dir=folder
            )
            os.close(descriptor)
        except OSError as error:
            raise self._failed(error) from error

    def _failed(self, error: OSError) -> PredictionsWriteError:
        self.abort()
        return PredictionsWriteError(
            f"cannot write the predictions file {self.path} (--predictions): {error}; nothing "
            "was written there"
        )

    def write(self, labels, predicted, probabilities) -> None:
        try:
            self._write(labels, predicted, probabilities)
        except OSError as error:
            raise self._failed(error) from error

    def _write(self, labels, predicted, probabilities) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        labels, predicted = np.asarray(labels), np.asarray(predicted)
        probabilities = np.asarray(probabilities, dtype=np.float32)
        table = pa.table(
            {
                "index": np.arange(self._count, self._count + len(labels), dtype=np.int64),
                "label": labels.astype(np.int64),
                "predicted": predicted.astype(np.int64),
                "confidence": probabilities.max(axis=1, initial=0.0).astype(np.float32),
                "probabilities": pa.array(list(probabilities), type=pa.list_(pa.float32())),
            }
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._temporary, table.schema)
        self._writer.write_table(table)
        self._count += len(labels)

    def close(self) -> None:
        import os

        from contrastive import storage

        if self._writer is None:  # nothing written: an empty table of the same schema
            self.write(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0)))
        try:
            self._writer.close()
            self._writer = None
            if storage.is_gcs(self.path):
                storage.copy_file(self._temporary, self.path)
            else:
                os.chmod(self._temporary, 0o644)
                os.replace(self._temporary, self.path)
        except OSError as error:
            raise self._failed(error) from error
        finally:
            self.abort()

    def abort(self) -> None:
        import contextlib
        import os

        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)


def _check_num_classes(num_classes) -> int:
    return int(validation.check_int("num_classes", num_classes))


def _as_labels(values, name: str, num_classes: int) -> np.ndarray:
    """Validate integer labels `[n]` in `[0, num_classes)`; return them as int64."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n]. Received: {name}.shape={array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold integer labels. Received: dtype={array.dtype}")
    if not np.issubdtype(array.dtype, np.integer):
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            position = int(np.argmax(bad))
            raise ValueError(
                f"{name} must hold integer labels. Received: {name}[{position}]={array[position]!r}"
            )
    outside = (array < 0) | (array >= num_classes)
    if outside.any():
        position = int(np.argmax(outside))
        value = array[position].item()
        raise ValueError(
            f"{name} labels must be in [0, {num_classes}). Received: {name}[{position}]={value!r}"
        )
    return array.astype(np.int64)


def _as_confusion(confusion_matrix) -> np.ndarray:
    confusion = np.asarray(confusion_matrix)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.size == 0:
        raise ValueError(
            "confusion_matrix must be a non-empty square [C, C] matrix. "
            f"Received: shape={confusion.shape}"
        )
    if (
        not np.issubdtype(confusion.dtype, np.number)
        or not np.all(np.isfinite(confusion))
        or np.any(confusion < 0)
    ):
        raise ValueError("confusion_matrix must hold finite, non-negative counts.")
    return confusion.astype(np.int64)


def _class_names(class_names: Sequence | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names must have {num_classes} entries, one per class. "
            f"Received: len(class_names)={len(names)}"
        )
    return names


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0, without a warning."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def evaluate_batches(
    predict,
    batches,
    *,
    class_names: Sequence[str],
    batch_size: int,
    predictions_path=None,
    keep: int = 0,
):
    """Classification metrics over a stream of batches, in bounded memory.

    The confusion matrix and the predictions Parquet (when `predictions_path` is given) are
    accumulated batch by batch; a failure leaves no predictions file.

    Args:
        predict: `images [batch_size, H, W, C] -> probabilities [batch_size, num_classes]`; a
            short last batch is padded with zeros to `batch_size` (one compiled shape) and the
            padding's rows dropped.
        batches: iterable of `(images, labels)` NumPy batches.
        class_names: one per class, in label order.
        keep: how many of the first images (and labels) to return, e.g. for an embedding map.

    Returns:
        `(metrics_from_confusion_matrix(...), (kept_images, kept_labels))`.
    """
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    predictions = PredictionsWriter(predictions_path) if predictions_path else None
    kept_images, kept_labels, kept = [], [], 0
    try:
        for images, labels in batches:
            count = len(labels)
            probabilities = np.asarray(predict(pad_batch(images, batch_size)))[:count]
            predicted = probabilities.argmax(axis=1)
            confusion += confusion_matrix(labels, predicted, num_classes)
            if predictions is not None:
                predictions.write(labels, predicted, probabilities)
            if kept < keep:
                kept_images.append(images[: keep - kept])
                kept_labels.append(labels[: keep - kept])
                kept += len(kept_labels[-1])
    except BaseException:
        if predictions is not None:
            predictions.abort()  # no half-written predictions file
        raise
    if predictions is not None:
        predictions.close()
    result = metrics_from_confusion_matrix(confusion, class_names=list(class_names))
    if kept_images:
        sample = (np.concatenate(kept_images), np.concatenate(kept_labels))
    else:
        sample = (np.zeros((0,), np.uint8), np.zeros((0,), np.int64))
    return result, sample


def pad_batch(images, batch_size: int):
    """`images [b, ...]` followed by zero rows up to `batch_size` rows (one compiled shape for
    every batch of a stream; the caller drops the padding's outputs)."""
    images = np.asarray(images)
    if len(images) >= batch_size:
        return images
    padding = np.zeros((batch_size - len(images), *images.shape[1:]), images.dtype)
    return np.concatenate([images, padding])
