"""The model directory: the one format every step writes and reads, and the registry copies.

    <dir>/model.keras    the Keras model (encoder for pretraining, classifier otherwise)
    <dir>/config.yaml    the configuration it was trained with
    <dir>/history.json   per-epoch training curves
    <dir>/metrics.json   summary figures
    <dir>/info.json      kind, method, classes, image shape, timings, lineage
    <dir>/COMPLETE       written last: a directory without it is refused by every consumer

Checkpoints go to `<dir>/checkpoints/` while training, so a retried task with the same output
resumes; they are removed once the model is complete. Where the output folder does not outlive
the pod (Kubeflow), `contrastive.durable` mirrors them to a folder keyed by run and step.
Every file appears by atomic rename (through `contrastive.storage`).

A model directory may also be a remote URI (`gs://...`, or any scheme `tf.io.gfile` knows):
`is_complete`, `read_json`, `reuse_complete` and `load_model_dir` read it there (the model is
copied to a temporary local folder to load it), and `publish` copies a local one there with
`COMPLETE` last, so a training step that writes to an object store writes locally first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from contrastive import __version__, load_model, storage

log = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
MODEL_FILE = "model.keras"


class ModelIncompleteError(RuntimeError):
    """A model directory has no COMPLETE marker (a crashed or still-running writer)."""


class DataMismatchError(ValueError):
    """The dataset and the model disagree (class count, image shape)."""


def is_complete(model_dir: str | Path) -> bool:
    if not storage.is_local(model_dir):
        return storage.exists(storage.join(model_dir, COMPLETE_MARKER))
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def publish(local_dir: str | Path, uri: str) -> None:
    """Copy the complete local model directory `local_dir` to `uri`, `COMPLETE` last (a
    reader that trusts the marker never sees a partial copy)."""
    if not is_complete(local_dir):
        raise ModelIncompleteError(f"model directory {local_dir} is incomplete; not publishing it")
    storage.remove(storage.join(uri, COMPLETE_MARKER))  # an older copy's marker goes first
    storage.copy_tree(local_dir, uri, last=COMPLETE_MARKER)


def save_model_dir(
    model_dir: str | Path,
    model,
    *,
    config,
    history: dict,
    metrics: dict,
    info: dict,
) -> Path:
    """Write a model directory; the COMPLETE marker goes last, files appear by atomic rename.

    Args:
        model_dir: local folder (created when missing).
        model: the `keras.Model` to save as `model.keras`.
        config: the `contrastive.config.Config` it was trained with.
        history, metrics, info: JSON-able dicts (NumPy scalars and NaN are made plain).
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    staging = model_dir / f".{MODEL_FILE}.{uuid.uuid4().hex[:8]}.tmp.keras"
    model.save(staging)
    os.replace(staging, model_dir / MODEL_FILE)
    write_json(model_dir / "history.json", history)
    write_json(model_dir / "metrics.json", metrics)
    write_json(model_dir / "info.json", {**info, "package_version": __version__})
    storage.write_text(model_dir / "config.yaml", config.to_yaml())
    storage.write_text(model_dir / COMPLETE_MARKER, utc_now())
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    return model_dir


def load_model_dir(model_dir: str | Path):
    """Return (keras model, info dict) from a complete model directory (safe_mode loading);
    a remote one is copied to a temporary local folder first."""
    import tempfile

    if not storage.is_local(model_dir):
        if not is_complete(model_dir):
            raise ModelIncompleteError(
                f"model directory {model_dir} is incomplete (no {COMPLETE_MARKER} marker): the "
                "task that writes it crashed or is still running; rerun it"
            )
        with tempfile.TemporaryDirectory(prefix="contrastive-model-") as local:
            storage.copy_tree(model_dir, local)
            return load_model_dir(local)
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file() and not is_complete(model_dir):
        raise ModelIncompleteError(f"no model in {model_dir}: {MODEL_FILE} is missing")
    if not is_complete(model_dir):
        raise ModelIncompleteError(
            f"model directory {model_dir} is incomplete (no {COMPLETE_MARKER} marker): the task "
            "that writes it crashed or is still running; rerun it"
        )
    model = load_model(model_dir / MODEL_FILE, safe_mode=True)
    info = json.loads((model_dir / "info.json").read_text())
    return model, info


def reuse_complete(model_dir: str | Path) -> dict | None:
    """A retried step whose output is already complete returns its metrics instead of
    retraining; None when it must run."""
    if not is_complete(model_dir):
        return None
    log.info("%s is already complete; reusing it (idempotent retry)", model_dir)
    return read_json(storage.join(model_dir, "metrics.json"))


def read_json(path: str | Path) -> dict:
    """A JSON file of a model directory (local or remote), or {} when it is absent."""
    if not storage.is_local(path):
        return storage.read_json(path) if storage.exists(path) else {}
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def read_yaml(path: str | Path) -> dict:
    """A YAML file of a model directory, or {} when it is absent."""
    import yaml

    path = Path(path)
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def write_json(path: str | Path, value) -> None:
    """Atomically write `value` made plain (NumPy -> Python, NaN -> null) as JSON."""
    storage.write_json(path, plain(value))


def plain(value):
    """`value` with NumPy scalars and arrays as Python values and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; a missing figure reads as null
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_compatible(info: dict, manifest: dict, model_dir) -> None:
    """Refuse a dataset whose class count or image shape differs from the model's.

    Args:
        info: the model directory's `info.json`.
        manifest: the dataset's manifest (or a `TrainingData`-like object with
            `num_classes`, `class_names` and `image_shape` attributes).
        model_dir: named in the error.

    Raises:
        DataMismatchError: naming both values.
    """
    if isinstance(manifest, dict):
        num_classes = int(manifest["num_classes"])
        class_names = list(manifest["class_names"])
        image_shape = list(manifest["image_shape"])
    else:
        num_classes, class_names = manifest.num_classes, manifest.class_names
        image_shape = list(manifest.image_shape)
    if info.get("kind") == "classifier" and int(info["num_classes"]) != num_classes:
        raise DataMismatchError(
            f"class count mismatch: model {model_dir} predicts {info['num_classes']} classes, "
            f"the dataset has {num_classes} ({class_names})"
        )
    if list(info.get("image_shape", [])) != image_shape:
        raise DataMismatchError(
            f"image shape mismatch: model {model_dir} takes {info.get('image_shape')}, "
            f"the dataset has {image_shape}"
        )
