"""The pipeline's steps as library functions: the file I/O edge of the CLI and KFP components.

Each `run_*` function reads a dataset (a URI with a `manifest.json`) and/or a model directory,
calls the training or evaluation code, and writes a model directory:

    <dir>/model.keras    the Keras model (encoder for pretraining, classifier otherwise)
    <dir>/config.yaml    the configuration it was trained with
    <dir>/history.json   per-epoch training curves
    <dir>/metrics.json   summary figures
    <dir>/info.json      kind, method, classes, image shape, timings, lineage
    <dir>/COMPLETE       written last: a directory without it is refused by every consumer

Checkpoints go to `<dir>/checkpoints/` while training, so a retried task with the same output
resumes; they are removed once the model is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contrastive import __version__
from contrastive.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
MODEL_FILE = "model.keras"


class ModelIncompleteError(RuntimeError):
    """A model directory has no COMPLETE marker (a crashed or still-running writer)."""


class DataMismatchError(ValueError):
    """The dataset and the model disagree (class count, image shape)."""


# --------------------------------------------------------------------------------------------
# configuration


def resolve_config(
    profile: str = "quick",
    *,
    overrides: Sequence[str] | str = (),
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    limit: int = 0,
    seed: int | None = None,
) -> Config:
    """A profile plus explicit overrides; 0 / "" / None keep the profile's value.

    `overrides` is a list of `section.field=value` strings or one comma-separated string
    (the form a pipeline parameter can carry).
    """
    if isinstance(overrides, str):
        overrides = [item.strip() for item in overrides.split(",") if item.strip()]
    values: dict[str, Any] = {}
    for name, value in (
        ("train.epochs", epochs),
        ("train.classifier_epochs", classifier_epochs),
        ("train.batch_size", batch_size),
    ):
        if value < 0:
            raise ConfigError(f"{name} must be >= 1 (0 keeps the profile's). Received: {value}")
        if value:
            values[name] = value
    if temperature < 0:
        raise ConfigError(f"train.temperature must be > 0. Received: temperature={temperature}")
    if temperature:
        values["train.temperature"] = temperature
    if encoder:
        values["model.encoder"] = encoder
    if limit < 0:
        raise ConfigError(f"data.limit must be >= 1 (0 = all). Received: limit={limit}")
    if limit:
        values["data.limit"] = limit
    if seed is not None:
        values["train.seed"] = seed
    config = load_config(profile, list(overrides))
    return config.replace(values) if values else config


# --------------------------------------------------------------------------------------------
# data


@dataclass
class TrainingData:
    """In-memory splits (uint8 images, int64 labels; unlabeled images carry label -1)."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None
    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    manifest: dict


def load_training_data(
    data_uri: str, config: Config, *, include_unlabeled: bool = False
) -> TrainingData:
    """Load the train (and validation) split of a committed dataset into memory."""
    from contrastive import data

    manifest = data.read_manifest(data_uri)
    limit = config.data.limit
    x, y = data.load_arrays(data_uri, "train", limit=limit)
    splits = manifest["splits"]
    if include_unlabeled and splits.get("unlabeled", {}).get("num_examples", 0):
        xu, _ = data.load_arrays(data_uri, "unlabeled", limit=limit)
        x = np.concatenate([x, xu])
        y = np.concatenate([y, np.full(len(xu), -1, dtype=y.dtype)])
    validation = None
    if splits.get("validation", {}).get("num_examples", 0):
        validation = data.load_arrays(data_uri, "validation", limit=limit)
    return TrainingData(
        train=(x, y),
        validation=validation,
        num_classes=int(manifest["num_classes"]),
        class_names=list(manifest["class_names"]),
        image_shape=tuple(manifest["image_shape"]),
        manifest=manifest,
    )


# --------------------------------------------------------------------------------------------
# model directories


def is_complete(model_dir: str | Path) -> bool:
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def save_model_dir(
    model_dir: str | Path,
    model,
    *,
    config: Config,
    history: dict,
    metrics: dict,
    info: dict,
) -> Path:
    """Write a model directory; the COMPLETE marker goes last, files appear by atomic rename."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    staging = model_dir / f".{MODEL_FILE}.{uuid.uuid4().hex[:8]}.tmp.keras"
    model.save(staging)
    os.replace(staging, model_dir / MODEL_FILE)
    _write_json(model_dir / "history.json", _plain(history))
    _write_json(model_dir / "metrics.json", _plain(metrics))
    _write_json(model_dir / "info.json", _plain({**info, "package_version": __version__}))
    _write_text(model_dir / "config.yaml", config.to_yaml())
    _write_text(model_dir / COMPLETE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    return model_dir


def load_model_dir(model_dir: str | Path):
    """Return (keras model, info dict) from a complete model directory (safe_mode loading)."""
    import keras

    from contrastive import augment, losses, models, training  # noqa: F401  (registrations)

    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file() and not is_complete(model_dir):
        raise ModelIncompleteError(f"no model in {model_dir}: {MODEL_FILE} is missing")
    if not is_complete(model_dir):
        raise ModelIncompleteError(
            f"model directory {model_dir} is incomplete (no {COMPLETE_MARKER} marker): the task "
            "that writes it crashed or is still running; rerun it"
        )
    model = keras.saving.load_model(model_dir / MODEL_FILE, safe_mode=True)
    info = json.loads((model_dir / "info.json").read_text())
    return model, info


# --------------------------------------------------------------------------------------------
# steps


def run_ingest(
    source: str,
    output: str,
    *,
    image_size: str | Sequence[int] | None = "",
    limit: int | None = 0,
    labeled_fraction: float | None = 0.0,
    **options,
) -> dict:
    """`contrastive.data.ingest` with pipeline-parameter conventions (0 / "" mean unset);
    `image_size` is "H,W" or a pair, parsed and validated by `ingest`."""
    from contrastive import data

    return data.ingest(
        source,
        output,
        image_size=image_size or None,
        limit=limit or None,
        labeled_fraction=labeled_fraction or None,
        overwrite=options.pop("overwrite", True),
        progress=options.pop("progress", False),
        **options,
    )


def run_pretrain(
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    *,
    method: str = "",
    tensorboard_dir: str | None = None,
) -> dict:
    """Pretrain an encoder with a contrastive loss; write it as a model directory.

    TensorBoard logs (every metric, every epoch) go to `tensorboard_dir`, by default
    `<output_dir>/tensorboard`.
    """
    from contrastive import training

    if method:
        config = config.replace({"train.method": method})
    if (done := _reuse_complete(output_dir)) is not None:
        return done
    data = load_training_data(data_uri, config, include_unlabeled=config.train.use_unlabeled)
    start = time.perf_counter()
    encoder, history = training.pretrain(
        config,
        data.train,
        data.validation,
        num_classes=data.num_classes,
        checkpoint_dir=str(Path(output_dir) / "checkpoints"),
        callbacks=_tensorboard(output_dir, tensorboard_dir),
    )
    seconds = time.perf_counter() - start
    metrics = {
        "method": config.train.method,
        "final_loss": _last(history, "loss"),
        "contrastive_accuracy": _last(history, "contrastive_accuracy"),
        "probe_accuracy": _last(history, "probe_accuracy"),
        "knn_accuracy": _knn(encoder, data, config),
        "train_seconds": seconds,
        "epochs": len(history.get("loss", [])),
        "views_per_second": _rate(len(data.train[0]) * config.train.num_views, history, seconds),
    }
    save_model_dir(
        output_dir,
        encoder,
        config=config,
        history={"pretrain": history},
        metrics=metrics,
        info=_info(
            data,
            config,
            kind="encoder",
            method=config.train.method,
            data_uri=data_uri,
            train_seconds=seconds,
        ),
    )
    log.info("pretrain %s: %s", config.train.method, _brief(metrics))
    return metrics


def run_train_classifier(
    data_uri: str,
    encoder_dir: str | Path,
    output_dir: str | Path,
    config: Config,
    *,
    mode: str = "",
    tensorboard_dir: str | None = None,
) -> dict:
    """Train a classifier on a pretrained encoder (frozen `linear` probe or `finetune`);
    TensorBoard logs as for `run_pretrain`."""
    from contrastive import training

    mode = mode or config.train.classifier_mode
    if (done := _reuse_complete(output_dir)) is not None:
        return done
    encoder, encoder_info = load_model_dir(encoder_dir)
    data = load_training_data(data_uri, config)
    _check_compatible(encoder_info, data, encoder_dir)
    start = time.perf_counter()
    model, history = training.train_classifier(
        config,
        encoder,
        data.train,
        data.validation,
        num_classes=data.num_classes,
        mode=mode,
        checkpoint_dir=str(Path(output_dir) / "checkpoints"),
        callbacks=_tensorboard(output_dir, tensorboard_dir),
    )
    seconds = time.perf_counter() - start
    pretrain_history = _read_json(Path(encoder_dir) / "history.json").get("pretrain", {})
    pretrain_metrics = _read_json(Path(encoder_dir) / "metrics.json")
    total = seconds + float(encoder_info.get("train_seconds", 0.0))
    metrics = {
        "method": encoder_info.get("method"),
        "mode": mode,
        "val_accuracy": _last(history, "val_accuracy"),
        "train_accuracy": _last(history, "accuracy"),
        "classifier_seconds": seconds,
        "train_seconds": total,
        "knn_accuracy": pretrain_metrics.get("knn_accuracy"),
        "pretrain_final_loss": pretrain_metrics.get("final_loss"),
    }
    save_model_dir(
        output_dir,
        model,
        config=config,
        history={"pretrain": pretrain_history, "classifier": history},
        metrics=metrics,
        info=_info(
            data,
            config,
            kind="classifier",
            method=encoder_info.get("method"),
            data_uri=data_uri,
            train_seconds=total,
            mode=mode,
            encoder_dir=str(encoder_dir),
        ),
    )
    log.info("train_classifier %s/%s: %s", encoder_info.get("method"), mode, _brief(metrics))
    return metrics


def run_train_baseline(
    data_uri: str, output_dir: str | Path, config: Config, *, tensorboard_dir: str | None = None
) -> dict:
    """Train the cross-entropy baseline: same encoder, weak augmentation, same epoch budget;
    TensorBoard logs as for `run_pretrain`."""
    from contrastive import training

    if (done := _reuse_complete(output_dir)) is not None:
        return done
    data = load_training_data(data_uri, config)
    start = time.perf_counter()
    model, history = training.train_baseline(
        config,
        data.train,
        data.validation,
        num_classes=data.num_classes,
        checkpoint_dir=str(Path(output_dir) / "checkpoints"),
        callbacks=_tensorboard(output_dir, tensorboard_dir),
    )
    seconds = time.perf_counter() - start
    metrics = {
        "method": "baseline",
        "val_accuracy": _last(history, "val_accuracy"),
        "train_accuracy": _last(history, "accuracy"),
        "train_seconds": seconds,
        "epochs": len(history.get("loss", [])),
    }
    save_model_dir(
        output_dir,
        model,
        config=config,
        history={"classifier": history},
        metrics=metrics,
        info=_info(
            data,
            config,
            kind="classifier",
            method="baseline",
            data_uri=data_uri,
            train_seconds=seconds,
        ),
    )
    log.info("train_baseline: %s", _brief(metrics))
    return metrics


def run_evaluate(
    data_uri: str,
    model_dir: str | Path,
    *,
    split: str = "test",
    predictions_path: str | Path | None = None,
    embedding_points: int = 2000,
    batch_size: int = 512,
) -> dict:
    """Evaluate a classifier on a split: accuracy, per-class metrics, confusion, 2-D embedding.

    Writes per-example predictions to Parquet when `predictions_path` is given.
    """
    from contrastive import data as data_io
    from contrastive import evaluation, training

    model, info = load_model_dir(model_dir)
    manifest = data_io.read_manifest(data_uri)
    _check_compatible(info, _manifest_view(manifest), model_dir)
    x, y = data_io.load_arrays(data_uri, split)
    if len(x) == 0:
        raise ValueError(f"split {split!r} of {data_uri} is empty: nothing to evaluate")
    probabilities = training.predict_proba(model, x, batch_size=batch_size)
    predicted = probabilities.argmax(axis=1)
    result = evaluation.classification_metrics(
        y, predicted, int(manifest["num_classes"]), class_names=list(manifest["class_names"])
    )
    embedding = None
    if embedding_points > 0:
        features = training.embed(find_encoder(model), x[: embedding_points * 2], batch_size)
        points, indices = evaluation.pca_2d(features, max_points=embedding_points)
        embedding = {
            "x": points[:, 0].tolist(),
            "y": points[:, 1].tolist(),
            "label": y[indices].astype(int).tolist(),
        }
    result.update(
        method=info.get("method"),
        split=split,
        train_seconds=info.get("train_seconds"),
        history=_read_json(Path(model_dir) / "history.json"),
        train_metrics=_read_json(Path(model_dir) / "metrics.json"),
        config=_read_yaml(Path(model_dir) / "config.yaml"),
        embedding_2d=embedding,
    )
    result["knn_accuracy"] = result["train_metrics"].get("knn_accuracy")
    result["scalars"] = _evaluation_scalars(result)
    if predictions_path is not None:
        _write_predictions(predictions_path, y, predicted, probabilities)
    log.info(
        "evaluate %s: accuracy %.4f on %d %s images",
        info.get("method"),
        result["accuracy"],
        len(y),
        split,
    )
    return result


def run_compare_and_report(
    data_uri: str,
    candidates: dict[str, tuple[str, str]],
    *,
    report_path: str | Path,
    markdown_path: str | Path,
    results_path: str | Path,
    config: Config | None = None,
    parameters: str | dict = "{}",
    registry: str = "",
    promotion_margin: float = 0.0,
    run_id: str = "",
    vertex_model: dict | None = None,
) -> dict:
    """Pick the best method by test accuracy, gate it against the champion, write the report.

    Args:
        candidates: method name -> (evaluation JSON path, classifier model directory).
        config: shown in the report and used for the augmentation preview; by default the
            best model's own training config.
        registry: a local path or gs:// prefix holding `champion.json`; "" skips the gate.
        promotion_margin: the candidate must beat the champion's accuracy by more than this.
        vertex_model: keyword arguments of `contrastive.serving.upload_vertex_model` (model_id,
            project, region, ...): a promoted champion also becomes a new version of that
            Vertex Model with the alias `champion`. None: no upload.

    Returns the summary dict (also written as JSON to `results_path`), with `best` and
    `scalars` (flat figures for a KFP Metrics artifact).
    """
    from contrastive import data as data_io
    from contrastive import report

    if not candidates:
        raise ValueError("no method was evaluated: enable at least one of the branches")
    manifest = data_io.read_manifest(data_uri)
    methods = {name: _read_json(Path(path)) for name, (path, _) in candidates.items()}
    best = max(methods, key=lambda name: methods[name]["accuracy"])
    if config is None:  # every evaluation carries the config its model was trained with
        config = Config.from_dict(methods[best].get("config") or {})
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if isinstance(parameters, str):
        parameters = json.loads(parameters or "{}")
    summary = {
        "run_id": run_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profile": config.profile,
        "config": config.to_dict(),
        "parameters": parameters,
        "dataset": {
            "source": manifest.get("source"),
            "class_names": manifest["class_names"],
            "image_shape": manifest["image_shape"],
            "splits": {k: v["num_examples"] for k, v in manifest["splits"].items()},
        },
        "methods": {name: _method_summary(result) for name, result in methods.items()},
        "best": best,
    }
    if registry:
        summary["decision"] = gate_champion(
            registry,
            data_uri,
            best,
            methods[best]["accuracy"],
            candidates[best][1],
            run_id=run_id,
            margin=promotion_margin,
            vertex_model=vertex_model,
        )
    preview = Path(report_path).with_name("augmentation_preview.png")
    try:
        _render_preview(data_uri, config, preview)
    except Exception as error:  # a report without the preview beats no report
        log.warning("augmentation preview skipped: %s", error)
        preview = None
    report.build_report(summary, report_path, preview_png=preview)
    _write_text(Path(markdown_path), report.render_markdown(summary))
    scalars = {f"{name}_test_accuracy": m["accuracy"] for name, m in methods.items()}
    if "decision" in summary:
        scalars["promoted"] = float(bool(summary["decision"]["promoted"]))
    summary["scalars"] = scalars
    _write_json(Path(results_path), _plain(summary))
    return summary


def gate_champion(
    registry_root: str,
    data_uri: str,
    candidate: str,
    candidate_accuracy: float,
    candidate_dir: str,
    *,
    run_id: str,
    margin: float,
    vertex_model: dict | None = None,
) -> dict:
    """Re-evaluate the champion on this run's test split; promote the candidate if it wins.

    With `vertex_model` (see `run_compare_and_report`), a promotion also uploads the promoted
    SavedModel to the Vertex AI Model Registry; the upload is recorded in the decision.
    """
    from contrastive.registry import ModelRegistry, decide

    registry = ModelRegistry(registry_root)
    champion = registry.champion()
    champion_accuracy = None
    if champion is not None:
        champion_accuracy = _evaluate_remote_model(data_uri, registry.champion_model_dir())
    promote, reason = decide(candidate_accuracy, champion_accuracy, margin)
    decision = {
        "promoted": promote,
        "promote": promote,
        "candidate": candidate,
        "candidate_accuracy": candidate_accuracy,
        "champion_accuracy": champion_accuracy,
        "margin": margin,
        "reason": reason,
        "champion_run_id": champion.get("run_id") if champion else None,
    }
    if promote:
        _promote_with_export(
            registry,
            run_id,
            candidate_dir,
            candidate_accuracy,
            candidate,
            expected_generation=champion["generation"] if champion else 0,
        )
        decision["inference_service"] = _write_inference_service(registry, run_id)
        if vertex_model:
            from contrastive import storage
            from contrastive.serving import upload_vertex_model

            saved_model = storage.join(registry.version_dir(run_id), "saved_model")
            decision["vertex_model"] = upload_vertex_model(
                saved_model, run_id=run_id, **vertex_model
            )
    registry.record_decision(run_id, decision)
    return decision


def _write_inference_service(registry, run_id: str) -> str | None:
    """KServe manifest of the new champion next to `champion.json`; None without a SavedModel."""
    import yaml

    from contrastive import storage
    from contrastive.serving import INFERENCE_SERVICE_FILE, KSERVE_DIR, inference_service

    served = storage.join(registry.version_dir(run_id), KSERVE_DIR)
    if not storage.exists(storage.join(served, "1", "saved_model.pb")):
        return None
    manifest_uri = storage.join(registry.root, INFERENCE_SERVICE_FILE)
    manifest = inference_service(served, run_id=run_id)
    storage.write_text(manifest_uri, yaml.safe_dump(manifest, sort_keys=False))
    return manifest_uri


def _promote_with_export(registry, run_id, model_dir, score, method, *, expected_generation):
    """Promote a copy of `model_dir` with a serving SavedModel (uint8 images in) beside it."""
    import tempfile

    from contrastive.export import export_saved_model
    from contrastive.serving import KSERVE_DIR

    with tempfile.TemporaryDirectory(prefix="promote-") as staging:
        bundle = Path(staging) / "model"
        shutil.copytree(model_dir, bundle, ignore=shutil.ignore_patterns("checkpoints"))
        import keras

        if keras.backend.backend() == "tensorflow":
            export_saved_model(load_model_dir(model_dir)[0], str(bundle / "saved_model"))
            # TF Serving (KServe) wants numbered versions below its base path.
            shutil.copytree(bundle / "saved_model", bundle / KSERVE_DIR / "1")
        else:  # a SavedModel needs TensorFlow; the .keras file is promoted on its own
            log.warning("SavedModel export skipped on the %s backend", keras.backend.backend())
        (bundle / COMPLETE_MARKER).touch()
        registry.promote(
            run_id, bundle, score, extra={"method": method}, expected_generation=expected_generation
        )


def _evaluate_remote_model(data_uri: str, model_uri: str) -> float:
    """Test accuracy of a model directory that may live in object storage."""
    import tempfile

    from contrastive import storage

    if not storage.is_gcs(model_uri):
        return run_evaluate(data_uri, model_uri, embedding_points=0)["accuracy"]
    with tempfile.TemporaryDirectory(prefix="champion-") as local:
        storage.copy_tree(model_uri, local)
        return run_evaluate(data_uri, local, embedding_points=0)["accuracy"]


def numeric_metrics(result: dict) -> dict[str, float]:
    """The plain numbers of a step's result, as a KFP Metrics artifact logs them."""
    return {
        name: float(value)
        for name, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def find_encoder(model):
    """The encoder inside a classifier: the frozen wrapper's encoder, or the nested model
    named after a registered encoder."""
    import keras

    from contrastive.models import ENCODERS
    from contrastive.training import FrozenEncoder

    for layer in model.layers:
        if isinstance(layer, FrozenEncoder):
            return layer.encoder
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in ENCODERS:
            return layer
    raise ValueError(
        f"model {model.name!r} has no encoder sub-model (expected one of {sorted(ENCODERS)})"
    )


# --------------------------------------------------------------------------------------------
# helpers


def _evaluation_scalars(result: dict) -> dict[str, float]:
    import re

    scalars = {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
    for index, name in enumerate(result["class_names"]):
        key = re.sub(r"[^0-9A-Za-z]+", "_", str(name)).strip("_").lower() or f"class_{index}"
        for metric in ("precision", "recall", "f1"):
            scalars[f"{metric}_{key}"] = float(result[metric][index])
    return scalars


def _method_summary(result: dict) -> dict:
    return {
        "test_accuracy": result["accuracy"],
        "macro_f1": result.get("macro_f1"),
        "train_seconds": result.get("train_seconds"),
        "knn_accuracy": result.get("knn_accuracy"),
        "history": result.get("history", {}),
        "confusion_matrix": result.get("confusion_matrix"),
        "per_class": {k: result.get(k) for k in ("precision", "recall", "f1", "support")},
        "embedding_2d": result.get("embedding_2d"),
    }


def _render_preview(data_uri: str, config: Config, path: Path) -> None:
    from contrastive import augment, data

    x, _ = data.load_arrays(data_uri, "test", limit=8)
    shape = tuple(x.shape[1:])
    weak = augment.build_augmenter(shape, **_augment_kwargs(config.augment.weak), seed=1)
    strong = augment.build_augmenter(shape, **_augment_kwargs(config.augment.strong), seed=2)
    augment.render_preview(x, weak, strong, path, num_images=min(8, len(x)))


def _augment_kwargs(strength) -> dict:
    from dataclasses import asdict

    return asdict(strength)


def _tensorboard(output_dir, tensorboard_dir: str | None) -> list:
    """A `keras.callbacks.TensorBoard` writing each epoch's metrics (train and validation)."""
    import keras

    log_dir = tensorboard_dir or os.path.join(os.fspath(output_dir), "tensorboard")
    return [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, update_freq="epoch")]


def _reuse_complete(output_dir) -> dict | None:
    """A retried step whose output is already complete returns it instead of retraining."""
    if not is_complete(output_dir):
        return None
    log.info("%s is already complete; reusing it (idempotent retry)", output_dir)
    return _read_json(Path(output_dir) / "metrics.json")


def _info(data: TrainingData, config: Config, **extra) -> dict:
    return {
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_shape": list(data.image_shape),
        "encoder": config.model.encoder,
        "profile": config.profile,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def _manifest_view(manifest: dict) -> TrainingData:
    return TrainingData(
        train=(np.zeros((0,)), np.zeros((0,))),
        validation=None,
        num_classes=int(manifest["num_classes"]),
        class_names=list(manifest["class_names"]),
        image_shape=tuple(manifest["image_shape"]),
        manifest=manifest,
    )


def _check_compatible(info: dict, data: TrainingData, model_dir) -> None:
    if info.get("kind") == "classifier" and int(info["num_classes"]) != data.num_classes:
        raise DataMismatchError(
            f"class count mismatch: model {model_dir} predicts {info['num_classes']} classes, "
            f"the dataset has {data.num_classes} ({data.class_names})"
        )
    if list(info.get("image_shape", [])) != list(data.image_shape):
        raise DataMismatchError(
            f"image shape mismatch: model {model_dir} takes {info.get('image_shape')}, "
            f"the dataset has {list(data.image_shape)}"
        )


def _knn(encoder, data: TrainingData, config: Config) -> float | None:
    from contrastive import training

    if data.validation is None:
        return None
    x, y = data.train
    labelled = y >= 0
    cap = config.train.knn_max_examples
    vx, vy = data.validation
    return float(
        training.knn_accuracy(
            encoder,
            x[labelled][:cap],
            y[labelled][:cap],
            vx[:cap],
            vy[:cap],
            k=config.train.knn_k,
            temperature=config.train.knn_temperature,
        )
    )


def _rate(examples: int, history: dict, seconds: float) -> float:
    epochs = len(history.get("loss", [])) or 1
    return examples * epochs / seconds if seconds > 0 else 0.0


def _last(history: dict, key: str):
    values = history.get(key) or []
    return float(values[-1]) if values else None


def _brief(metrics: dict) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if v is not None
    )


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; a missing figure reads as null
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _write_text(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


def _write_json(path: Path, value) -> None:
    _write_text(path, json.dumps(value, indent=2, allow_nan=False, default=float))


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_predictions(path, labels, predicted, probabilities) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "index": np.arange(len(labels), dtype=np.int64),
            "label": labels.astype(np.int64),
            "predicted": predicted.astype(np.int64),
            "confidence": probabilities.max(axis=1).astype(np.float32),
            "probabilities": list(probabilities.astype(np.float32)),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, staging)
    os.replace(staging, path)
