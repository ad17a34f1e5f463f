"""Classifiers on an encoder: linear probe / fine-tuning of a pretrained one, and the
cross-entropy baseline trained from scratch."""

import dataclasses

import keras

from contrastive.augment import build_augmenter
from contrastive.models import build_classifier_head, build_encoder
from contrastive.training import distribution, fitting
from contrastive.training.optim import precision_policy
from contrastive.training.pretrain import (
    AUGMENT_SEED,
    CLASSIFIER_SEED,
    ENCODER_SEED,
    _check_classes,
    encoder_width,
)

MODES = ("linear", "finetune")


@keras.saving.register_keras_serializable(package="contrastive")
class FrozenEncoder(keras.Model):
    """Runs `encoder` in inference mode (`training=False`) whatever the caller's mode.

    A functional model passes its own `training` flag to every layer, overriding a
    `training=False` written at graph construction; this wrapper keeps a frozen encoder's
    BatchNorm statistics and dropout in inference mode while the head around it trains.
    Sets `encoder.trainable = False` (the encoder object is shared, not copied).

    Args:
        encoder: `keras.Model`, float `[0, 1]` images -> features.
        **kwargs: `keras.Model` arguments (`name`, ...).
    """

    def __init__(self, encoder, **kwargs):
        kwargs.pop("trainable", None)  # always frozen
        super().__init__(trainable=False, **kwargs)
        self.encoder = encoder
        self.encoder.trainable = False

    def build(self, input_shape):
        if not self.encoder.built:
            self.encoder.build(input_shape)
        self.built = True

    def call(self, images, training=None):
        del training  # always inference mode
        return self.encoder(images, training=False)

    def compute_output_shape(self, input_shape):
        return self.encoder.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(
            config["encoder"], custom_objects=custom_objects
        )
        return cls(**config)


def build_classifier(config, encoder, num_classes, *, mode="linear", name=None):
    """Functional classifier: images `[0, 255]` -> Rescaling -> weak augmenter -> encoder ->
    classifier head (`config.model.classifier_head`) -> softmax probabilities.

    `linear`: the encoder is frozen and runs in inference mode (`FrozenEncoder`).
    `finetune`: the encoder is trainable (`encoder.trainable = True`) and trains with it.
    The encoder is shared, not copied: training the classifier changes it in place. The head
    is built under `config.train.mixed_precision` (its softmax stays float32).

    Args:
        config: `Config`.
        encoder: `keras.Model` with a known input shape.
        num_classes: number of classes, >= 1.
        mode: `"linear"` or `"finetune"`.
        name: model name; defaults to `classifier_<mode>`.

    Returns:
        `keras.Model` (functional), `[B, H, W, C]` -> `[B, num_classes]` probabilities.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
    _check_classes(num_classes)
    image_shape = tuple(encoder.input_shape[1:])
    augmenter = build_augmenter(
        image_shape,
        **dataclasses.asdict(config.augment.weak),
        seed=config.train.seed + AUGMENT_SEED,
        name="weak_augmenter",
    )
    with precision_policy(config.train.mixed_precision):
        if mode == "linear":
            features_model = FrozenEncoder(encoder, name=f"{encoder.name}_frozen")
        else:
            set_trainable(encoder, True)
            features_model = encoder
        head = build_classifier_head(
            config.model.classifier_head,
            encoder.output_shape[-1],
            num_classes,
            hidden_dim=config.model.classifier_hidden_dim,
            dropout=config.model.dropout,
            seed=config.train.seed + CLASSIFIER_SEED,
        )
        images = keras.Input(shape=image_shape, name="images")
        x = keras.layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescaling")(images)
        x = augmenter(x)
        probabilities = head(features_model(x))
        return keras.Model(images, probabilities, name=name or f"classifier_{mode}")


def set_trainable(layer, value):
    """Sets `trainable` on `layer` and, explicitly, on every nested layer.

    Keras' own setter does not reach the layers of a model whose flag already has the value
    (e.g. a `clone_model` copy of a frozen encoder: model trainable, layers frozen).
    """
    layer.trainable = value
    for sublayer in getattr(layer, "layers", ()):
        set_trainable(sublayer, value)


def build_baseline(config, image_shape, num_classes):
    """The cross-entropy baseline: `build_classifier` (finetune) on a fresh encoder."""
    with precision_policy(config.train.mixed_precision):
        encoder = build_encoder(
            config.model.encoder,
            tuple(int(size) for size in image_shape),
            width=encoder_width(config.model),
            seed=config.train.seed + ENCODER_SEED,
        )
    return build_classifier(config, encoder, num_classes, mode="finetune", name="baseline")


def train_classifier(
    config,
    encoder,
    train,
    validation=None,
    *,
    num_classes,
    mode=None,
    checkpoint_dir=None,
    callbacks=(),
):
    """Trains a classifier on `encoder` for `config.train.classifier_epochs` epochs.

    `linear` (frozen encoder) uses `train.classifier_learning_rate`; `finetune` (everything
    trains) uses `train.finetune_learning_rate` for the whole model. Sparse cross-entropy,
    metric `accuracy`. Unlabelled (-1) rows of NumPy data are dropped (ValueError if none is
    labelled); datasets must hold labelled batches only.

    Args:
        config: `Config`.
        encoder: pretrained `keras.Model` (shared: fine-tuning updates it in place).
        train: `(x, y)` NumPy pair or a dataset of `(x, y)` batches.
        validation: same kinds, or None.
        num_classes: number of classes.
        mode: `"linear"`, `"finetune"`, or None for `config.train.classifier_mode`.
        checkpoint_dir: resume/backup directory (see `fitting.fit_model`), or None.
        callbacks: extra Keras callbacks.

    Returns:
        `(classifier, history)`.
    """
    keras.utils.set_random_seed(config.train.seed)
    mode = config.train.classifier_mode if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
    _check_classes(num_classes)
    train, validation = _labelled_data(train, validation, num_classes)
    image_shape = fitting.image_shape_of(train)
    if tuple(encoder.input_shape[1:]) != image_shape:
        raise ValueError(
            f"images of shape {image_shape} do not fit the encoder's input "
            f"{tuple(encoder.input_shape[1:])}. Received: image shape {image_shape}"
        )
    layout = distribution.plan_layout(config.train)
    with distribution.distribution_scope(layout):
        model = build_classifier(config, encoder, num_classes, mode=mode)
    learning_rate = (
        config.train.classifier_learning_rate
        if mode == "linear"
        else config.train.finetune_learning_rate
    )
    history = _fit_classifier(
        model,
        config,
        train,
        validation,
        config.train.classifier_epochs,
        learning_rate,
        checkpoint_dir,
        callbacks,
    )
    return model, history


def train_baseline(
    config, train, validation=None, *, num_classes, checkpoint_dir=None, callbacks=()
):
    """Trains the cross-entropy baseline end to end with `train.learning_rate`.

    Same architecture as the fine-tuned classifier (fresh encoder, weak augmentation) and
    the same epoch budget as pretraining plus classifier training:
    `config.train.epochs + config.train.classifier_epochs` epochs. Unlabelled rows are
    dropped as in `train_classifier`.

    Returns:
        `(classifier, history)`.
    """
    keras.utils.set_random_seed(config.train.seed)
    _check_classes(num_classes)
    train, validation = _labelled_data(train, validation, num_classes)
    layout = distribution.plan_layout(config.train)
    with distribution.distribution_scope(layout):
        model = build_baseline(config, fitting.image_shape_of(train), num_classes)
    history = _fit_classifier(
        model,
        config,
        train,
        validation,
        config.train.epochs + config.train.classifier_epochs,
        config.train.learning_rate,
        checkpoint_dir,
        callbacks,
    )
    return model, history


def _labelled_data(train, validation, num_classes):
    arrays = fitting.as_arrays(train, "train", num_classes)
    if arrays is not None:
        train = fitting.labelled_only(*arrays, "train")
    validation_arrays = fitting.as_arrays(validation, "validation", num_classes)
    if validation_arrays is not None:
        validation = fitting.labelled_rows(*validation_arrays)
        if len(validation[1]) == 0:
            validation = None
    return train, validation


def _fit_classifier(
    model, config, train, validation, epochs, learning_rate, checkpoint_dir, callbacks
):
    with distribution.distribution_scope(distribution.plan_layout(config.train)):
        return fitting.fit_model(
            model,
            config,
            train,
            validation,
            epochs=epochs,
            learning_rate=learning_rate,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            checkpoint_dir=checkpoint_dir,
            callbacks=callbacks,
        )
