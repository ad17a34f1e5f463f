"""The three training steps (pretraining, classifier, baseline) and the sequence they share,
`_train_step`: reuse a complete output on retry, open the data (streamed), train, time it,
save the model directory."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive import modeldir
from contrastive.config import Config
from contrastive.modeldir import check_compatible, load_model_dir, read_json
from contrastive.tasks.conventions import brief as _brief
from contrastive.tasks.conventions import data_location
from contrastive.tasks.conventions import last as _last

if TYPE_CHECKING:
    from contrastive.data import TrainingData

log = logging.getLogger("contrastive.tasks")


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
    from contrastive.training.optim import machine_mixed_precision

    layout = plan_layout(config.train)  # refuses a bad distribution before reading data
    log.info("%s: %s", name, describe(layout))
    # "auto" becomes this machine's choice once, so the model, its saved config and the
    # step's info.json agree on what it was trained in.
    precision, reason = machine_mixed_precision(config.train.mixed_precision)
    log.info("%s: compute precision %s (%s)", name, precision, reason)
    config = config.replace({"train.mixed_precision": precision})
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
        info=_info(
            data,
            config,
            data_uri=data_uri,
            distribution=layout.to_dict(),
            mixed_precision=precision,
            **info,
        ),
    )
    if durable_dir is not None:
        from contrastive import durable

        durable.clear(durable_dir)
    log.info("%s: %s", name, _brief(metrics))
    return metrics


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
