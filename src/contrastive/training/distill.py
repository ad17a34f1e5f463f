"""Self-distillation over the unlabelled pool (issue 23 item 5; SimCLRv2, Chen et al. 2020,
section 2.3: "distillation via unlabeled examples").

The teacher is the classifier `train_classifier` chose (a head fitted on the frozen
encoder's features). Its class distribution at temperature `train.distill_temperature` on
every pool image, and the one-hot label on each labelled image, are the targets of a
student: the same encoder, trainable, under a linear head started from the teacher's
(`classifier.linear_start`), trained with the weak augmentation for `train.distill_epochs`
epochs at `train.distill_learning_rate` on the soft cross-entropy. The student is kept only
when its validation accuracy is at least the teacher's (validation, never test), as
`finetune` keeps its model (`classifier.train_classifier`).

The pool is held in memory for the student's epochs (images as read, the targets `N x C`
float32): at most `MAX_POOL_BYTES`; a larger pool is cut to the first images that fit (a
dataset stream is shuffled, so a random sample), and the log says so.
"""

import logging

import keras
import numpy as np

from contrastive.training import fitting, probe
from contrastive.training.knn import embed

log = logging.getLogger(__name__)

MAX_POOL_BYTES = 1 << 30  # the images (and targets) the student trains on, held in memory


def teacher_targets(fitted, features, labels, num_classes, temperature):
    """The student's targets `[N, C]` float32: the teacher's class distribution at
    `temperature` where the label is -1, the one-hot label elsewhere.

    Linear teachers' scores are softmax logits; a neighbour teacher's votes are
    probabilities, read as logits through their logarithm (so temperature 1 keeps them).

    Args:
        fitted: `probe.FittedClassifier`, the teacher.
        features: raw features `[N, D]` of the pool.
        labels: int `[N]`, -1 for unlabelled rows.
        num_classes: C.
        temperature: > 0; below 1 sharpens the teacher, above 1 softens it.
    """
    if not temperature > 0:
        raise ValueError(
            f"train.distill_temperature must be > 0. Received: distill_temperature={temperature}"
        )
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(fitted.scores(features), np.float64)
    if fitted.kind not in probe.LINEAR_KINDS:
        scores = np.log(np.maximum(scores, 1e-12))
    logits = scores / temperature
    logits -= logits.max(axis=1, keepdims=True)
    targets = np.exp(logits)
    targets /= targets.sum(axis=1, keepdims=True)
    labelled = labels >= 0
    targets[labelled] = np.eye(num_classes)[labels[labelled]]
    return targets.astype(np.float32)


def pool_arrays(train, num_classes, max_bytes=MAX_POOL_BYTES):
    """`(images, labels)` NumPy arrays of the training pool: `train` itself when it is a
    NumPy pair, else its batches gathered in one pass, cut at `max_bytes` (logged)."""
    arrays = fitting.as_arrays(train, "train", num_classes)
    if arrays is not None:
        return arrays
    images, labels, size = [], [], 0
    for batch_images, batch_labels in train:
        batch_images = np.asarray(batch_images)
        batch_labels = np.asarray(batch_labels).reshape(-1).astype(np.int64)
        row_bytes = batch_images[0].nbytes + 4 * num_classes
        room = (max_bytes - size) // row_bytes
        images.append(batch_images[:room])
        labels.append(batch_labels[:room])
        size += min(room, len(batch_labels)) * row_bytes
        if room < len(batch_labels):
            log.info(
                "distillation: the pool is over %d MiB; the student trains on its first %d images",
                max_bytes >> 20,
                sum(map(len, labels)),
            )
            break
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if len(labels) == 0:
        raise ValueError("the training dataset yielded no image: nothing to distil on")
    return np.concatenate(images), labels


def train_student(config, extractor, fitted, train, *, num_classes, build_student, callbacks=()):
    """Trains a student on the teacher's targets (module docstring).

    Args:
        config: `Config` (`train.distill_*`, `train.batch_size`, the optimiser).
        extractor: the feature model the teacher's head reads (the student trains it in
            place: the caller keeps its weights to restore).
        fitted: the teacher, a `probe.FittedClassifier` on `extractor`'s features.
        train: the pool (`(x, y)` with -1 for unlabelled rows, or a dataset of such batches).
        num_classes: C.
        build_student: `(images, labels) -> keras.Model`, the student (trainable encoder,
            linear head from the teacher's; `classifier.linear_start`).
        callbacks: extra Keras callbacks for the student's epochs.

    Returns:
        `(student, history, record)`, or None when the pool has no unlabelled image (nothing
        to distil). `record`: images and unlabelled images trained on, the teacher's kind.
    """
    train_cfg = config.train
    images, labels = pool_arrays(train, num_classes)
    unlabelled = int((labels < 0).sum())
    if unlabelled == 0:
        log.info("distillation skipped: every image of the pool is labelled")
        return None
    features = embed(extractor, images, train_cfg.batch_size)
    targets = teacher_targets(fitted, features, labels, num_classes, train_cfg.distill_temperature)
    del features
    student = build_student(images, labels)
    log.info(
        "distillation: a student on %d images (%d unlabelled) for %d epochs at %g, "
        "teacher %s at temperature %g",
        len(labels),
        unlabelled,
        train_cfg.distill_epochs,
        train_cfg.distill_learning_rate,
        fitted.kind,
        train_cfg.distill_temperature,
    )
    history = fitting.fit_model(
        student,
        config,
        (images, targets),
        None,
        epochs=train_cfg.distill_epochs,
        learning_rate=train_cfg.distill_learning_rate,
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="teacher_agreement")],
        callbacks=callbacks,
    )
    record = {"images": int(len(labels)), "unlabelled": unlabelled, "teacher": fitted.kind}
    return student, history, record
