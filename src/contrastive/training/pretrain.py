"""Contrastive pretraining: the `PretrainModel`, its builder and the `pretrain` entry point."""

import dataclasses

import keras
from keras import ops

from contrastive import methods, validation
from contrastive.augment import build_augmenter
from contrastive.models import build_encoder, build_projection_head
from contrastive.training import distribution, fitting
from contrastive.training.knn import KnnMonitor
from contrastive.training.optim import precision_policy

# Offsets from `train.seed` so that no two components draw from the same seed.
ENCODER_SEED, PROJECTION_SEED, CLASSIFIER_SEED, AUGMENT_SEED = 0, 1000, 2000, 3000


@keras.saving.register_keras_serializable(package="contrastive")
class PretrainModel(keras.Model):
    """Encoder + projection head trained with a contrastive loss on augmented views.

    Forward pass (`call`): images `[B, H, W, C]` in `[0, 255]` -> `Rescaling(1/255)` -> the
    batch repeated `num_views` times (`[V * B, ...]`, view-major) -> augmenter -> encoder ->
    projection head, one pass for all views (BatchNorm sees all views together) -> outputs
    reshaped image-major. Augmentation runs only with `training=True`. With `training=False`
    all views are the same image: `call` is deterministic (prediction, saved-model checks),
    and the validation contrastive loss and accuracy score identical views, an easy task;
    judge validation by `val_knn_accuracy` and `val_probe_accuracy`.

    Loss (`compute_loss`, float32 whatever the compute dtype): the method's loss
    (`contrastive.methods`) on its views of each image (`Method.views`: all, or the first
    only as `npairs`), given the labels when `Method.uses_labels` (`supcon`, `npairs`) and
    None otherwise (`simclr`: an image's positives are its other views), plus, when
    `num_classes` is set, the online linear probe's cross-entropy. The probe is a
    `Dense(num_classes)` on `stop_gradient(features)`: its loss trains the probe only and
    leaves the encoder untouched.

    Unlabelled images (label -1): each gets a label of its own, `-(index + 2)`, so its only
    positives are its own other views (SupCon), it targets only itself (n-pairs), and it is
    left out of the probe. With `y=None` every image is unlabelled.

    Metrics (besides Keras' `loss`, the total optimised):
    - `contrastive_loss`: the contrastive term alone;
    - `contrastive_accuracy`: over all `B * V` entries that have a positive, the fraction
      whose most similar other entry (cosine of projections, self excluded) is a positive
      (same image, or same label for a method that uses labels);
    - `probe_loss`, `probe_accuracy` (only with a probe): cross-entropy and accuracy of the
      probe over the labelled images' views.

    Args:
        encoder: `keras.Model`, float `[0, 1]` images -> features `[B, F]`.
        projection_head: `keras.Model`, `[B, F]` -> `[B, D]`.
        augmenter: layer/model applied to float `[0, 1]` images (random only when training).
        method: a pretraining method of `contrastive.methods` (`"supcon"`, `"simclr"`,
            `"npairs"`, ...). Defaults to `"supcon"`.
        temperature: loss temperature, > 0. Defaults to `0.1`.
        base_temperature: optional loss scale `temperature / base_temperature`.
        num_views: augmented views per image, >= `Method.min_views` (2 for a method
            without labels). Defaults to `2`.
        num_classes: classes of the online probe; None disables it.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Outputs of `call`: dict with `projections` `[B, V, D]`, `features` `[B, V, F]` and, with
    a probe, `probe_logits` `[B, V, num_classes]`.
    """

    def __init__(
        self,
        encoder,
        projection_head,
        augmenter,
        *,
        method="supcon",
        temperature=0.1,
        base_temperature=None,
        num_views=2,
        num_classes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spec = methods.get(method)
        if not spec.pretrains:
            raise ValueError(
                f"method {method} has no pretraining step; pretrain with one of "
                f"{list(methods.pretraining_names())}. Received: method={method!r}"
            )
        validation.check_int("num_views", num_views)
        if num_views < spec.min_views:
            raise ValueError(
                f"{method} needs num_views >= {spec.min_views} (an image's only positives are "
                f"its other views). Received: num_views={num_views}"
            )
        validation.check_int("num_classes", num_classes, allow_none=True)
        self.encoder = encoder
        self.projection_head = projection_head
        self.augmenter = augmenter
        self.method = method
        self._spec = spec
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.num_views = num_views
        self.num_classes = num_classes
        self.objective = spec.build_loss(temperature, base_temperature)
        self.rescaling = keras.layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescaling")
        # float32: the probe is tiny, and its logits feed a float32 cross-entropy.
        self.probe = (
            None
            if num_classes is None
            else keras.layers.Dense(num_classes, dtype="float32", name="probe")
        )
        self.contrastive_loss_tracker = keras.metrics.Mean(name="contrastive_loss")
        self.contrastive_accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")
        if self.probe is not None:
            self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
            self.probe_accuracy_tracker = keras.metrics.Mean(name="probe_accuracy")

    def build(self, input_shape):
        # The sub-models come built (functional); only the probe needs its input size.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if self.probe is not None and not self.probe.built:
            self.probe.build((None, self.encoder.output_shape[-1]))
        self.built = True

    def call(self, images, training=False):
        images = self.rescaling(images)
        views = images
        if self.num_views > 1:
            views = ops.concatenate([images] * self.num_views, axis=0)
        views = self.augmenter(views, training=training)
        features = self.encoder(views, training=training)
        projections = self.projection_head(features, training=training)
        outputs = {
            "projections": self._image_major(projections),
            "features": self._image_major(features),
        }
        if self.probe is not None:
            logits = self.probe(ops.cast(ops.stop_gradient(features), "float32"))
            outputs["probe_logits"] = self._image_major(logits)
        return outputs

    def _image_major(self, values):
        """`[V * B, D]` view-major rows -> `[B, V, D]`."""
        values = ops.reshape(values, (self.num_views, -1, values.shape[-1]))
        return ops.transpose(values, (1, 0, 2))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del x, sample_weight, training  # sample weights have no meaning for these losses
        projections = ops.cast(y_pred["projections"], "float32")
        batch_size = ops.shape(projections)[0]
        labels = None if y is None else ops.reshape(ops.cast(y, "int32"), (-1,))
        anchor_labels = unique_unlabelled(labels, batch_size)
        if self._spec.views is not None:
            projections = projections[:, : self._spec.views, :]
        uses_labels = self._spec.uses_labels
        contrastive = self.objective(anchor_labels if uses_labels else None, projections)
        # Without labels only the other views are positives: label each image by its index.
        match_labels = anchor_labels if uses_labels else ops.arange(batch_size)
        hits, has_positive = contrastive_top1(projections, match_labels)
        self.contrastive_loss_tracker.update_state(contrastive)
        self.contrastive_accuracy_tracker.update_state(hits, sample_weight=has_positive)
        total = contrastive
        if self.probe is not None and labels is not None:
            total = total + self._probe_loss(y_pred["probe_logits"], labels)
        for extra in self.losses:  # weight regularisers, `add_loss`
            total = total + ops.cast(ops.sum(extra), "float32")
        return total

    def _probe_loss(self, logits, labels):
        """Cross-entropy of the probe over labelled images' views; updates probe metrics."""
        logits = ops.cast(logits, "float32")
        logits = ops.reshape(logits, (-1, logits.shape[-1]))  # image-major [B * V, C]
        labels = ops.repeat(labels, self.num_views)
        weights = ops.cast(ops.greater_equal(labels, 0), "float32")
        targets = ops.maximum(labels, 0)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            targets, logits, from_logits=True
        )
        loss = ops.sum(cross_entropy * weights) / ops.maximum(ops.sum(weights), 1.0)
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), targets), "float32")
        self.probe_loss_tracker.update_state(loss)
        self.probe_accuracy_tracker.update_state(correct, sample_weight=weights)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projection_head": keras.saving.serialize_keras_object(self.projection_head),
                "augmenter": keras.saving.serialize_keras_object(self.augmenter),
                "method": self.method,
                "temperature": self.temperature,
                "base_temperature": self.base_temperature,
                "num_views": self.num_views,
                "num_classes": self.num_classes,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("encoder", "projection_head", "augmenter"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)


def unique_unlabelled(labels, batch_size):
    """Replaces each negative (unlabelled) label by `-(index + 2)`, unique in the batch.

    Every unlabelled image becomes a class of its own, so it is never a positive of another
    image whatever the loss does with negative labels. `labels=None` means all unlabelled.

    Args:
        labels: int `[B]` or None.
        batch_size: `B` (a scalar, possibly symbolic).

    Returns:
        int32 `[B]`.
    """
    own = -2 - ops.arange(batch_size, dtype="int32")
    if labels is None:
        return own
    labels = ops.cast(labels, "int32")
    return ops.where(ops.greater_equal(labels, 0), labels, own)


def contrastive_top1(projections, labels):
    """Is each entry's nearest other entry one of its positives? (top-1 among views)

    With the `B * V` projections L2-normalised, entry `i`'s nearest neighbour is
    `argmax_{j != i} z_i . z_j`; it is a hit when entry `j` has the same label (all views of
    an image share its label; give unlabelled images distinct labels, `unique_unlabelled`,
    and use the image index as the label for the unsupervised case).

    Args:
        projections: `[B, V, D]`.
        labels: int `[B]`.

    Returns:
        `(hits, has_positive)`, float32 `[B * V]` each: 1.0 where the nearest entry is a
        positive, and 1.0 where the entry has any positive (use it as the metric's weight).
    """
    projections = ops.cast(projections, "float32")
    views, dim = projections.shape[1], projections.shape[2]
    embeddings = ops.reshape(projections, (-1, dim))
    squared_norm = ops.sum(ops.square(embeddings), axis=-1, keepdims=True)
    embeddings = embeddings * ops.rsqrt(ops.maximum(squared_norm, 1e-12))
    entry_labels = ops.repeat(ops.cast(labels, "int32"), views)
    entries = ops.arange(ops.shape(embeddings)[0])
    is_self = ops.equal(entries[:, None], entries[None, :])
    similarity = ops.matmul(embeddings, ops.transpose(embeddings))
    # Cosine similarities are >= -1, so -2 excludes self without an infinity.
    similarity = ops.where(is_self, -2.0, similarity)
    nearest = ops.argmax(similarity, axis=1)
    is_positive = ops.logical_and(
        ops.equal(entry_labels[:, None], entry_labels[None, :]), ops.logical_not(is_self)
    )
    positive = ops.cast(is_positive, "float32")
    hits = ops.take_along_axis(positive, ops.expand_dims(nearest, 1), axis=1)[:, 0]
    has_positive = ops.cast(ops.greater(ops.sum(positive, axis=1), 0.0), "float32")
    return hits, has_positive


def build_pretrain_model(config, image_shape, num_classes=None):
    """A built `PretrainModel` from `config` for images of `image_shape`.

    Encoder `config.model.encoder` (`width` only for `simclr_cnn`, as the config documents),
    projection head `config.model.projection_head`, strong augmenter `config.augment.strong`,
    loss settings from `config.train`; the probe has `num_classes` outputs when
    `config.train.online_probe` is set. Encoder and heads are built under
    `config.train.mixed_precision`; the rescaling, augmenter and probe stay float32.

    Args:
        config: `Config`.
        image_shape: `(height, width, channels)`.
        num_classes: classes of the online probe, or None for no probe.

    Returns:
        `PretrainModel`, built for `[None, *image_shape]`.
    """
    image_shape = tuple(int(size) for size in image_shape)
    seed = config.train.seed
    augmenter = build_augmenter(
        image_shape,
        **dataclasses.asdict(config.augment.strong),
        seed=seed + AUGMENT_SEED,
        name="strong_augmenter",
    )
    with precision_policy(config.train.mixed_precision):
        encoder = build_encoder(
            config.model.encoder,
            image_shape,
            width=encoder_width(config.model),
            seed=seed + ENCODER_SEED,
        )
        projection_head = build_projection_head(
            config.model.projection_head,
            encoder.output_shape[-1],
            projection_dim=config.model.projection_dim,
            hidden_dim=config.model.projection_hidden_dim,
            seed=seed + PROJECTION_SEED,
        )
        model = PretrainModel(
            encoder,
            projection_head,
            augmenter,
            method=config.train.method,
            temperature=config.train.temperature,
            base_temperature=config.train.base_temperature,
            num_views=config.train.num_views,
            num_classes=num_classes if config.train.online_probe else None,
            name=f"pretrain_{config.train.method}",
        )
    model.build((None, *image_shape))
    return model


def encoder_width(model_cfg):
    """`model.width` applies to `simclr_cnn` only; the other encoders use their default."""
    return model_cfg.width if model_cfg.encoder == "simclr_cnn" else None


def pretrain(
    config,
    train,
    validation=None,
    *,
    num_classes,
    checkpoint_dir=None,
    callbacks=(),
    knn_sample=None,
):
    """Pretrains an encoder with `config.train.method` for `config.train.epochs` epochs.

    NumPy training data without `config.train.use_unlabeled` drops its unlabelled (-1)
    rows; with it, they stay and count as images of their own (see `PretrainModel`), and
    with `train.labeled_per_class` a method that reads labels gets that many labelled images
    of each class at the end of every batch (`contrastive.data.balanced`, as the pipeline's
    streamed data).
    Datasets are passed to `fit` as they are. A `KnnMonitor` logs `val_knn_accuracy` each
    epoch (at most `train.knn_max_examples` of each set) on `knn_sample` when given, else,
    when both `train` and `validation` are NumPy pairs, with their labelled images.

    Args:
        config: `Config`.
        train: `(x uint8 [N, H, W, C], y int [N])` NumPy pair, or a finite, re-iterable
            dataset of `(x, y)` batches (e.g. `tf.data`).
        validation: same kinds, or None.
        num_classes: number of classes (online probe, label checks).
        checkpoint_dir: resume/backup directory (see `fitting.fit_model`), or None.
        callbacks: extra Keras callbacks.
        knn_sample: `(reference_x, reference_y, query_x, query_y)` NumPy arrays for the kNN
            monitor (a bounded sample of streamed splits), or None.

    Returns:
        `(encoder, history)`: the trained encoder (`keras.Model`, float `[0, 1]` images ->
        features) and the `History` dict (after a resume, only the epochs run by this call).
        A control method (`Method.control`, the random-init control) trains nothing:
        `random_init`'s untrained encoder and an empty history.
    """
    if methods.get(config.train.method).control:
        return random_init(config, train, validation, num_classes=num_classes)
    keras.utils.set_random_seed(config.train.seed)
    _check_classes(num_classes)
    arrays = fitting.as_arrays(train, "train", num_classes)
    if arrays is not None and not config.train.use_unlabeled:
        train = arrays = fitting.labelled_only(
            *arrays, "train", hint=("set train.use_unlabeled=true to pretrain on unlabelled images")
        )
    elif arrays is not None:
        train = arrays
    validation_arrays = fitting.as_arrays(validation, "validation", num_classes)
    if validation_arrays is not None:
        validation = validation_arrays
    layout = distribution.plan_layout(config.train)
    if arrays is not None and _balanced(config, arrays[1]):
        train = _balanced_stream(config, *arrays, layout)
    with distribution.distribution_scope(layout):
        model = build_pretrain_model(config, fitting.image_shape_of(train), num_classes)
        monitors = []
        if knn_sample is None and arrays is not None and validation_arrays is not None:
            knn_sample = (
                *fitting.labelled_rows(*arrays),
                *fitting.labelled_rows(*validation_arrays),
            )
        if knn_sample is not None and layout.processes == 1:
            reference, query = tuple(knn_sample[:2]), tuple(knn_sample[2:])
            if len(reference[1]) and len(query[1]):
                monitors.append(
                    KnnMonitor(
                        model.encoder,
                        *reference,
                        *query,
                        k=config.train.knn_k,
                        temperature=config.train.knn_temperature,
                        max_examples=config.train.knn_max_examples,
                        seed=config.train.seed,
                    )
                )
        history = fitting.fit_model(
            model,
            config,
            train,
            validation,
            epochs=config.train.epochs,
            learning_rate=config.train.learning_rate,
            checkpoint_dir=checkpoint_dir,
            callbacks=[*monitors, *callbacks],
        )
    return model.encoder, history


def _balanced(config, labels) -> bool:
    """Whether pretraining batches carry `train.labeled_per_class` labelled images of each
    class: a method that reads labels, on data with unlabelled rows (few labels)."""
    uses_labels = methods.get(config.train.method).uses_labels
    return bool(config.train.labeled_per_class and uses_labels and (labels < 0).any())


def _balanced_stream(config, images, labels, layout):
    """NumPy training data as the pipeline streams it with `train.labeled_per_class`: this
    process's shuffled batches, each ending with that many labelled images of each class
    (`contrastive.data.balanced`)."""
    import numpy as np
    import tensorflow as tf

    from contrastive.data.balanced import balanced_batches, with_balanced_labels

    if layout.distribution != "none":
        images, labels = distribution.process_slice(images, labels, layout)
    seed = config.train.seed + layout.process_index
    pool = (
        tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
        .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        .batch(layout.per_process_batch, drop_remainder=layout.distribution != "none")
    )
    known = labels >= 0
    balanced = balanced_batches(
        images[known], labels[known], config.train.labeled_per_class, seed=seed
    )
    return with_balanced_labels(pool, balanced, layout.per_process_batch)


def random_init(config, train, validation=None, *, num_classes, **unused):
    """The random-init control: `config.model.encoder` with the weights `pretrain` would start
    from (seed `train.seed`), not trained at all.

    A "method" without pretraining, called as `pretrain` is (its other keyword arguments,
    checkpoints, callbacks and the kNN sample, are ignored), so that a pipeline runs it where a
    method pretrains and the same classifier step follows: what a classifier reaches on it is
    what the architecture gives for free, the bar a pretraining method must clear. The data
    arguments only give the image shape; nothing is read or trained.

    Returns:
        `(encoder, history)`: the untrained encoder and an empty history.
    """
    del validation, unused  # nothing to train or monitor
    _check_classes(num_classes)
    with distribution.distribution_scope(distribution.plan_layout(config.train)):
        with precision_policy(config.train.mixed_precision):
            encoder = build_encoder(
                config.model.encoder,
                fitting.image_shape_of(train),
                width=encoder_width(config.model),
                seed=config.train.seed + ENCODER_SEED,
            )
    return encoder, {}


def _check_classes(num_classes):
    validation.check_int("num_classes", num_classes)
