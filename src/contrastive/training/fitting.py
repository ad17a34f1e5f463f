"""What the training entry points share: reading the data arguments, compiling and fitting.

Data arguments are either `(x, y)` NumPy pairs (x `[N, H, W, C]` in `[0, 255]`, y int `[N]`,
-1 for unlabelled) or anything else `Model.fit` accepts as a dataset (e.g. a `tf.data`
dataset of `(x, y)` batches), which is passed through untouched: this module never imports
TensorFlow.
"""

import logging
import math
import os

import numpy as np

from contrastive.training import distribution
from contrastive.training.callbacks import (
    DivergenceGuard,
    EpochBackup,
    HistoryBackup,
    backed_up_epochs,
    previous_history,
)
from contrastive.training.optim import build_optimizer

log = logging.getLogger(__name__)


def as_arrays(data, name, num_classes=None):
    """`(x, y)` as NumPy arrays when `data` is a pair of arrays, else None (a dataset).

    Checks shapes, and labels against `num_classes` (labels must be -1 or in
    `[0, num_classes)`).
    """
    if data is None or not isinstance(data, (tuple, list)) or len(data) != 2:
        return None
    if not all(hasattr(part, "__array__") for part in data):
        return None
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name} must be (x [N, H, W, C], y [N]). "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty. Received: x.shape={x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers. Received: y.dtype={y.dtype}")
    if num_classes is not None and (y.min() < -1 or y.max() >= num_classes):
        raise ValueError(
            f"{name} labels must be -1 (unlabelled) or in [0, {num_classes}). "
            f"Received: labels in [{y.min()}, {y.max()}] with num_classes={num_classes}"
        )
    return x, y


def labelled_rows(x, y):
    """The rows of `(x, y)` whose label is >= 0."""
    keep = y >= 0
    return x[keep], y[keep]


def labelled_only(x, y, name, hint="unlabelled images cannot train a classifier"):
    """`labelled_rows`, raising ValueError when no row is labelled."""
    x_kept, y_kept = labelled_rows(x, y)
    if len(y_kept) == 0:
        raise ValueError(f"{name} has no labelled example (all {len(y)} labels are -1); {hint}")
    if len(y_kept) < len(y):
        log.info("%s: using %d labelled of %d examples", name, len(y_kept), len(y))
    return x_kept, y_kept


def image_shape_of(data):
    """`(height, width, channels)` of the images in a NumPy pair or a dataset of batches.

    Datasets: read from `element_spec` when they have one (tf.data), else from a first batch
    (the dataset must then be re-iterable).
    """
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        shape = data[0].shape[1:]
    else:
        spec = getattr(data, "element_spec", None)
        if spec is not None:
            shape = tuple(spec[0].shape)[1:]
        else:
            shape = tuple(next(iter(data))[0].shape)[1:]
    if len(shape) != 3 or any(size is None for size in shape):
        raise ValueError(
            "images must be [batch, height, width, channels] with a known size; resize them "
            f"in the input pipeline (data.image_size). Received: image shape {shape}"
        )
    return tuple(int(size) for size in shape)


def steps_per_epoch_of(data, batch_size):
    """Optimiser steps per epoch: `ceil(N / batch_size)` for arrays, the batch count of a
    dataset (`len()`, or one counting pass when its length is unknown)."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return math.ceil(data[0].shape[0] / batch_size)
    cardinality = getattr(data, "cardinality", None)
    if callable(cardinality) and int(cardinality()) == -1:  # tf.data.INFINITE_CARDINALITY
        raise ValueError("datasets must be finite (one pass is one epoch); remove .repeat()")
    try:
        steps = len(data)
    except TypeError:
        log.info("dataset length unknown; counting its batches once")
        steps = sum(1 for _ in data)
    if steps < 1:
        raise ValueError(f"the training dataset has no batch. Received: {steps} batches")
    return int(steps)


def _validation_slice(validation, layout):
    """Validation arrays as `process_slice` cuts them (whole global batches), or unchanged
    when not distributed or not arrays; None when they hold less than one global batch."""
    if layout.distribution == "none" or not (
        isinstance(validation, tuple) and isinstance(validation[0], np.ndarray)
    ):
        return validation
    if len(validation[0]) < layout.global_batch:
        log.info("validation skipped: fewer examples than one global batch")
        return None
    return distribution.process_slice(*validation, layout)


def fit_model(
    model,
    config,
    train,
    validation,
    *,
    epochs,
    learning_rate,
    loss=None,
    metrics=None,
    checkpoint_dir=None,
    callbacks=(),
):
    """Compiles `model` with the configured optimiser and fits it for `epochs` epochs.

    NumPy pairs are fitted with `batch_size=config.train.batch_size, shuffle=True`;
    datasets as they are. A `DivergenceGuard` always runs. The learning rate is scaled for
    the global batch by `train.lr_scaling` (`distribution.scaled_learning_rate`).

    Distribution (`train.distribution`, see `distribution`): build `model` inside
    `distribution.distribution_scope`. Under `data_parallel`, NumPy pairs are cut to this
    process's slice (`distribution.process_slice`) and fed `per_process_batch` at a time;
    a dataset must already yield this process's batches. One line logs processes, devices
    and the per-device and global batch before the first epoch. Only process 0 writes
    checkpoints; every process restores from them.

    Checkpoints: with `checkpoint_dir` set and `config.train.checkpoint_every > 0`, an
    `EpochBackup` saves weights, optimizer state and the finished-epoch count there every
    `checkpoint_every` epochs and after the last. A call that finds a backup resumes from it
    (logged as "resumed from epoch N") and runs only the remaining epochs, so the model ends
    with exactly `epochs` epochs; the returned history holds every epoch, the ones done
    before the interruption included (`HistoryBackup` keeps them beside the weights). The
    backup is kept at the end: the caller deletes `checkpoint_dir` after committing the final
    model. A backup beyond `epochs` raises ValueError.

    Returns:
        The `History` dict: metric name -> list of Python floats, one per epoch run.
    """
    train_cfg = config.train
    layout = distribution.plan_layout(train_cfg)
    if isinstance(train, tuple) and isinstance(train[0], np.ndarray):
        if layout.distribution != "none":
            train = distribution.process_slice(*train, layout)
        validation = _validation_slice(validation, layout)
    # Datasets: each process must already yield its own batches of `per_process_batch`
    # (contrastive.data.read_split's per-process shard selection).
    steps = steps_per_epoch_of(train, layout.per_process_batch)
    scaled_rate = distribution.scaled_learning_rate(learning_rate, train_cfg)
    log.info(distribution.describe(layout))
    if scaled_rate != learning_rate:
        log.info(
            "learning rate %.6g scaled %s for the global batch %d (reference %d): %.6g",
            learning_rate,
            train_cfg.lr_scaling,
            layout.global_batch,
            train_cfg.lr_reference_batch,
            scaled_rate,
        )
    model.compile(
        optimizer=build_optimizer(train_cfg, steps, epochs, scaled_rate),
        loss=loss,
        metrics=metrics,
        jit_compile=train_cfg.jit_compile,
    )
    callbacks = [DivergenceGuard(), *callbacks]
    history_backup = None
    if checkpoint_dir is not None and train_cfg.checkpoint_every > 0:
        finished = backed_up_epochs(checkpoint_dir)
        if finished is not None:
            if finished > epochs:
                raise ValueError(
                    f"checkpoint_dir holds a run of {finished} epochs, more than the "
                    f"epochs={epochs} asked; use a fresh checkpoint_dir. "
                    f"Received: checkpoint_dir={os.fspath(checkpoint_dir)!r}"
                )
            log.info(
                "resumed from epoch %d of %d (backup in %s)",
                finished,
                epochs,
                os.fspath(checkpoint_dir),
            )
        history_backup = HistoryBackup(
            checkpoint_dir,
            previous_history(checkpoint_dir, finished),
            write=layout.is_chief,
        )
        callbacks.append(history_backup)  # before the weights: trimmed on resume if ahead
        callbacks.append(
            EpochBackup(checkpoint_dir, every=train_cfg.checkpoint_every, write=layout.is_chief)
        )

    fit_args = {
        "epochs": epochs,
        "validation_data": validation,
        "callbacks": callbacks,
        "verbose": train_cfg.verbose,
    }
    if isinstance(train, tuple) and isinstance(train[0], np.ndarray):
        x, y = train
        history = model.fit(x, y, batch_size=layout.per_process_batch, shuffle=True, **fit_args)
    else:
        history = model.fit(train, shuffle=False, **fit_args)  # datasets shuffle themselves
    if history_backup is not None:
        return history_backup.history  # earlier runs' epochs included after a resume
    return {key: [float(value) for value in values] for key, values in history.history.items()}
