"""The three training steps (pretraining, classifier, baseline) and the sequence they share,
`_train_step`: reuse a complete output on retry, open the data (streamed), train, time it,
save the model directory. `run_training_component` is the body of their KFP components."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive import modeldir, storage, validation
from contrastive.config import Config
from contrastive.methods import BASELINE
from contrastive.modeldir import check_compatible, load_model_dir, read_json
from contrastive.tasks import conventions
from contrastive.tasks.conventions import brief as _brief
from contrastive.tasks.conventions import data_location
from contrastive.tasks.conventions import last as _last
from contrastive.tasks.sinks import StepSinks

if TYPE_CHECKING:
    from contrastive.data import TrainingData

log = logging.getLogger("contrastive.tasks")


def run_pretrain(
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    *,
    method: str = "",
    sinks: StepSinks | None = None,
    overwrite: bool = False,
) -> dict:
    """Pretrain an encoder with a contrastive loss; write it as a model directory.

    TensorBoard logs (every metric, every epoch), durable checkpoints and per-epoch progress
    records go where `sinks` says (`StepSinks`; None: TensorBoard in
    `<output_dir>/tensorboard`, checkpoints in `<output_dir>/checkpoints`, no progress file).
    A complete `output_dir` is reused only when asked for the same (`contrastive.reuse`);
    `overwrite` trains afresh and replaces it.
    """
    from contrastive import training

    data_uri = data_location(data_uri)
    if method:
        config = config.replace({"train.method": method})
    _check_apart(output_dir, data_uri, None, sinks)
    request = _request("pretrain", config, data_uri, method=config.train.method)
    knn_sample = []  # the bounded kNN sample, read once by `fit`, reused by `summarize`

    def fit(config: Config, *splits, **kwargs):
        from contrastive.data import knn_sample as read_knn_sample

        cap = min(config.train.knn_max_examples, config.data.limit or config.train.knn_max_examples)
        knn_sample.append(read_knn_sample(data_uri, cap))
        return training.pretrain(config, *splits, knn_sample=knn_sample[0], **kwargs)

    def summarize(encoder, history: dict, data: TrainingData, seconds: float, layout):
        metrics = {
            "method": config.train.method,
            "final_loss": _last(history, "loss"),
            "contrastive_accuracy": _last(history, "contrastive_accuracy"),
            "probe_accuracy": _last(history, "probe_accuracy"),
            "knn_accuracy": _knn(encoder, knn_sample[0], config, layout),
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
        request=request,
        overwrite=overwrite,
        uses_labels=_supervised(config),
        include_unlabeled=config.train.use_unlabeled,
        labelled_only=False,  # few labels: the others are anchors of their own views
        # a class-balanced labelled sample in every batch, for a method that reads labels
        labeled_per_class=config.train.labeled_per_class if _supervised(config) else 0,
        sinks=sinks,
    )


def run_train_classifier(
    data_uri: str,
    encoder_dir: str | Path,
    output_dir: str | Path,
    config: Config,
    *,
    mode: str = "",
    sinks: StepSinks | None = None,
    overwrite: bool = False,
) -> dict:
    """Train a classifier on a pretrained encoder (`config.train.classifier_mode`: a head
    `fitted` on its frozen features, a `linear` probe trained by gradient descent, or
    `finetune`); `sinks`, reuse and `overwrite` as for `run_pretrain`.

    `fitted` and `finetune` read the whole train split once (with `train.use_unlabeled`, the
    unlabeled split too): images outside the labelled subset are unlabelled rows of the
    training pool (standardisation, label spreading). `finetune` then trains on the labelled
    subset, repeated to `train.labeled_steps_per_epoch` batches an epoch. The classifier's
    choice is recorded: `metrics.json` names the head (`classifier`) and its cross-validated
    accuracy, `info.json` holds the whole selection (`classifier_selection`: every candidate's
    score, fine-tuned or not)."""
    from contrastive import training

    data_uri = data_location(data_uri)
    mode = mode or config.train.classifier_mode
    _check_apart(output_dir, data_uri, encoder_dir, sinks)
    request = _request(
        "classifier",
        config,
        data_uri,
        method=read_json(storage.join(str(encoder_dir), "info.json")).get("method"),
        mode=mode,
        encoder_model=modeldir.model_digest(encoder_dir),
    )
    # A finished step is reused before its encoder is loaded.
    if (done := modeldir.reuse_complete(output_dir, request, overwrite=overwrite)) is not None:
        return done
    from contrastive.training.distribution import distribution_scope, plan_layout

    with distribution_scope(plan_layout(config.train)):  # its variables on every device
        encoder, encoder_info = load_model_dir(encoder_dir)
    method = encoder_info.get("method")
    pooled = mode in ("fitted", "finetune")  # the head is fitted on the whole training pool
    selection: dict = {}

    def fit(config: Config, train, validation, **kwargs):
        labelled_train = None
        if mode == "finetune":
            labelled_train = _labelled_stream(data_uri, config)
        return training.train_classifier(
            config,
            encoder,
            train,
            validation,
            mode=mode,
            labelled_train=labelled_train,
            details=selection,
            **kwargs,
        )

    def summarize(model, history: dict, data: TrainingData, seconds: float, layout):
        pretrain_history = read_json(storage.join(encoder_dir, "history.json")).get("pretrain", {})
        pretrain_metrics = read_json(storage.join(encoder_dir, "metrics.json"))
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
        if selection:
            metrics["classifier"] = selection.get("chosen")
            metrics["classifier_cv_accuracy"] = selection.get("cv_accuracy")
            if "kept" in selection:
                metrics["finetuned"] = selection["kept"] == "finetuned"
            if "distill_kept" in selection:
                metrics["distilled"] = selection["distill_kept"] == "student"
        info = {
            "kind": "classifier",
            "method": method,
            "train_seconds": total,
            "mode": mode,
            "encoder_dir": str(encoder_dir),
            "feature_layer": config.model.feature_layer,
            **({"classifier_selection": selection} if selection else {}),
        }
        return metrics, {"pretrain": pretrain_history, "classifier": history}, info

    return _train_step(
        f"train_classifier {method}/{mode}",
        data_uri,
        output_dir,
        config,
        fit,
        summarize,
        request=request,
        overwrite=overwrite,
        check=lambda data: check_compatible(encoder_info, data, encoder_dir),
        include_unlabeled=pooled and config.train.use_unlabeled,
        labelled_only=not pooled,
        whole_pool=pooled,
        sinks=sinks,
    )


def _labelled_stream(data_uri: str, config: Config):
    """The labelled training images as fine-tuning reads them: the labelled subset
    (`train.labeled_fraction`), repeated to `train.labeled_steps_per_epoch` batches an epoch,
    this process's share of each batch."""
    from contrastive.data import stream_training_data
    from contrastive.training.distribution import plan_layout

    layout = plan_layout(config.train)
    return stream_training_data(
        data_uri,
        batch_size=layout.per_process_batch,
        seed=config.train.seed,
        limit=config.data.limit,
        labeled_fraction=config.train.labeled_fraction,
        labelled_only=True,
        labeled_steps_per_epoch=config.train.labeled_steps_per_epoch,
        shuffle_buffer=config.data.shuffle_buffer,
        shuffle_buffer_bytes=config.data.shuffle_buffer_mib << 20,
        process_index=layout.process_index,
        process_count=layout.processes,
    ).train


def run_train_baseline(
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    *,
    sinks: StepSinks | None = None,
    overwrite: bool = False,
) -> dict:
    """Train the cross-entropy baseline: same encoder, weak augmentation, same epoch budget;
    `sinks`, reuse and `overwrite` as for `run_pretrain`."""
    from contrastive import training

    data_uri = data_location(data_uri)
    _check_apart(output_dir, data_uri, None, sinks)
    request = _request(BASELINE, config, data_uri, method=BASELINE)

    def summarize(model, history: dict, data: TrainingData, seconds: float, layout):
        metrics = {
            "method": BASELINE,
            "val_accuracy": _last(history, "val_accuracy"),
            "train_accuracy": _last(history, "accuracy"),
            "train_seconds": seconds,
            "epochs": len(history.get("loss", [])),
        }
        info = {"kind": "classifier", "method": BASELINE, "train_seconds": seconds}
        return metrics, {"classifier": history}, info

    return _train_step(
        "train_baseline",
        data_uri,
        output_dir,
        config,
        training.train_baseline,
        summarize,
        request=request,
        overwrite=overwrite,
        sinks=sinks,
    )


def run_training_component(
    step: str,
    environ: Mapping[str, str],
    *,
    dataset,
    output,
    metrics,
    encoder_model=None,
    method: str = "",
    mode: str = "",
    profile: str = "quick",
    overrides: str = "",
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    seed: int | None = None,
    distribution: str = "",
    labeled_subset_fraction: float = 0.0,
    tensorboard_root: str = "",
    tensorboard_name: str = "",
    checkpoint_root: str = "",
    job_id: str = "",
) -> dict:
    """A training component's body, from pipeline parameters to logged KFP metrics.

    The step's sinks (`StepSinks.for_pipeline_step`: TensorBoard folder, durable checkpoint
    folder where a permanent failure is recorded too, progress file) and its config (the
    profile, `overrides` and the shortcuts, `config.resolve_config`) are built once, here.
    Then either the step trains here (joining a multi-process job that `environ` describes,
    `contrastive.environment.process_group`), or, when `environ` names a launcher
    (`contrastive.environment.launcher`, set by the pipeline's target), the step is handed
    to it as a `TrainingCall` that reads the inputs and writes `output` at their URIs, and
    this process only waits for its metrics.

    Args:
        step: "pretrain", "classifier" or "baseline".
        environ: the component's `os.environ`.
        dataset, output, metrics: the component's KFP artifacts: the dataset, the model
            directory it writes (the encoder for "pretrain"), its Metrics.
        encoder_model: "classifier": the pretrained encoder it reads.
        method, mode: the pretraining method, the classifier mode ("" keeps the profile's).
        profile, overrides: as `config.resolve_config` takes them.
        epochs, classifier_epochs, batch_size, temperature, encoder, seed, distribution:
            `config.resolve_config`'s shortcuts (0 / "" keep the profile's value).
        labeled_subset_fraction: few labels, the share of labelled training images the step
            sees (`resolve_config`'s `labeled_fraction`; 0 keeps the profile's).
        tensorboard_root, tensorboard_name, checkpoint_root, job_id: where logs and
            checkpoints go (`tensorboard_name` also names the step; `durable.step_folder`:
            a cluster step whose durable folder is unreachable fails here, at start).

    Returns:
        The step's metrics, also logged to `metrics`; `output.metadata` gets method, kind or
        mode, and framework.
    """
    from contrastive import durable, environment
    from contrastive.config import pipeline_overrides, resolve_config
    from contrastive.tasks.calls import STEPS, TrainingCall
    from contrastive.training.distribution import join_processes

    validation.check_choice("step", step, STEPS)
    sinks = StepSinks.for_pipeline_step(
        environ,
        name=tensorboard_name,
        tensorboard_root=tensorboard_root,
        checkpoint_root=checkpoint_root,
        job_id=job_id,
        output_uri=output.uri,
    )
    durable.check_reachable(sinks.durable)
    shortcuts = dict(
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        temperature=temperature,
        encoder=encoder,
        seed=seed,
        distribution=distribution,
        labeled_fraction=labeled_subset_fraction,
    )
    with durable.recording_failures(sinks.durable):  # a retry fails at once if permanent
        config = resolve_config(profile, overrides=overrides, **shortcuts)  # checked here
        launch = environment.launcher(environ)
        if launch is not None:
            # Nothing is written at `output.path`: KFP's launcher uploads that local path to
            # the URI after the component and skips a path that does not exist, so the files
            # the launched step wrote at the URI stay. The launched command fits the config to
            # the data itself (`contrastive pretrain|train --data`).
            call = TrainingCall(
                step,
                data=dataset.uri,
                output=output.uri,
                encoder_model="" if encoder_model is None else encoder_model.uri,
                profile=profile,
                overrides=pipeline_overrides(overrides, **shortcuts),
                method=method,
                mode=mode,
                sinks=sinks,
                name=tensorboard_name or step,
            )
            result = launch(call, environ=environ)
        else:
            fit_to = conventions.data_size(dataset)
            config = resolve_config(profile, overrides=overrides, fit_to=fit_to, **shortcuts)
            group = join_processes(environment.process_group(environ), config.train)
            if step == "pretrain":
                result = run_pretrain(dataset, output.path, config, method=method, sinks=sinks)
            elif step == "classifier":
                result = run_train_classifier(
                    dataset, encoder_model.path, output.path, config, mode=mode, sinks=sinks
                )
            else:
                result = run_train_baseline(dataset, output.path, config, sinks=sinks)
            if group is not None and group.process_id != 0:
                # A worker replica (Vertex CustomJob): process 0 writes the task's outputs. Leave
                # before KFP's executor writes this replica's output file over the chief's.
                log.info(
                    "%s: process %d done; process 0 writes the outputs", step, group.process_id
                )
                raise SystemExit(0)
    described = {
        "pretrain": {"method": result.get("method"), "kind": "encoder"},
        "classifier": {"method": result.get("method"), "mode": result.get("mode")},
        "baseline": {"method": BASELINE},
    }[step]
    output.metadata.update(**described, framework="keras")
    conventions.log_metrics(metrics, result)
    return result


def _train_step(
    name: str,
    data_uri: str,
    output_dir: str | Path,
    config: Config,
    fit: Callable[..., tuple[Any, dict]],
    summarize: Callable[[Any, dict, TrainingData, float], tuple[dict, dict, dict]],
    *,
    request: dict,
    overwrite: bool = False,
    include_unlabeled: bool = False,
    labelled_only: bool = True,
    whole_pool: bool = False,
    uses_labels: bool = True,
    check: Callable[[TrainingData], None] | None = None,
    sinks: StepSinks | None = None,
    labeled_per_class: int = 0,
) -> dict:
    """The sequence every training step shares: reuse → claim → open the data → train → time
    → commit.

    The splits are streamed (`contrastive.data.stream_training_data`): train shuffled in a
    buffer of `data.shuffle_buffer` examples / `data.shuffle_buffer_mib` MiB, a new
    `train.seed`-seeded order each epoch; both prefetched.

    Args:
        name: the step as the log line names it.
        fit: a `training` entry point, `fit(config, train, validation, *, num_classes,
            checkpoint_dir) -> (model, history)`.
        summarize: `(model, history, data, seconds, layout) -> (metrics, history to save,
            info)`; `info` holds the step's own fields (kind, method, ...), the dataset's are
            added; `layout` is the step's `training.distribution.Layout`.
        request: what the step is asked for (`reuse.step_request`): a complete output is
            reused only when it recorded the same, and so are checkpoints; recorded in
            `info.json` and `checkpoints/request.json`.
        overwrite: train afresh from epoch 0 and replace a complete output.
        include_unlabeled: train on the unlabeled split too (label -1).
        labelled_only: with `train.labeled_fraction` < 1, train on the labelled subset only
            (cross-entropy steps: no -1 label reaches their loss), else on every train image
            with the others unlabelled (-1).
        whole_pool: every process reads the whole train split (a head fitted on features of
            the whole pool), not its share of it.
        uses_labels: the step learns from labels: a train split (or labelled subset) with
            labelled images of fewer than two classes is refused. Every step warns, naming
            them, about classes without labelled train images.
        check: refuses data the step cannot use (raises), before training.
        labeled_per_class: with a labelled subset and not `labelled_only`, every batch
            carries this many labelled images of each class (`stream_training_data`).
        sinks: where TensorBoard logs, durable checkpoints and progress records go
            (`StepSinks`; None: every default).

    Returns:
        The step's metrics (those of the complete output when it is reused).

    Raises:
        reuse.OutputConflictError: the output (or its checkpoints) holds what another request
            asked for, or another writer completed it meanwhile.
        lease.OutputBusyError: another writer is writing the output.
    """
    if (done := modeldir.reuse_complete(output_dir, request, overwrite=overwrite)) is not None:
        return done
    sinks = sinks or StepSinks()
    from contrastive import lease
    from contrastive.training.distribution import plan_layout

    layout = plan_layout(config.train)  # refuses a bad distribution before reading data
    fresh = not storage.is_local(output_dir) or not Path(output_dir).exists()
    # One writer: the chief holds the output's lease until the model is complete.
    holding = lease.holding(str(output_dir), name) if layout.is_chief else None
    with holding or contextlib.nullcontext() as held:
        if not overwrite and (done := modeldir.reuse_complete(output_dir, request)) is not None:
            return done  # completed by another writer while this one waited
        generation = modeldir.complete_generation(output_dir)
        return _train_claimed(
            name,
            data_uri,
            output_dir,
            config,
            fit,
            summarize,
            layout=layout,
            request=request,
            overwrite=overwrite,
            fresh=fresh,
            held=held,
            generation=generation,
            include_unlabeled=include_unlabeled,
            labelled_only=labelled_only,
            whole_pool=whole_pool,
            uses_labels=uses_labels,
            check=check,
            sinks=sinks,
            labeled_per_class=labeled_per_class,
        )


def _train_claimed(
    name,
    data_uri,
    output_dir,
    config,
    fit,
    summarize,
    *,
    layout,
    request,
    overwrite,
    fresh,
    held,
    generation,
    include_unlabeled,
    labelled_only,
    whole_pool,
    uses_labels,
    check,
    sinks,
    labeled_per_class=0,
) -> dict:
    """`_train_step` once the output is held (`held`: the chief's lease, None elsewhere;
    `generation`: of `COMPLETE` when it was claimed): open the data, train, time, commit."""
    from contrastive.data import naming_damage, stream_training_data
    from contrastive.training.callbacks import ProgressLog, tensorboard_callback
    from contrastive.training.distribution import describe, save_discarded
    from contrastive.training.optim import machine_mixed_precision

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
        labeled_fraction=config.train.labeled_fraction,
        labelled_only=labelled_only,
        labeled_steps_per_epoch=config.train.labeled_steps_per_epoch,
        min_steps_per_epoch=config.train.min_steps_per_epoch,
        labeled_per_class=labeled_per_class,
        shuffle_buffer=config.data.shuffle_buffer,
        shuffle_buffer_bytes=config.data.shuffle_buffer_mib << 20,
        process_index=0 if whole_pool else layout.process_index,
        process_count=1 if whole_pool else layout.processes,
        # Data-parallel: a batch splits evenly over the devices, so only whole batches run
        # (a head fitted on the whole pool reads every image).
        whole_batches=layout.distribution == "data_parallel" and not whole_pool,
    )
    if any(data.dropped_per_epoch.values()):
        log.info(
            "%s: whole global batches of %d only: each epoch leaves out %s examples",
            name,
            layout.global_batch,
            ", ".join(f"{count} {split}" for split, count in data.dropped_per_epoch.items()),
        )
    start = time.perf_counter()
    _check_train_classes(name, data_uri, data, refuse=uses_labels)
    if check is not None:
        check(data)
    with _writing_folder(output_dir) as local_dir:
        checkpoint_dir = local_dir / "checkpoints"
        log_dir = sinks.tensorboard or str(local_dir / "tensorboard")
        callbacks = [tensorboard_callback(log_dir)] if layout.is_chief else []
        if sinks.progress is not None and layout.is_chief:
            callbacks.append(ProgressLog(sinks.progress))
        if sinks.durable is not None:  # the output folder may not survive the pod: mirror it
            from contrastive import durable

            if overwrite:
                durable.clear(sinks.durable)
            durable.restore(sinks.durable, checkpoint_dir)
        _guard_checkpoints(checkpoint_dir, request, overwrite=overwrite, write=layout.is_chief)
        if sinks.durable is not None and layout.is_chief:
            callbacks.append(durable.mirror_callback(checkpoint_dir, sinks.durable))
        try:
            with naming_damage(data_uri):
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
                shutil.rmtree(local_dir, ignore_errors=True)
            raise
        seconds = time.perf_counter() - start
        metrics, saved_history, info = summarize(model, history, data, seconds, layout)
        if not layout.is_chief:  # one writer: process 0 commits the model directory
            save_discarded(model, modeldir.MODEL_FILE)
            log.info(
                "%s: process %d done; process 0 writes %s", name, layout.process_index, output_dir
            )
            return metrics
        _check_commit(held, output_dir, generation)  # still ours; nobody completed it since
        modeldir.save_model_dir(
            local_dir,
            model,
            config=config,
            history=saved_history,
            metrics=metrics,
            info=_info(
                data,
                config,
                data_uri=data_uri,
                distribution={**layout.to_dict(), "dropped_per_epoch": data.dropped_per_epoch},
                mixed_precision=precision,
                request=request,
                writer=held.record,
                **info,
            ),
        )
        if not storage.is_local(output_dir):
            modeldir.publish(local_dir, str(output_dir))
        if sinks.durable is not None:
            from contrastive import durable

            durable.clear(sinks.durable)
        log.info("%s: %s", name, _brief(metrics))
        return metrics


def _check_train_classes(name: str, data_uri: str, data: TrainingData, *, refuse: bool):
    """Warn naming the classes the step has no labelled train image of; with `refuse`,
    DataError when fewer than two classes have one (cross-entropy over one class is 100 %
    accurate and meaningless)."""
    from contrastive.data import DataError

    if data.class_counts is None:
        return
    pairs = list(zip(data.class_names, data.class_counts, strict=False))
    present = [class_name for class_name, count in pairs if count]
    missing = [class_name for class_name, count in pairs if not count]
    if refuse and len(present) < 2:
        raise DataError(
            f"{data_uri}: the train split {name} learns from holds labelled images of "
            f"{len(present)} of {len(pairs)} classes ({', '.join(map(repr, present)) or 'none'}); "
            "training needs at least two (raise train.labeled_fraction, or ingest with train "
            "images of more classes)"
        )
    if missing:
        log.warning(
            "%s: %d of %d classes have no labelled train image in %s: %s. The model cannot "
            "learn them; their test images will all be misclassified",
            name, len(missing), len(pairs), data_uri, ", ".join(map(repr, missing)),
        )  # fmt: skip


def _request(step: str, config: Config, data_uri: str, *, method, mode=None, **inputs) -> dict:
    """The step's `reuse.step_request`, its dataset named by content (`dataset_digest`).
    Settings of the step outside their usual range are logged as warnings first."""
    from contrastive import data, reuse
    from contrastive.config import unusual_settings

    for line in unusual_settings(config, fields=reuse.shaping_settings(config, step)):
        log.warning("%s: %s", step, line)
    digest = data.dataset_digest(data.read_manifest(data_uri))
    return reuse.step_request(
        step, config, method=method, mode=mode, inputs={"data": digest, **inputs}
    )


def _supervised(config: Config) -> bool:
    """Whether the pretraining method's loss reads labels (`methods.Method.uses_labels`)."""
    from contrastive import methods

    return methods.get(config.train.method).uses_labels


def _check_apart(output_dir, data_uri, encoder_dir, sinks: StepSinks | None) -> None:
    """No output of the step (its model directory, TensorBoard or durable folder) is one of
    its inputs or lies inside one (`reuse.check_apart`)."""
    from contrastive import reuse

    sinks = sinks or StepSinks()
    outputs = {"--output": output_dir, "--tensorboard-dir": sinks.tensorboard}
    reuse.check_apart(
        {**outputs, "--durable-dir": sinks.durable},
        {"--data": data_uri, "--encoder-model": encoder_dir},
    )


def _guard_checkpoints(checkpoint_dir: Path, request: dict, *, overwrite: bool, write: bool):
    """Resume only checkpoints of the same request: others are refused naming what differs
    (or, with `overwrite`, deleted); then record this request beside them."""
    from contrastive import reuse

    if checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir()):
        path = checkpoint_dir / reuse.REQUEST_FILE
        recorded = read_json(path) if path.is_file() else None
        if overwrite:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        elif reuse.differences(recorded, request):
            reuse.refuse(
                str(checkpoint_dir), "the checkpoints of an unfinished step", recorded, request
            )
    if write:
        modeldir.write_json(checkpoint_dir / reuse.REQUEST_FILE, request)


def _check_commit(held, output_dir, generation: int) -> None:
    if held is not None:
        held.check()
    modeldir.check_not_completed_since(output_dir, generation)


@contextlib.contextmanager
def _writing_folder(output_dir: str | Path) -> Iterator[Path]:
    """The local folder a step writes its model directory in: `output_dir` itself, or for an
    object-store output (gs://, ...) a temporary folder, published there and then removed."""
    if storage.is_local(output_dir):
        yield Path(output_dir)
        return
    staging = tempfile.mkdtemp(prefix="contrastive-step-")
    try:
        yield Path(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _info(data: TrainingData, config: Config, **extra) -> dict:
    return {
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_shape": list(data.image_shape),
        "encoder": config.model.encoder,
        "profile": config.profile,
        "labeled_fraction": config.train.labeled_fraction,
        "created_at": modeldir.utc_now(),
        **extra,
    }


def _knn(encoder, sample, config: Config, layout) -> float | None:
    from contrastive import training

    if layout.processes > 1:
        return None  # several processes: the kNN sample is not global
    return training.sample_knn_accuracy(
        encoder, sample, k=config.train.knn_k, temperature=config.train.knn_temperature
    )


def _rate(examples: int, history: dict, seconds: float) -> float:
    epochs = len(history.get("loss", [])) or 1
    return examples * epochs / seconds if seconds > 0 else 0.0
