"""Classifiers on an encoder: a head fitted on frozen features, a linear probe trained by
gradient descent, fine-tuning of a pretrained encoder, and the cross-entropy baseline trained
from scratch."""

import dataclasses
import logging

import keras
import numpy as np

from contrastive.augment import build_augmenter
from contrastive.models import (
    build_classifier_head,
    build_encoder,
    build_fitted_head,
    feature_model,
)
from contrastive.training import distill, distribution, fitting, probe
from contrastive.training.knn import embed, embed_batches
from contrastive.training.optim import precision_policy
from contrastive.training.pretrain import (
    AUGMENT_SEED,
    CLASSIFIER_SEED,
    ENCODER_SEED,
    _check_classes,
    encoder_width,
)

MODES = ("fitted", "linear", "finetune")
log = logging.getLogger(__name__)


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


def build_classifier(config, encoder, num_classes, *, mode="linear", name=None, head=None):
    """Functional classifier: images `[0, 255]` -> Rescaling -> weak augmenter -> encoder ->
    classifier head (`config.model.classifier_head`) -> softmax probabilities.

    `linear` / `fitted`: the encoder is frozen and runs in inference mode (`FrozenEncoder`).
    `finetune`: the encoder is trainable (`encoder.trainable = True`) and trains with it.
    The encoder is shared, not copied: training the classifier changes it in place. The head
    is built under `config.train.mixed_precision` (its softmax stays float32).

    Args:
        config: `Config`.
        encoder: `keras.Model` with a known input shape.
        num_classes: number of classes, >= 1.
        mode: `"fitted"`, `"linear"` or `"finetune"`.
        name: model name; defaults to `classifier_<mode>`.
        head: a built head (`[B, features]` -> probabilities) to use instead of a fresh
            `config.model.classifier_head` (e.g. `models.build_fitted_head`).

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
        if mode == "finetune":
            set_trainable(encoder, True)
            features_model = encoder
        else:
            features_model = FrozenEncoder(encoder, name=f"{encoder.name}_frozen")
        if head is None:
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
    labelled_train=None,
    details=None,
):
    """A classifier on `encoder` (`config.model.feature_layer` of it), by `mode`:

    - `fitted`: the encoder is frozen; its features of every `train` image are computed once
      and a head is fitted on them (`fit_head`: standardised features, ridge / logistic
      regression / kNN / label spreading chosen by k-fold cross-validation on the labelled
      training images only). `validation` is scored for the record, never used to choose.
    - `linear`: a linear head on the frozen encoder, trained by gradient descent for
      `train.classifier_epochs` at `train.classifier_learning_rate` (unlabelled rows dropped).
    - `finetune`: the fitted head, then encoder and head trained together on the labelled
      images for `train.classifier_epochs` at `train.finetune_learning_rate` from it; the
      fine-tuned model is kept when its validation accuracy is at least the fitted one's,
      else the fitted model (with the encoder's weights before fine-tuning) is returned.
      Without validation data the fine-tuned model is kept.

    With `train.distill_epochs > 0` (`fitted` only), the fitted head then teaches a student
    over the unlabelled images of `train` (`training.distill`): the encoder and a linear head
    started from the fitted one, trained on the teacher's soft targets; the student is kept
    when its validation accuracy is at least the fitted head's (`details`: `distill_kept`,
    `fitted_val_accuracy`, `distilled_val_accuracy`), else the fitted model with the
    encoder's weights before.

    Sparse cross-entropy, metric `accuracy`. Datasets must yield `(x, y)` batches.

    Args:
        config: `Config`.
        encoder: pretrained `keras.Model` (shared: fine-tuning updates it in place).
        train: `(x, y)` NumPy pair or a dataset of `(x, y)` batches; for `fitted` and
            `finetune`, the whole training pool, -1 marking images without a label (they
            enter the features' standardisation and label spreading).
        validation: same kinds, or None.
        num_classes: number of classes.
        mode: one of `MODES`, or None for `config.train.classifier_mode`.
        checkpoint_dir: resume/backup directory (see `fitting.fit_model`), or None.
        callbacks: extra Keras callbacks (gradient-descent phases only).
        labelled_train: `finetune`: the labelled batches it trains on (e.g. the labelled
            subset repeated to `train.labeled_steps_per_epoch` batches an epoch); None: the
            labelled rows of `train`.
        details: a dict this call fills with how the classifier was chosen (`fit_head`'s
            selection; `finetune` adds `fitted_val_accuracy`, `finetuned_val_accuracy` and
            `kept`), or None.

    Returns:
        `(classifier, history)`.
    """
    keras.utils.set_random_seed(config.train.seed)
    mode = config.train.classifier_mode if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
    _check_classes(num_classes)
    details = {} if details is None else details
    image_shape = fitting.image_shape_of(train)
    if tuple(encoder.input_shape[1:]) != image_shape:
        raise ValueError(
            f"images of shape {image_shape} do not fit the encoder's input "
            f"{tuple(encoder.input_shape[1:])}. Received: image shape {image_shape}"
        )
    if mode == "linear":
        train, validation = _labelled_data(train, validation, num_classes)
        layout = distribution.plan_layout(config.train)
        with distribution.distribution_scope(layout):
            model = build_classifier(config, encoder, num_classes, mode=mode)
        history = _fit_classifier(
            model,
            config,
            train,
            validation,
            config.train.classifier_epochs,
            config.train.classifier_learning_rate,
            checkpoint_dir,
            callbacks,
        )
        return model, history
    extractor = feature_model(encoder, config.model.feature_layer)
    model, history, fitted = fit_head(
        config, extractor, train, validation, num_classes=num_classes, details=details
    )
    if mode == "fitted":
        if config.train.distill_epochs > 0:
            return _distill(
                config,
                extractor,
                fitted,
                model,
                history,
                train,
                validation,
                num_classes=num_classes,
                callbacks=callbacks,
                details=details,
            )
        return model, history
    return _finetune(
        config,
        extractor,
        fitted,
        model,
        history,
        labelled_train if labelled_train is not None else train,
        validation,
        num_classes=num_classes,
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
        details=details,
    )


def fit_head(config, extractor, train, validation=None, *, num_classes, details=None):
    """A head fitted on `extractor`'s frozen features (`training.probe.select_classifier`).

    The features of every `train` image are computed once (inference mode, no augmentation;
    memory `N x D` floats, no image kept); the standardisation uses all of them, the
    selection and the fit only the labelled ones, with `train.probe_candidates`,
    `train.probe_folds` folds, `train.probe_repeats` draws of them and
    `train.probe_pool_tolerance`. `validation` is
    embedded only to report `val_accuracy`.

    Returns:
        `(classifier, history, fitted)`: the classifier model (`build_classifier` in `fitted`
        mode with the fitted head), a one-entry history (`accuracy` on the labelled training
        images, `val_accuracy` when there is validation data) and the
        `probe.FittedClassifier`. `details` (a dict) gets the selection record.
    """
    features, labels = _features(extractor, train, config.train.batch_size, num_classes)
    if not (labels >= 0).any():
        raise ValueError(
            f"train has no labelled example (all {len(labels)} labels are -1); unlabelled "
            "images cannot fit a classifier"
        )
    log.info(
        "fitting a head on %d x %d features (%d labelled)",
        *features.shape,
        int((labels >= 0).sum()),
    )
    fitted = probe.select_classifier(
        features,
        labels,
        num_classes,
        candidates=config.train.probe_candidates,
        folds=config.train.probe_folds,
        seed=config.train.seed,
        knn_temperature=config.train.knn_temperature,
        repeats=config.train.probe_repeats,
        pool_tolerance=config.train.probe_pool_tolerance,
    )
    labelled = labels >= 0
    history = {"accuracy": [float(np.mean(fitted.predict(features[labelled]) == labels[labelled]))]}
    del features
    with distribution.distribution_scope(distribution.plan_layout(config.train)):
        head = build_fitted_head(fitted, extractor.output_shape[-1], num_classes)
        model = build_classifier(config, extractor, num_classes, mode="fitted", head=head)
    accuracy = _validation_accuracy(extractor, fitted, validation, config, num_classes)
    if accuracy is not None:
        history["val_accuracy"] = [accuracy]
    if details is not None:
        details.update(fitted.selection)
        details["val_accuracy"] = accuracy
    log.info(
        "fitted head: %s (cv accuracy %.4f over %d folds of %d labelled images)%s",
        fitted.kind,
        fitted.selection["cv_accuracy"],
        fitted.selection["folds"],
        fitted.selection["labelled"],
        "" if accuracy is None else f", validation accuracy {accuracy:.4f}",
    )
    return model, history, fitted


def _finetune(
    config,
    extractor,
    fitted,
    fitted_model,
    fitted_history,
    train,
    validation,
    *,
    num_classes,
    checkpoint_dir,
    callbacks,
    details,
):
    """`train_classifier`'s `finetune` after the fitted head: start from a linear head (the
    fitted one, or logistic regression refitted when a neighbour head won), train everything,
    keep the better of the two on validation."""
    before = extractor.get_weights()
    model = linear_start(config, extractor, fitted, train, num_classes=num_classes)
    train, validation = _labelled_data(train, validation, num_classes)
    history = _fit_classifier(
        model,
        config,
        train,
        validation,
        config.train.classifier_epochs,
        config.train.finetune_learning_rate,
        checkpoint_dir,
        callbacks,
    )
    tuned = history.get("val_accuracy", [None])[-1]
    untuned = fitted_history.get("val_accuracy", [None])[-1]
    keep = "finetuned" if _trained_is_kept(tuned, untuned) else "fitted"
    details.update(fitted_val_accuracy=untuned, finetuned_val_accuracy=tuned, kept=keep)
    log.info(
        "finetune: validation accuracy %s fitted, %s fine-tuned: kept %s", untuned, tuned, keep
    )
    if keep == "fitted":
        _restore_frozen(extractor, before)
        return fitted_model, fitted_history
    return model, history


def _trained_is_kept(trained_accuracy, fitted_accuracy):
    """A model trained from the fitted head (fine-tuned, distilled) is kept unless its
    validation accuracy is below the fitted head's (kept when either has none)."""
    return (
        trained_accuracy is None or fitted_accuracy is None or trained_accuracy >= fitted_accuracy
    )


def _restore_frozen(extractor, weights):
    """The encoder back to its weights before a discarded training, frozen again."""
    extractor.set_weights(weights)
    set_trainable(extractor, False)


def _distill(
    config,
    extractor,
    fitted,
    fitted_model,
    fitted_history,
    train,
    validation,
    *,
    num_classes,
    callbacks,
    details,
):
    """`train_classifier`'s self-distillation after the fitted head (`training.distill`):
    the student is kept when its validation accuracy is at least the fitted head's."""
    before = extractor.get_weights()
    # The student's model carries its views' augmenter (inactive when it serves).
    views = dataclasses.asdict(getattr(config.augment, config.train.distill_augment))
    student_config = config.replace({"augment.weak": views})
    trained = distill.train_student(
        config,
        extractor,
        fitted,
        train,
        num_classes=num_classes,
        build_student=lambda images, labels: linear_start(
            student_config, extractor, fitted, (images, labels), num_classes=num_classes
        ),
        callbacks=callbacks,
    )
    if trained is None:
        details.update(distill_kept="fitted", distill_skipped="every image is labelled")
        return fitted_model, fitted_history
    student, history, record = trained
    student_accuracy = _model_accuracy(student, validation, config.train.batch_size)
    teacher_accuracy = fitted_history.get("val_accuracy", [None])[-1]
    keep = "student" if _trained_is_kept(student_accuracy, teacher_accuracy) else "fitted"
    details.update(
        distill_images=record["images"],
        distill_unlabelled=record["unlabelled"],
        fitted_val_accuracy=teacher_accuracy,
        distilled_val_accuracy=student_accuracy,
        distill_kept=keep,
    )
    log.info(
        "distillation: validation accuracy %s fitted, %s student: kept %s",
        teacher_accuracy,
        student_accuracy,
        keep,
    )
    if keep == "fitted":
        _restore_frozen(extractor, before)
        return fitted_model, fitted_history
    if student_accuracy is not None:
        history["val_accuracy"] = [student_accuracy]
    return student, history


def _model_accuracy(model, validation, batch_size):
    """`model`'s accuracy on the labelled rows of `(x, y)` NumPy validation data or of a
    dataset of batches; None without validation data or labelled rows."""
    if validation is None:
        return None
    arrays = fitting.as_arrays(validation, "validation")
    batches = [arrays] if arrays is not None else validation
    right = total = 0
    for images, labels in _bounded(batches, batch_size):
        labels = labels.reshape(-1)
        keep = labels >= 0
        predicted = np.argmax(np.asarray(model.predict_on_batch(images)), axis=1)
        right += int((predicted[keep] == labels[keep]).sum())
        total += int(keep.sum())
    return right / total if total else None


def linear_start(config, extractor, fitted, train, *, num_classes):
    """A trainable classifier (`build_classifier` in `finetune` mode) on `extractor` whose
    head starts as the fitted linear head: `fitted` itself when it is ridge or logistic
    regression, else logistic regression fitted on `train`'s features (a neighbour head
    has no weights to train). The start of fine-tuning and of self-distillation's student."""
    if fitted.kind not in probe.LINEAR_KINDS:
        features, labels = _features(extractor, train, config.train.batch_size, num_classes)
        fitted = probe.select_classifier(
            features, labels, num_classes, candidates=("logistic",), folds=2, seed=config.train.seed
        )
        del features
    with distribution.distribution_scope(distribution.plan_layout(config.train)):
        head = build_fitted_head(fitted, extractor.output_shape[-1], num_classes)
        return build_classifier(config, extractor, num_classes, mode="finetune", head=head)


def _features(extractor, data, batch_size, num_classes):
    """Features and labels of every image of a NumPy pair or a dataset of batches."""
    arrays = fitting.as_arrays(data, "train", num_classes)
    if arrays is not None:
        return embed(extractor, arrays[0], batch_size), arrays[1].astype(np.int64)
    features, labels = [], []
    for batch_features, batch_labels in embed_batches(
        extractor, _bounded(data, batch_size), batch_size
    ):
        features.append(batch_features)
        labels.append(np.asarray(batch_labels).reshape(-1).astype(np.int64))
    if not features:
        raise ValueError("the dataset yielded no batch: nothing to compute features of")
    return np.concatenate(features), np.concatenate(labels)


def _bounded(batches, size):
    """`(images, labels)` NumPy batches of at most `size` rows from any batches."""
    for images, labels in batches:
        images, labels = np.asarray(images), np.asarray(labels)
        for start in range(0, images.shape[0], size):
            yield images[start : start + size], labels[start : start + size]


def _validation_accuracy(extractor, fitted, validation, config, num_classes):
    if validation is None:
        return None
    features, labels = _features(extractor, validation, config.train.batch_size, num_classes)
    labelled = labels >= 0
    if not labelled.any():
        return None
    return float(np.mean(fitted.predict(features[labelled]) == labels[labelled]))


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
