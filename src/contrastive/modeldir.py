"""The model directory: the one format every step writes and reads, and the registry copies.

    <dir>/model.keras    the Keras model (encoder for pretraining, classifier otherwise)
    <dir>/config.yaml    the configuration it was trained with
    <dir>/history.json   per-epoch training curves
    <dir>/metrics.json   summary figures
    <dir>/info.json      kind, method, classes, image shape, timings, lineage
    <dir>/COMPLETE       written last: a directory without it is refused by every consumer

`info.json` also records the step's `request` (`contrastive.reuse`: step, method, mode, the
settings that shape the model, its inputs' digests), the `writer` that committed it, and
`files`: the size and sha256 of `model.keras`, checked before the model is loaded (a
truncated or damaged file is reported as corrupt, naming it). A step reuses a complete
directory only for an equal request (`reuse_complete`).

Checkpoints go to `<dir>/checkpoints/` while training, so a retried task with the same output
(and the same request, `checkpoints/request.json`) resumes; they are removed once the model is
complete. A step holds the directory's lease (`contrastive.lease`) while it writes, and
writes `COMPLETE` only if no other writer completed the directory since it began. Where the
output folder does not outlive the pod (Kubeflow), `contrastive.durable` mirrors them to a
folder keyed by run and step. Every file appears by atomic rename (through `contrastive.storage`).

A model directory may also be a remote URI (`gs://...`, or any scheme `tf.io.gfile` knows):
`is_complete`, `read_json`, `reuse_complete` and `load_model_dir` read it there (the model is
copied to a temporary local folder to load it), and `publish` copies a local one there with
`COMPLETE` last, so a training step that writes to an object store writes locally first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
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


class ModelCorruptError(ValueError):
    """A file of a complete model directory is damaged (truncated, unreadable, not what its
    `info.json` records)."""


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
    try:
        model.save(staging)
    except OSError as error:  # a full disk: name the file, leave no half-written staging copy
        staging.unlink(missing_ok=True)
        raise storage.naming(error, str(model_dir / MODEL_FILE)) from error
    files = {
        MODEL_FILE: {
            "num_bytes": staging.stat().st_size,
            "sha256": storage.sha256_file(str(staging)),
        }
    }
    os.replace(staging, model_dir / MODEL_FILE)
    write_json(model_dir / "history.json", history)
    write_json(model_dir / "metrics.json", metrics)
    write_json(model_dir / "info.json", {**info, "files": files, "package_version": __version__})
    storage.write_text(model_dir / "config.yaml", config.to_yaml())
    storage.write_text(model_dir / COMPLETE_MARKER, utc_now())
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    return model_dir


def load_model_dir(model_dir: str | Path):
    """Return (keras model, info dict) from a complete model directory (safe_mode loading);
    a remote one is copied to a temporary local folder first.

    Raises:
        ModelIncompleteError: no `COMPLETE` marker (a crashed or running writer).
        ModelCorruptError: `model.keras` or `info.json` missing, truncated or damaged.
    """
    import tempfile

    if not storage.is_local(model_dir):
        _check_complete(model_dir)
        with tempfile.TemporaryDirectory(prefix="contrastive-model-") as local:
            storage.copy_tree(model_dir, local)
            try:
                return load_model_dir(local)
            except ModelCorruptError as error:  # name the remote directory, not the copy
                raise ModelCorruptError(str(error).replace(local, str(model_dir))) from None
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file() and not is_complete(model_dir):
        raise ModelIncompleteError(f"no model in {model_dir}: {MODEL_FILE} is missing")
    _check_complete(model_dir)
    info = verify_model_dir(model_dir)
    try:
        model = load_model(model_dir / MODEL_FILE, safe_mode=True)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        if zipfile.is_zipfile(model_dir / MODEL_FILE) and _zip_intact(model_dir / MODEL_FILE):
            raise  # an intact file Keras refuses: not damage, its own message says why
        raise _corrupt(model_dir / MODEL_FILE, f"not a readable .keras archive ({error})") from None
    return model, info


def verify_model_dir(model_dir: str | Path) -> dict:
    """The `info.json` of a complete local model directory, after checking `model.keras`
    against the size and sha256 it records (older directories without them: the archive's
    own CRCs).

    Raises:
        ModelCorruptError: naming the file and what is wrong with it.
    """
    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise _corrupt(path, "missing, although the directory is marked complete")
    info = read_json(model_dir / "info.json")
    recorded = (info.get("files") or {}).get(MODEL_FILE)
    if recorded:
        size = path.stat().st_size
        if size != recorded.get("num_bytes"):
            raise _corrupt(
                path,
                f"{size} bytes, info.json records {recorded.get('num_bytes')} "
                "(truncated or replaced)",
            )
        if storage.sha256_file(str(path)) != recorded.get("sha256"):
            raise _corrupt(
                path, "sha256 differs from the one info.json records (damaged or replaced)"
            )
    elif not zipfile.is_zipfile(path) or not _zip_intact(path):
        raise _corrupt(path, "not a readable .keras archive (truncated or damaged)")
    return info


def model_digest(model_dir: str | Path) -> str:
    """What a consumer of this model directory records as its input: the sha256 of its
    `model.keras` as `info.json` records it (older directories: of `info.json` itself)."""
    path = storage.join(str(model_dir), "info.json")
    info = read_json(path)
    recorded = (info.get("files") or {}).get(MODEL_FILE) or {}
    if recorded.get("sha256"):
        return recorded["sha256"]
    return hashlib.sha256(storage.read_bytes(path)).hexdigest() if info else ""


def _check_complete(model_dir) -> None:
    if not is_complete(model_dir):
        raise ModelIncompleteError(
            f"model directory {model_dir} is incomplete (no {COMPLETE_MARKER} marker): the task "
            "that writes it crashed or is still running; rerun it"
        )


def _zip_intact(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def _corrupt(path, problem: str) -> ModelCorruptError:
    return ModelCorruptError(
        f"corrupt model directory {Path(path).parent}: {Path(path).name} is {problem}; "
        "train the step that wrote it again"
    )


def reuse_complete(model_dir: str | Path, request: dict, *, overwrite: bool = False) -> dict | None:
    """A step whose output is already complete returns its metrics instead of training again,
    when the output was asked for what `request` asks (`contrastive.reuse`); None when the
    step must run (incomplete, or `overwrite`).

    Raises:
        reuse.OutputConflictError: complete but asked for something else, naming every field
            that differs (unless `overwrite`).
    """
    from contrastive import reuse

    if not is_complete(model_dir) or overwrite:
        return None
    info = read_json(storage.join(str(model_dir), "info.json"))
    if reuse.differences(info.get("request"), request):
        what = f"a finished {info.get('kind') or 'model'} ({info.get('method')})"
        reuse.refuse(str(model_dir), what, info.get("request"), request)
    log.info("%s is already complete and asked for the same; reusing it", model_dir)
    return read_json(storage.join(str(model_dir), "metrics.json"))


def complete_generation(model_dir: str | Path) -> int:
    """The generation of `COMPLETE` (0: absent), for `check_not_completed_since`."""
    return storage.read_with_generation(storage.join(str(model_dir), COMPLETE_MARKER))[1]


def check_not_completed_since(model_dir: str | Path, generation: int) -> None:
    """OutputConflictError naming the winner when another writer completed `model_dir` after
    `generation` of its `COMPLETE` was read."""
    from contrastive import lease, reuse

    if complete_generation(model_dir) == generation:
        return
    info = read_json(storage.join(str(model_dir), "info.json"))
    raise reuse.OutputConflictError(
        f"{model_dir} was completed by {lease.describe(info.get('writer'))} while this step "
        "trained; this one committed nothing (rerun it with --overwrite to replace that model)"
    )


def read_json(path: str | Path) -> dict:
    """A JSON file of a model directory (local or remote), or {} when it is absent.

    Raises:
        ModelCorruptError: the file is there but is not valid JSON (naming it).
    """
    if not storage.is_local(path):
        if not storage.exists(path):
            return {}
        text = storage.read_bytes(path)
    else:
        path = Path(path)
        if not path.is_file():
            return {}
        text = path.read_bytes()
    try:
        return json.loads(text)
    except ValueError as error:
        raise ModelCorruptError(
            f"corrupt file {path}: not valid JSON ({error}); rerun the step that wrote it"
        ) from None


def read_yaml(path: str | Path) -> dict:
    """A YAML file of a model directory (local or remote), or {} when it is absent."""
    import yaml

    if not storage.exists(str(path)):
        return {}
    try:
        return yaml.safe_load(storage.read_text(str(path))) or {}
    except yaml.YAMLError as error:
        raise ModelCorruptError(f"corrupt file {path}: not valid YAML ({error})") from None


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
