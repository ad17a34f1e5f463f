"""Tests for contrastive.training: pretraining, classifiers, schedules, guards, resume, saving.

Tiny models (`small_cnn` on 16x16x1) on a synthetic 4-class dataset whose classes are
distinct textures (horizontal stripes, vertical stripes, checkerboard, disk) at a random
phase, with pixel noise; every test runs on each Keras backend.
"""

import json
import logging
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from contrastive import training
from contrastive.augment import build_augmenter
from contrastive.config import load_config
from contrastive.losses import npairs_loss, supcon_loss
from contrastive.models import build_encoder
from contrastive.training import (
    FrozenEncoder,
    PretrainModel,
    TrainingDivergedError,
    build_classifier,
    build_learning_rate,
    build_optimizer,
    build_pretrain_model,
    contrastive_top1,
    precision_policy,
    unique_unlabelled,
)

pytestmark = pytest.mark.backend

NUM_CLASSES = 4
IMAGE_SHAPE = (16, 16, 1)


def textures(count, seed=0, size=16):
    """uint8 images `[count, size, size, 1]` of 4 texture classes, and int64 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count)
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.empty((count, size, size, 1), np.float32)
    for index, label in enumerate(labels):
        phase = rng.integers(0, 4)
        if label == 0:
            pattern = ((rows + phase) // 2) % 2
        elif label == 1:
            pattern = ((columns + phase) // 2) % 2
        elif label == 2:
            pattern = ((rows + phase) // 2 + (columns + phase) // 2) % 2
        else:
            pattern = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (size / 4) ** 2
        noise = rng.normal(0.0, 0.1, (size, size))
        images[index, :, :, 0] = 0.2 + 0.6 * pattern + noise
    return (np.clip(images, 0.0, 1.0) * 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return {"train": textures(512, seed=0), "validation": textures(256, seed=1)}


def make_config(**train):
    overrides = {
        "train.epochs": 2,
        "train.classifier_epochs": 2,
        "train.batch_size": 64,
        "train.learning_rate": 0.003,
        "train.classifier_learning_rate": 0.01,
        "train.finetune_learning_rate": 0.001,
        "train.knn_k": 10,
        "train.verbose": 0,
        "train.checkpoint_every": 1,
    }
    overrides.update({f"train.{key}": value for key, value in train.items()})
    return load_config("tiny", overrides)


@pytest.fixture(scope="module")
def pretrained(data):
    """One SupCon run shared by the tests that need a trained encoder."""
    encoder, history = training.pretrain(
        make_config(method="supcon"), data["train"], data["validation"], num_classes=NUM_CLASSES
    )
    return encoder, history


def weights_of(model):
    return [np.array(weight) for weight in model.get_weights()]


# ---------------------------------------------------------------------------------------------
# pretraining


@pytest.mark.slow
def test_supcon_pretraining_lowers_loss_and_separates_classes(pretrained):
    _, history = pretrained
    assert len(history["loss"]) == 2
    assert history["contrastive_loss"][-1] < history["contrastive_loss"][0]
    assert history["val_knn_accuracy"][-1] > 0.6  # chance is 0.25
    for key in ("contrastive_accuracy", "probe_loss", "probe_accuracy", "val_probe_accuracy"):
        assert len(history[key]) == 2, key
    # The total optimised is the contrastive loss plus the probe's cross-entropy.
    np.testing.assert_allclose(
        history["loss"][-1],
        history["contrastive_loss"][-1] + history["probe_loss"][-1],
        rtol=1e-4,
    )


@pytest.mark.slow
def test_pretrain_returns_bare_encoder(pretrained):
    encoder, _ = pretrained
    assert not isinstance(encoder, PretrainModel)
    assert tuple(encoder.input_shape[1:]) == IMAGE_SHAPE
    features = encoder(np.zeros((3, *IMAGE_SHAPE), np.float32))
    assert tuple(features.shape) == (3, encoder.output_shape[-1])


@pytest.mark.slow
def test_simclr_pretraining_lowers_loss_and_separates_classes(data):
    x, y = data["train"]
    y = np.where(np.arange(len(y)) % 2 == 0, -1, y)  # half unlabelled: simclr ignores labels
    config = make_config(method="simclr", use_unlabeled=True)
    _, history = training.pretrain(config, (x, y), data["validation"], num_classes=NUM_CLASSES)
    assert history["contrastive_loss"][-1] < history["contrastive_loss"][0]
    assert history["val_knn_accuracy"][-1] > 0.6


def test_online_probe_does_not_change_the_encoder_update():
    """stop_gradient: with simclr (labels only reach the probe), one SGD step on labelled and
    on unlabelled copies of a batch moves the encoder identically, and the probe only when
    labelled."""
    config = make_config(method="simclr")
    model = build_pretrain_model(config, IMAGE_SHAPE, num_classes=NUM_CLASSES)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.optimizer.build(model.trainable_variables)
    initial = [np.array(variable) for variable in model.variables]  # includes the RNG state
    initial_encoder, initial_probe = weights_of(model.encoder), weights_of(model.probe)
    images, labels = textures(32, seed=3)
    updates = []
    for batch_labels in (labels, np.full_like(labels, -1)):
        for variable, value in zip(model.variables, initial, strict=True):
            variable.assign(value)
        model.optimizer.iterations.assign(0)
        model.train_on_batch(images, batch_labels)
        updates.append((weights_of(model.encoder), weights_of(model.probe)))
    (labelled_encoder, labelled_probe), (unlabelled_encoder, unlabelled_probe) = updates
    assert any(
        not np.allclose(a, b) for a, b in zip(initial_encoder, labelled_encoder, strict=True)
    )
    for a, b in zip(labelled_encoder, unlabelled_encoder, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(initial_probe, labelled_probe, strict=True))
    for a, b in zip(initial_probe, unlabelled_probe, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unlabelled_images_only_have_their_own_views_as_positives():
    labels = np.array([0, -1, 0, -1, 2], np.int32)
    unique = np.asarray(unique_unlabelled(labels, 5))
    np.testing.assert_array_equal(unique, [0, -3, 0, -5, 2])
    np.testing.assert_array_equal(np.asarray(unique_unlabelled(None, 3)), [-2, -3, -4])

    # A supcon model on an all-unlabelled batch computes SimCLR's NT-Xent.
    config = make_config(method="supcon")
    model = build_pretrain_model(config, IMAGE_SHAPE, num_classes=None)
    projections = np.random.default_rng(4).normal(size=(8, 2, 16)).astype(np.float32)
    loss = model.compute_loss(y=np.full(8, -1), y_pred={"projections": projections})
    expected = supcon_loss(projections, None, config.train.temperature)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    # ... and with labels, SupCon with those labels.
    labels = np.array([0, 1, 0, 1, 2, 2, 3, 3])
    loss = model.compute_loss(y=labels, y_pred={"projections": projections})
    expected = supcon_loss(projections, labels, config.train.temperature)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


def test_npairs_uses_the_first_view():
    model = build_pretrain_model(make_config(method="npairs"), IMAGE_SHAPE, num_classes=None)
    projections = np.random.default_rng(5).normal(size=(8, 2, 16)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, -1, 2, -1, 3])
    loss = model.compute_loss(y=labels, y_pred={"projections": projections})
    expected = npairs_loss(projections[:, 0], labels, temperature=0.1)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


def test_contrastive_top1_is_one_for_identical_well_separated_views():
    directions = np.eye(8, 16, dtype=np.float32)  # 8 orthogonal unit vectors
    projections = np.stack([directions, 3.0 * directions], axis=1)  # [8, 2, 16]
    hits, has_positive = contrastive_top1(projections, np.arange(8))
    np.testing.assert_array_equal(np.asarray(hits), np.ones(16))
    np.testing.assert_array_equal(np.asarray(has_positive), np.ones(16))


def test_contrastive_top1_counts_misses_and_skips_anchors_without_positives():
    # One view each; images 0 and 1 share a label but each is nearest to image 2.
    projections = np.array([[[1.0, 0.1]], [[1.0, -0.1]], [[1.0, 0.0]]], np.float32)
    hits, has_positive = contrastive_top1(projections, np.array([0, 0, 1]))
    np.testing.assert_array_equal(np.asarray(hits), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(has_positive), [1.0, 1.0, 0.0])


def test_contrastive_accuracy_metric_is_one_on_identical_views():
    """With training=False the views are identical: each entry's nearest is its twin."""
    config = make_config(method="simclr")
    model = build_pretrain_model(config, IMAGE_SHAPE, num_classes=None)
    model.compile(optimizer="adam")
    images, labels = textures(64, seed=5)
    result = model.evaluate(images, labels, batch_size=64, verbose=0, return_dict=True)
    assert result["contrastive_accuracy"] == pytest.approx(1.0)


def test_pretrain_model_validates_arguments():
    encoder = build_encoder("small_cnn", IMAGE_SHAPE, seed=0)
    head = keras.Sequential([keras.Input((128,)), keras.layers.Dense(4)])
    augmenter = build_augmenter(IMAGE_SHAPE, min_area=1.0, brightness=0.0, jitter=0.0, flip=False)
    with pytest.raises(ValueError, match="method=.*moco"):
        PretrainModel(encoder, head, augmenter, method="moco")
    with pytest.raises(ValueError, match="num_views=1"):
        PretrainModel(encoder, head, augmenter, method="simclr", num_views=1)
    with pytest.raises(ValueError, match="num_classes=0"):
        PretrainModel(encoder, head, augmenter, num_classes=0)


@pytest.mark.parametrize("method, balanced", [("supcon", True), ("simclr", False)])
def test_few_labels_pretraining_batches_carry_labelled_images_of_each_class(
    data, monkeypatch, method, balanced
):
    """`train.labeled_per_class` with NumPy data: a method that reads labels gets batches of
    the run's size ending with that many labelled images of each class (stored labels, from
    the labelled rows only), the epoch's batch count unchanged; SimCLR reads no label and
    keeps Keras' own batching of the arrays."""
    from contrastive.training import fitting

    x, y = data["train"]
    masked = np.where(np.arange(len(y)) % 8 == 0, y, -1)  # 64 labelled rows of 512
    seen = {}

    def spy(model, config, train, validation, **kwargs):
        seen["train"] = train
        return {}

    monkeypatch.setattr(fitting, "fit_model", spy)
    config = make_config(method=method, use_unlabeled=True, labeled_per_class=3)
    training.pretrain(config, (x, masked), num_classes=NUM_CLASSES)
    if not balanced:
        assert isinstance(seen["train"], tuple)
        return
    stream = seen["train"]
    assert len(stream) == 8  # 512 / 64, as Keras would batch the arrays
    owner = {image.tobytes(): label for image, label in zip(x, masked, strict=True)}
    for images, labels in stream.as_numpy_iterator():
        assert images.shape == (64, *IMAGE_SHAPE)
        assert sorted(labels[-12:].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert all(
            owner[image.tobytes()] == label for image, label in zip(images, labels, strict=True)
        )


def test_pretrain_rejects_all_unlabelled_data_without_use_unlabeled(data):
    x, y = data["train"]
    with pytest.raises(ValueError, match="no labelled example.*use_unlabeled"):
        training.pretrain(make_config(), (x, np.full_like(y, -1)), num_classes=NUM_CLASSES)


def test_pretrain_rejects_labels_out_of_range(data):
    x, y = data["train"]
    with pytest.raises(ValueError, match="num_classes=3"):
        training.pretrain(make_config(), (x, y), num_classes=3)


# ---------------------------------------------------------------------------------------------
# classifiers


@pytest.mark.slow
def test_linear_mode_freezes_encoder_and_learns(pretrained, data):
    encoder, _ = pretrained
    before = weights_of(encoder)
    x, y = data["train"]
    y = np.where(np.arange(len(y)) % 3 == 0, -1, y)  # a third unlabelled: must be dropped
    model, history = training.train_classifier(
        make_config(),
        encoder,
        (x, y),
        data["validation"],
        num_classes=NUM_CLASSES,
        mode="linear",
    )
    for old, new in zip(before, weights_of(encoder), strict=True):
        np.testing.assert_array_equal(old, new)
    assert len(history["loss"]) == 2
    assert history["val_accuracy"][-1] > 0.6
    assert any(isinstance(layer, FrozenEncoder) for layer in model.layers)
    probabilities = training.predict_proba(model, data["validation"][0][:10])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_finetune_mode_updates_encoder_and_learns(pretrained, data):
    pretrained_encoder, _ = pretrained
    encoder = keras.models.clone_model(pretrained_encoder)
    encoder.set_weights(pretrained_encoder.get_weights())
    before = weights_of(encoder)
    model, history = training.train_classifier(
        make_config(classifier_mode="finetune"), encoder, data["train"], num_classes=NUM_CLASSES
    )
    changed = [not np.array_equal(a, b) for a, b in zip(before, weights_of(encoder), strict=True)]
    assert any(changed)
    assert not any(isinstance(layer, FrozenEncoder) for layer in model.layers)
    assert history["accuracy"][-1] > 0.6


@pytest.mark.slow
def test_baseline_learns_with_the_same_epoch_budget(data):
    config = make_config(epochs=2, classifier_epochs=1, learning_rate=0.003)
    model, history = training.train_baseline(config, data["train"], num_classes=NUM_CLASSES)
    assert len(history["loss"]) == 3  # epochs + classifier_epochs
    assert history["accuracy"][-1] > 0.6
    x, y = data["validation"]
    assert np.mean(training.predict_proba(model, x).argmax(axis=1) == y) > 0.6
    assert model.output_shape == (None, NUM_CLASSES)


@pytest.mark.slow
def test_classifier_trains_on_a_dataset_of_batches(pretrained, data):
    """Datasets go to `fit` as they are; shape and length come from the dataset itself."""
    tf = pytest.importorskip("tensorflow")
    encoder, _ = pretrained
    x, y = data["train"]
    # filter() makes the length unknown, so the steps per epoch are counted once.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).filter(lambda x, y: True)
    model, history = training.train_classifier(
        make_config(classifier_epochs=1), encoder, dataset, num_classes=NUM_CLASSES, mode="linear"
    )
    assert len(history["loss"]) == 1
    assert history["accuracy"][-1] > 0.6
    assert training.fitting.steps_per_epoch_of(dataset, 64) == 8


@pytest.mark.slow
def test_classifier_rejects_unlabelled_only_data_and_bad_mode(pretrained, data):
    encoder, _ = pretrained
    x, y = data["train"]
    for mode in ("fitted", "linear"):
        with pytest.raises(ValueError, match="no labelled example"):
            training.train_classifier(
                make_config(), encoder, (x, np.full_like(y, -1)), num_classes=NUM_CLASSES, mode=mode
            )
    with pytest.raises(ValueError, match="mode='probe'"):
        training.train_classifier(make_config(), encoder, (x, y), num_classes=4, mode="probe")


# ---------------------------------------------------------------------------------------------
# optimisers, precision


def test_cosine_schedule_with_warmup_follows_the_formula():
    config = make_config(schedule="cosine", warmup_epochs=1.0)
    steps_per_epoch, epochs, peak = 10, 2, 0.1
    schedule = build_learning_rate(config.train, steps_per_epoch, epochs, peak)
    warmup, total = 10, 20

    def expected(step):
        if step < warmup:
            return peak * step / warmup
        return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    for step in (0, 5, warmup, 15, total):
        assert float(schedule(step)) == pytest.approx(expected(step), abs=1e-7), step
    assert float(schedule(0)) == 0.0
    assert float(schedule(warmup)) == pytest.approx(peak)
    assert float(schedule(total)) == pytest.approx(0.0, abs=1e-7)


def test_cosine_without_warmup_and_constant_schedule():
    schedule = build_learning_rate(make_config(schedule="cosine").train, 5, 2, 0.2)
    assert float(schedule(0)) == pytest.approx(0.2)
    assert float(schedule(5)) == pytest.approx(0.1)
    assert build_learning_rate(make_config(schedule="constant").train, 5, 2, 0.2) == 0.2
    with pytest.raises(ValueError, match="steps_per_epoch=0"):
        build_learning_rate(make_config().train, 0, 2, 0.2)


def test_optimizer_kinds():
    adam = build_optimizer(make_config(optimizer="adam").train, 4, 2, 1e-3)
    adamw = build_optimizer(make_config(optimizer="adam", weight_decay=1e-4).train, 4, 2, 1e-3)
    sgd = build_optimizer(
        make_config(optimizer="sgd", momentum=0.8, weight_decay=1e-4).train, 4, 2, 1e-3
    )
    assert type(adam) is keras.optimizers.Adam
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(1e-4)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == pytest.approx(0.8) and sgd.weight_decay == pytest.approx(1e-4)


def test_mixed_precision_builds_under_policy_and_restores_it():
    before = keras.config.dtype_policy().name
    config = make_config(mixed_precision="bfloat16", method="supcon")
    model = build_pretrain_model(config, IMAGE_SHAPE, num_classes=None)
    assert keras.config.dtype_policy().name == before
    assert model.encoder.dtype_policy.name == "mixed_bfloat16"
    assert model.augmenter.dtype_policy.name == before  # augmentation stays float32
    projections = keras.ops.cast(np.ones((8, 2, 16)) + np.eye(8, 16)[:, None], "bfloat16")
    loss = model.compute_loss(y=np.arange(8), y_pred={"projections": projections})
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    with pytest.raises(ValueError, match="mixed_precision='int8'"):
        with precision_policy("int8"):
            pass
    with pytest.raises(RuntimeError), precision_policy("float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError
    assert keras.config.dtype_policy().name == before


# ---------------------------------------------------------------------------------------------
# divergence guard, checkpoints


@pytest.mark.slow
def test_nan_loss_raises_training_diverged_error(data):
    config = make_config(learning_rate=1e30, schedule="constant")
    with pytest.raises(
        TrainingDivergedError, match=r"loss=nan at epoch 1, batch \d.*learning rate"
    ):
        training.train_baseline(config, data["train"], num_classes=NUM_CLASSES)


@pytest.mark.slow
def test_resume_from_checkpoint_runs_the_remaining_epochs(data, tmp_path, caplog):
    checkpoint_dir = tmp_path / "checkpoints"
    first = make_config(epochs=1, classifier_epochs=1)  # baseline: 2 epochs
    _, first_history = training.train_baseline(
        first, data["train"], num_classes=NUM_CLASSES, checkpoint_dir=str(checkpoint_dir)
    )
    assert len(first_history["loss"]) == 2
    metadata = json.loads((checkpoint_dir / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2  # the backup is kept after a successful fit

    second = make_config(epochs=2, classifier_epochs=1)  # 3 epochs: one left
    with caplog.at_level(logging.INFO, logger="contrastive.training"):
        model, history = training.train_baseline(
            second, data["train"], num_classes=NUM_CLASSES, checkpoint_dir=str(checkpoint_dir)
        )
    assert "resumed from epoch 2 of 3" in caplog.text
    assert len(history["loss"]) == 3  # the two epochs before the restart come back too
    assert history["loss"][:2] == first_history["loss"]
    steps = math.ceil(len(data["train"][1]) / 64)
    assert int(model.optimizer.iterations) == 3 * steps  # optimizer state came back

    with pytest.raises(ValueError, match="run of 3 epochs, more than the epochs=2"):
        training.train_baseline(
            first, data["train"], num_classes=NUM_CLASSES, checkpoint_dir=str(checkpoint_dir)
        )


class _Preempted(BaseException):
    """The node is lost: not an Exception, so no handler of ours catches it."""


class _Watch(keras.callbacks.Callback):
    """Weights and optimizer step where the first epoch of a fit begins and where each epoch
    ends; with `die_after`, raises `_Preempted` at the end of that epoch, before its backup
    (user callbacks run before the checkpoint ones)."""

    def __init__(self, die_after=None):
        super().__init__()
        self.die_after, self.begin, self.ends = die_after, None, {}

    def _state(self):
        return weights_of(self.model), int(np.asarray(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        if self.begin is None:
            self.begin = (epoch, *self._state())

    def on_epoch_end(self, epoch, logs=None):
        self.ends[epoch + 1] = self._state()
        if epoch + 1 == self.die_after:
            raise _Preempted(f"lost after epoch {epoch + 1}")


@pytest.mark.slow
def test_preempted_training_resumes_from_the_weights_of_its_last_backup(data, tmp_path):
    """Killed after epoch 3, before its backup: the rerun starts epoch 3 again from exactly
    the weights and optimizer step that epoch 2 ended with (not fresh ones, not epoch 3's)."""
    config = make_config(epochs=3, classifier_epochs=1)  # baseline: 4 epochs
    checkpoint_dir = str(tmp_path / "checkpoints")
    killed = _Watch(die_after=3)
    with pytest.raises(_Preempted):
        training.train_baseline(
            config,
            data["train"],
            num_classes=NUM_CLASSES,
            checkpoint_dir=checkpoint_dir,
            callbacks=[killed],
        )
    resumed = _Watch()
    _, history = training.train_baseline(
        config,
        data["train"],
        num_classes=NUM_CLASSES,
        checkpoint_dir=checkpoint_dir,
        callbacks=[resumed],
    )
    epoch, weights, step = resumed.begin
    saved_weights, saved_step = killed.ends[2]
    assert epoch == 2 and step == saved_step == 2 * math.ceil(len(data["train"][1]) / 64)
    for restored, saved in zip(weights, saved_weights, strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert any(not np.array_equal(a, b) for a, b in zip(weights, killed.ends[3][0], strict=True))
    assert sorted(resumed.ends) == [3, 4] and len(history["loss"]) == 4


@pytest.mark.slow
def test_progress_log_writes_one_line_per_epoch_across_a_resume(data, tmp_path):
    from contrastive.training.callbacks import ProgressLog

    checkpoint_dir, progress = tmp_path / "checkpoints", tmp_path / "progress" / "baseline.jsonl"
    first = make_config(epochs=1, classifier_epochs=1)  # baseline: 2 epochs
    _, history = training.train_baseline(
        first,
        data["train"],
        data["validation"],
        num_classes=NUM_CLASSES,
        checkpoint_dir=str(checkpoint_dir),
        callbacks=[ProgressLog(progress)],
    )
    second = make_config(epochs=2, classifier_epochs=1)  # 3 epochs: the third resumes
    _, resumed = training.train_baseline(
        second,
        data["train"],
        data["validation"],
        num_classes=NUM_CLASSES,
        checkpoint_dir=str(checkpoint_dir),
        callbacks=[ProgressLog(progress)],
    )
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [(r["epoch"], r["epochs"]) for r in records] == [(1, 2), (2, 2), (3, 3)]
    assert [r["logs"]["loss"] for r in records] == resumed["loss"]
    assert [r["logs"]["val_accuracy"] for r in records] == resumed["val_accuracy"]
    assert all(r["seconds"] > 0 for r in records)


@pytest.mark.slow
def test_progress_log_that_cannot_write_warns_and_training_goes_on(data, tmp_path, caplog):
    from contrastive.training.callbacks import ProgressLog

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="contrastive.training.callbacks"):
        _, history = training.train_baseline(
            make_config(epochs=1, classifier_epochs=1),
            data["train"],
            num_classes=NUM_CLASSES,
            callbacks=[ProgressLog(blocked / "progress.jsonl")],
        )
    assert len(history["loss"]) == 2
    assert caplog.text.count("no progress written to") == 1


# ---------------------------------------------------------------------------------------------
# saving


RELOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import contrastive

    folder = sys.argv[1]
    images = np.load(f"{folder}/images.npy")
    results = {}
    for name in ("pretrain", "linear"):
        model = contrastive.load_model(f"{folder}/{name}.keras", safe_mode=True)
        outputs = model(images, training=False)
        if isinstance(outputs, dict):
            results.update({f"{name}/{key}": np.asarray(v) for key, v in outputs.items()})
        else:
            results[name] = np.asarray(outputs)
        results[f"{name}/class"] = np.array(type(model).__name__)
    np.savez(f"{folder}/reloaded.npz", **results)
    """
)


@pytest.mark.slow
def test_models_reload_in_a_new_process_with_identical_outputs(tmp_path):
    config = make_config()
    images, _ = textures(16, seed=7)
    pretrain_model = build_pretrain_model(config, IMAGE_SHAPE, num_classes=NUM_CLASSES)
    encoder = build_encoder("small_cnn", IMAGE_SHAPE, seed=1)
    linear = build_classifier(config, encoder, NUM_CLASSES, mode="linear")
    expected = {}
    for name, model in (("pretrain", pretrain_model), ("linear", linear)):
        # Compiled, with a built optimizer: the compile config and its schedule reload too.
        model.compile(optimizer=build_optimizer(config.train, 4, 2, 1e-3))
        model.optimizer.build(model.trainable_variables)
        model.save(tmp_path / f"{name}.keras")
        outputs = model(images, training=False)
        if isinstance(outputs, dict):
            expected.update({f"{name}/{key}": np.asarray(v) for key, v in outputs.items()})
        else:
            expected[name] = np.asarray(outputs)
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "reload.py"
    script.write_text(RELOAD_SCRIPT)
    source = os.path.join(os.path.dirname(training.__file__), "..", "..")
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "PYTHONPATH": source}
    subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, check=True, timeout=120)
    reloaded = np.load(tmp_path / "reloaded.npz")
    assert str(reloaded["pretrain/class"]) == "PretrainModel"
    assert set(expected) == {key for key in reloaded.files if not key.endswith("/class")}
    for key, value in expected.items():
        np.testing.assert_array_equal(reloaded[key], value, err_msg=key)
