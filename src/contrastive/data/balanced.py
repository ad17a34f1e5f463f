"""Class-balanced labelled images in every batch (SupCon at few labels,
`train.labeled_per_class`): `balanced_batches` deals a labelled set class by class,
`with_balanced_labels` ends each batch of a stream with one of its batches."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from contrastive.data.errors import DataError


def balanced_batches(
    images: np.ndarray, labels: np.ndarray, per_class: int, *, seed: int = 0
) -> tf.data.Dataset:
    """An endless stream of `(images, labels)` batches of `per_class` rows of every class
    present in `labels` (>= 0), in class order; each class's rows are dealt in a new
    `seed`-seeded order on every pass over them. The arrays stay in memory."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0 or (labels < 0).any():
        raise DataError(
            "balanced batches need labelled images only (labels >= 0), at least one. "
            f"Received: {labels.size} labels, {int((labels < 0).sum())} of them -1"
        )
    classes = np.unique(labels)
    streams = [
        tf.data.Dataset.from_tensor_slices(np.flatnonzero(labels == label))
        .shuffle(
            int((labels == label).sum()), seed=seed + int(label), reshuffle_each_iteration=True
        )
        .repeat()
        for label in classes
    ]
    order = tf.data.Dataset.range(len(classes)).repeat()
    stored_images, stored_labels = tf.constant(images), tf.constant(labels.astype(np.int64))
    return (
        tf.data.Dataset.choose_from_datasets(streams, order)
        .batch(per_class * len(classes), drop_remainder=True)
        .map(lambda rows: (tf.gather(stored_images, rows), tf.gather(stored_labels, rows)))
    )


def with_balanced_labels(
    train: tf.data.Dataset, balanced: tf.data.Dataset, batch_size: int
) -> tf.data.Dataset:
    """`train`'s number of batches (it must know it), each of `batch_size` images:
    `batch_size - m` of `train`'s examples in its order (a new pass when one ends), then one
    batch of `m` from `balanced`."""
    labelled = int(balanced.element_spec[1].shape[0])
    if labelled >= batch_size:
        raise DataError(
            f"train.labeled_per_class: {labelled} labelled images a batch (that many of each "
            f"class with labels) leave no room for the pool in a batch of {batch_size}; "
            "lower train.labeled_per_class or raise train.batch_size"
        )
    steps = len(train)
    pool = train.unbatch().repeat().batch(batch_size - labelled, drop_remainder=True)

    def joined(pool_batch, labelled_batch):
        images = tf.concat([pool_batch[0], labelled_batch[0]], axis=0)
        labels = tf.concat([pool_batch[1], tf.cast(labelled_batch[1], pool_batch[1].dtype)], 0)
        return images, labels

    return (
        tf.data.Dataset.zip(pool, balanced)
        .map(joined)
        .take(steps)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .prefetch(tf.data.AUTOTUNE)
    )
