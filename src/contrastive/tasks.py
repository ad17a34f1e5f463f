"""The pipeline's steps as library functions: the file I/O edge of the CLI and KFP components.

Each `run_*` function reads a dataset (a URI with a `manifest.json`) and/or a model directory
(`contrastive.modeldir`), calls the training or evaluation code, and writes a model directory.
The three training steps share one sequence, `_train_step`: reuse a complete output on retry,
open the data, train, time it, save. Every step streams its splits (`tf.data`, bounded shuffle
buffer, prefetch): memory does not grow with the dataset; only bounded samples (the kNN
monitor's, the embedding map's) are held as arrays.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive import modeldir, validation
from contrastive.config import Config
from contrastive.modeldir import check_compatible, load_model_dir, read_json

if TYPE_CHECKING:
    from contrastive.data import TrainingData

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# steps


def data_location(artifact) -> str:
    """Where a step reads a KFP `Dataset` input: its `gs://` URI when it has one, else its path.

    Every `run_*` step applies it to its `data_uri` argument, so the components pass the
    artifact itself; a string is returned as it is.

    TensorFlow reads `gs://` itself, shard by shard, so a step streams a dataset from the
    bucket whatever the target does with the artifact's local path: on Vertex AI that path is
    a Cloud Storage FUSE mount (`/gcs/...`); on Kubeflow the v2 launcher downloads every input
    artifact to that path before the step starts. `minio://` and `s3://` URIs (Kubeflow's
    default MinIO, S3) are read from the launcher's local copy: TensorFlow has no filesystem
    for them without tensorflow-io. Local runs (`kfp.local`) have a local path as URI.

    Args:
        artifact: a path or URI, or anything with `uri` and `path` attributes (a
            `kfp.dsl.Dataset`).
    """
    from contrastive import storage

    if isinstance(artifact, (str, Path)):
        return str(artifact)
    uri = getattr(artifact, "uri", "") or ""
    return uri if storage.is_gcs(uri) else artifact.path


def tensorboard_dir(environ, tensorboard_root: str, name: str) -> str | None:
    """Where a training step writes TensorBoard logs: Vertex's `AIP_TENSORBOARD_LOG_DIR` (set
    for a step with a TensorBoard), else `<tensorboard_root>/<name>`, else None (inside the
    step's output). `environ` is the component's `os.environ`."""
    root = (tensorboard_root or "").rstrip("/")
    return environ.get("AIP_TENSORBOARD_LOG_DIR") or (f"{root}/{name}" if root else None)


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
    `image_size` is "H,W" or a pair, parsed and validated by `ingest`.

    A `source` that is already an ingested dataset (a location with `manifest.json`) is not
    ingested again: it is copied to `output` (`data.copy_ingested`), so a user ingests once
    and trains many times.
    """
    from contrastive import data

    if data.is_ingested(source):
        return data.copy_ingested(source, output, image_size=image_size or None)
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
    durable_dir: str | None = None,
) -> dict:
    """Pretrain an encoder with a contrastive loss; write it as a model directory.

    TensorBoard logs (every metric, every epoch) go to `tensorboard_dir`, by default
    `<output_dir>/tensorboard`.
    """
    from contrastive import training

    data_uri = data_location(data_uri)
    if method:
        config = config.replace({"train.method": method})
    knn_sample = []  # the bounded kNN sample, read once by `fit`, reused by `summarize`

    def fit(config: Config, *splits, **kwargs):
        from contrastive.data import knn_sample as read_knn_sample

        cap = min(config.train.knn_max_examples, config.data.limit or config.train.knn_max_examples)
        knn_sample.append(read_knn_sample(data_uri, cap))
        return training.pretrain(config, *splits, knn_sample=knn_sample[0], **kwargs)

    def summarize(encoder, history: dict, data: TrainingData, seconds: float):
        metrics = {
            "method": config.train.method,
            "final_loss": _last(history, "loss"),
            "contrastive_accuracy": _last(history, "contrastive_accuracy"),
            "probe_accuracy": _last(history, "probe_accuracy"),
            "knn_accuracy": _knn(encoder, knn_sample[0], config),
            "train_seconds": seconds,
            "epochs": len(history.get("loss", [])),
            "views_per_second": _rate(data.num_train * config.train.num_views, history, seconds),
        }
        info = {"kind": "encoder", "method": config.train.method, "train_seconds": seconds}
        return metrics, {"pretrain": history}, info

    return _train_step(
        f"pretrain {config.train.method}",
        data_uri,
        output_dir,
        config,
        fit,
        summarize,
        include_unlabeled=config.train.use_unlabeled,
        tensorboard_dir=tensorboard_dir,
        durable_dir=durable_dir,
    )


def run_train_classifier(
    data_uri: str,
    encoder_dir: str | Path,
    output_dir: str | Path,
    config: Config,
    *,
    mode: str = "",
    tensorboard_dir: str | None = None,
    durable_dir: str | None = None,
) -> dict:
    """Train a classifier on a pretrained encoder (frozen `linear` probe or `finetune`);
    TensorBoard logs as for `run_pretrain`."""
    from contrastive import training

    data_uri = data_location(data_uri)
    mode = mode or config.train.classifier_mode
    if modeldir.is_complete(output_dir):  # no need to load the encoder of a finished step
        return modeldir.reuse_complete(output_dir)
    from contrastive.training.distribution import distribution_scope, plan_layout

    with distribution_scope(plan_layout(config.train)):  # its variables on every device
        encoder, encoder_info = load_model_dir(encoder_dir)
    method = encoder_info.get("method")

    def fit(config: Config, *splits, **kwargs):
        return training.train_classifier(config, encoder, *splits, mode=mode, **kwargs)

    def summarize(model, history: dict, data: TrainingData, seconds: float):
        pretrain_history = read_json(Path(encoder_dir) / "history.json").get("pretrain", {})
        pretrain_metrics = read_json(Path(encoder_dir) / "metrics.json")
        total = seconds + float(encoder_info.get("train_seconds", 0.0))
        metrics = {
            "method": method,
            "mode": mode,
            "val_accuracy": _last(history, "val_accuracy"),
            "train_accuracy": _last(history, "accuracy"),
            "classifier_seconds": seconds,
            "train_seconds": total,
            "knn_accuracy": pretrain_metrics.get("knn_accuracy"),
            "pretrain_final_loss": pretrain_metrics.get("final_loss"),
        }
        info = {
            "kind": "classifier",
            "method": method,
            "train_seconds": total,
            "mode": mode,
            "encoder_dir": str(encoder_dir),
        }
        return metrics, {"pretrain": pretrain_history, "classifier": history}, info

    return _train_step(
        f"train_classifier {method}/{mode}",
        data_uri,
        output_dir,
        config,
        fit,
        summarize,
        check=lambda data: check_compatible(encoder_info, data, encoder_dir),
        tensorboard_dir=tensorboard_dir,
        durable_dir=durable_dir,
    )


def run_train_baseline(
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    *,
    tensorboard_dir: str | None = None,
    durable_dir: str | None = None,
) -> dict:
    """Train the cross-entropy baseline: same encoder, weak augmentation, same epoch budget;
    TensorBoard logs as for `run_pretrain`."""
    from contrastive import training

    data_uri = data_location(data_uri)

    def summarize(model, history: dict, data: TrainingData, seconds: float):
        metrics = {
            "method": "baseline",
            "val_accuracy": _last(history, "val_accuracy"),
            "train_accuracy": _last(history, "accuracy"),
            "train_seconds": seconds,
            "epochs": len(history.get("loss", [])),
        }
        info = {"kind": "classifier", "method": "baseline", "train_seconds": seconds}
        return metrics, {"classifier": history}, info

    return _train_step(
        "train_baseline",
        data_uri,
        output_dir,
        config,
        training.train_baseline,
        summarize,
        tensorboard_dir=tensorboard_dir,
        durable_dir=durable_dir,
    )


def _train_step(
    name: str,
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    fit: Callable[..., tuple[Any, dict]],
    summarize: Callable[[Any, dict, TrainingData, float], tuple[dict, dict, dict]],
    *,
    include_unlabeled: bool = False,
    check: Callable[[TrainingData], None] | None = None,
    tensorboard_dir: str | None = None,
    durable_dir: str | None = None,
) -> dict:
    """The sequence every training step shares: reuse → open the data → train → time → save.

    The splits are streamed (`contrastive.data.stream_training_data`): train shuffled in a
    buffer of `data.shuffle_buffer` examples / `data.shuffle_buffer_mib` MiB, a new
    `train.seed`-seeded order each epoch; both prefetched.

    Args:
        name: the step as the log line names it.
        fit: a `training` entry point, `fit(config, train, validation, *, num_classes,
            checkpoint_dir) -> (model, history)`.
        summarize: `(model, history, data, seconds) -> (metrics, history to save, info)`;
            `info` holds the step's own fields (kind, method, ...), the dataset's are added.
        include_unlabeled: train on the unlabeled split too (label -1).
        check: refuses data the step cannot use (raises), before training.
        tensorboard_dir: where `keras.callbacks.TensorBoard` writes (default
            `<output_dir>/tensorboard`).
        durable_dir: the step's folder of `contrastive.durable` (checkpoints mirrored there
            survive a lost output folder; removed after success); None: checkpoints only in
            `<output_dir>/checkpoints`.

    Returns:
        The step's metrics (those of the complete output when it is reused).
    """
    if (done := modeldir.reuse_complete(output_dir)) is not None:
        return done
    from contrastive.data import stream_training_data
    from contrastive.training.callbacks import tensorboard_callback
    from contrastive.training.distribution import describe, plan_layout, save_discarded

    layout = plan_layout(config.train)  # refuses a bad distribution before reading data
    log.info("%s: %s", name, describe(layout))
    # Each process streams its own shards in batches of its share of the global batch, the
    # same number of steps on every process (one reader for one process or many).
    data = stream_training_data(
        data_uri,
        batch_size=layout.per_process_batch,
        seed=config.train.seed,
        limit=config.data.limit,
        include_unlabeled=include_unlabeled,
        shuffle_buffer=config.data.shuffle_buffer,
        shuffle_buffer_bytes=config.data.shuffle_buffer_mib << 20,
        process_index=layout.process_index,
        process_count=layout.processes,
    )
    start = time.perf_counter()
    if check is not None:
        check(data)
    checkpoint_dir = Path(output_dir) / "checkpoints"
    fresh = not Path(output_dir).exists()
    log_dir = tensorboard_dir or str(Path(output_dir) / "tensorboard")
    callbacks = [tensorboard_callback(log_dir)] if layout.is_chief else []
    if durable_dir is not None:  # the output folder may not survive the pod: mirror it
        from contrastive import durable

        durable.restore(durable_dir, checkpoint_dir)
        if layout.is_chief:
            callbacks.append(durable.mirror_callback(checkpoint_dir, durable_dir))
    try:
        model, history = fit(
            config,
            data.train,
            data.validation,
            num_classes=data.num_classes,
            checkpoint_dir=str(checkpoint_dir),
            callbacks=callbacks,
        )
    except Exception as error:
        from contrastive.durable import permanent_errors

        if fresh and isinstance(error, permanent_errors()):  # a diverged loss: nothing to keep
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    metrics, saved_history, info = summarize(model, history, data, seconds)
    if not layout.is_chief:  # one writer: process 0 commits the model directory
        save_discarded(model, modeldir.MODEL_FILE)
        log.info("%s: process %d done; process 0 writes %s", name, layout.process_index, output_dir)
        return metrics
    modeldir.save_model_dir(
        output_dir,
        model,
        config=config,
        history=saved_history,
        metrics=metrics,
        info=_info(data, config, data_uri=data_uri, distribution=layout.to_dict(), **info),
    )
    if durable_dir is not None:
        from contrastive import durable

        durable.clear(durable_dir)
    log.info("%s: %s", name, _brief(metrics))
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

    Streams the split batch by batch: the confusion matrix and the predictions Parquet
    (when `predictions_path` is given) are accumulated per batch; only the embedding map's
    sample (`2 * embedding_points` images) is kept in memory.
    """
    from contrastive import data as data_io
    from contrastive import evaluation, training
    from contrastive.models import find_encoder

    data_uri = data_location(data_uri)
    model, info = load_model_dir(model_dir)
    manifest = data_io.read_manifest(data_uri)
    check_compatible(info, manifest, model_dir)
    if not manifest["splits"].get(split, {"num_examples": 1})["num_examples"]:
        raise ValueError(f"split {split!r} of {data_uri} is empty: nothing to evaluate")
    result, (x, y) = evaluation.evaluate_batches(
        lambda images: training.predict_proba(model, images, batch_size),
        data_io.read_split(data_uri, split, batch_size).as_numpy_iterator(),
        class_names=list(manifest["class_names"]),
        batch_size=batch_size,
        predictions_path=predictions_path,
        keep=embedding_points * 2,
    )
    embedding = None
    if embedding_points > 0:
        features = training.embed(find_encoder(model), x, batch_size)
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
        history=read_json(Path(model_dir) / "history.json"),
        train_metrics=read_json(Path(model_dir) / "metrics.json"),
        config=modeldir.read_yaml(Path(model_dir) / "config.yaml"),
        embedding_2d=embedding,
    )
    result["knn_accuracy"] = result["train_metrics"].get("knn_accuracy")
    result["scalars"] = evaluation.metric_scalars(result)
    log.info(
        "evaluate %s: accuracy %.4f on %d %s images",
        info.get("method"),
        result["accuracy"],
        result["num_examples"],
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
    from contrastive import report, storage
    from contrastive.registry import gate_champion

    if not candidates:
        raise ValueError("no method was evaluated: enable at least one of the branches")
    data_uri = data_location(data_uri)
    manifest = data_io.read_manifest(data_uri)
    methods = {name: read_json(Path(path)) for name, (path, _) in candidates.items()}
    best = max(methods, key=lambda name: methods[name]["accuracy"])
    if config is None:  # every evaluation carries the config its model was trained with
        config = Config.from_dict(methods[best].get("config") or {})
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if isinstance(parameters, str):
        parameters = json.loads(parameters or "{}")
    summary = {
        "run_id": run_id,
        "created_at": modeldir.utc_now(),
        "profile": config.profile,
        "config": config.to_dict(),
        "parameters": parameters,
        "dataset": {
            "source": manifest.get("source"),
            "class_names": manifest["class_names"],
            "image_shape": manifest["image_shape"],
            # what the model takes: the serving signature's size and channels
            "image_size": manifest["image_shape"][:2],
            "channels": manifest["image_shape"][2],
            "resize": manifest.get("resize"),
            "splits": {k: v["num_examples"] for k, v in manifest["splits"].items()},
        },
        "methods": {name: report.method_summary(result) for name, result in methods.items()},
        "best": best,
    }
    if registry:

        def test_accuracy(model_dir: str) -> float:  # the champion, on this run's test split
            return run_evaluate(data_uri, model_dir, embedding_points=0)["accuracy"]

        summary["decision"] = gate_champion(
            registry,
            best,
            methods[best]["accuracy"],
            candidates[best][1],
            run_id=run_id,
            margin=promotion_margin,
            evaluate=test_accuracy,
            vertex_model=vertex_model,
        )
    preview = Path(report_path).with_name("augmentation_preview.png")
    try:
        _render_preview(data_uri, config, preview)
    except Exception as error:  # a report without the preview beats no report
        log.warning("augmentation preview skipped: %s", error)
        preview = None
    report.build_report(summary, report_path, preview_png=preview)
    storage.write_text(markdown_path, report.render_markdown(summary))
    scalars = {f"{name}_test_accuracy": m["accuracy"] for name, m in methods.items()}
    if "decision" in summary:
        scalars["promoted"] = float(bool(summary["decision"]["promoted"]))
    summary["scalars"] = scalars
    modeldir.write_json(results_path, summary)
    return summary


def numeric_metrics(result: dict) -> dict[str, float]:
    """The plain numbers of a step's result, as a KFP Metrics artifact logs them."""
    return {name: float(value) for name, value in result.items() if validation.is_number(value)}


# --------------------------------------------------------------------------------------------
# helpers


def _render_preview(data_uri: str, config: Config, path: Path) -> None:
    from dataclasses import asdict

    from contrastive import augment, data

    x, _ = data.load_arrays(data_uri, "test", limit=8)
    shape = tuple(x.shape[1:])
    weak = augment.build_augmenter(shape, **asdict(config.augment.weak), seed=1)
    strong = augment.build_augmenter(shape, **asdict(config.augment.strong), seed=2)
    augment.render_preview(x, weak, strong, path, num_images=min(8, len(x)))


def _info(data: TrainingData, config: Config, **extra) -> dict:
    return {
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_shape": list(data.image_shape),
        "encoder": config.model.encoder,
        "profile": config.profile,
        "created_at": modeldir.utc_now(),
        **extra,
    }


def _knn(encoder, sample, config: Config) -> float | None:
    from contrastive import training
    from contrastive.training.distribution import plan_layout

    if plan_layout(config.train).processes > 1:
        return None  # several processes: the kNN sample is not global
    return training.sample_knn_accuracy(
        encoder, sample, k=config.train.knn_k, temperature=config.train.knn_temperature
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
