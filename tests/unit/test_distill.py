"""Self-distillation after the fitted head (`contrastive.training.distill`, issue 23 item 5).

The targets are checked against a NumPy computation written out here; the student's
training, its selection on validation (never on test) and the encoder's restoration when
the fitted head is kept run on tiny textures on each Keras backend (`backend`; the NumPy
checks run once).
"""

import dataclasses

import keras
import numpy as np
import pytest

from contrastive import training
from contrastive.augment import build_augmenter
from contrastive.config import ConfigError, load_config
from contrastive.training import classifier as classifier_module
from contrastive.training import distill, probe
from tests.unit.test_training import NUM_CLASSES, make_config, textures, weights_of


def linear_teacher(dim=3, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return probe.FittedClassifier(
        kind="ridge",
        mean=rng.normal(size=dim),
        scale=rng.uniform(0.5, 2.0, dim),
        weights=rng.normal(size=(dim, classes)),
        bias=rng.normal(size=classes),
        score_scale=2.5,
    )


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_a_linear_teachers_targets_are_its_softmax_at_the_temperature(temperature):
    teacher = linear_teacher()
    features = np.random.default_rng(1).normal(size=(6, 3))
    labels = np.array([-1, 2, -1, -1, 0, -1])
    targets = distill.teacher_targets(teacher, features, labels, 4, temperature)
    z = (features - teacher.mean) / teacher.scale
    logits = 2.5 * (z @ teacher.weights + teacher.bias) / temperature
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected[1], expected[4] = np.eye(4)[2], np.eye(4)[0]
    assert targets.dtype == np.float32
    np.testing.assert_allclose(targets, expected, rtol=1e-5, atol=1e-7)


def test_a_neighbour_teachers_votes_are_sharpened_as_probabilities():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(20, 2))
    spread = rng.dirichlet(np.ones(3), size=20)
    teacher = probe.FittedClassifier(
        kind="label_spreading",
        mean=np.zeros(4),
        scale=np.ones(4),
        projection=rng.normal(size=(4, 2)),
        reference=reference,
        reference_targets=spread,
        k=5,
        temperature=0.1,
    )
    features = rng.normal(size=(7, 4))
    votes = teacher.scores(features)
    labels = np.full(7, -1)
    np.testing.assert_allclose(
        distill.teacher_targets(teacher, features, labels, 3, 1.0), votes, rtol=1e-5, atol=1e-6
    )
    sharp = votes.astype(np.float64) ** 2  # temperature 0.5: p^2, renormalised
    np.testing.assert_allclose(
        distill.teacher_targets(teacher, features, labels, 3, 0.5),
        sharp / sharp.sum(axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )


def test_targets_refuse_a_temperature_that_is_not_positive():
    with pytest.raises(ValueError, match="distill_temperature=0"):
        distill.teacher_targets(linear_teacher(), np.zeros((1, 3)), np.array([-1]), 4, 0)


def test_the_pool_is_gathered_from_batches_and_cut_at_the_memory_bound():
    images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
    labels = np.array([0, -1, 1, -1, -1, 2, -1, 3, -1, -1])
    batches = [(images[i : i + 4], labels[i : i + 4]) for i in range(0, 10, 4)]
    got_images, got_labels = distill.pool_arrays(batches, 4)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    row = 4 + 4 * 4  # 4 bytes of image, 4 float32 targets
    pulled = []

    def stream():
        for batch in batches:
            pulled.append(len(batch[1]))
            yield batch

    cut_images, cut_labels = distill.pool_arrays(stream(), 4, max_bytes=6 * row + 3)
    np.testing.assert_array_equal(cut_images, images[:6])
    np.testing.assert_array_equal(cut_labels, labels[:6])
    assert pulled == [4, 4]  # the stream is not read past the cut
    same = distill.pool_arrays((images, labels), 4)
    assert same[0] is images or np.shares_memory(same[0], images)
    with pytest.raises(ValueError, match="no image"):
        distill.pool_arrays([], 4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.distill_epochs": -1}, "train.distill_epochs"),
        ({"train.distill_epochs": 2, "train.classifier_mode": "finetune"}, "'finetune'"),
        ({"train.distill_temperature": 0.0}, "train.distill_temperature"),
        ({"train.distill_learning_rate": -1e-3}, "train.distill_learning_rate"),
    ],
)
def test_bad_distillation_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides)


# ---------------------------------------------------------------------------------------------
# the student, end to end on tiny textures


@pytest.fixture(scope="module")
def pool():
    """512 textures with 16 labels (4 a class), the rest -1; 256 validation, 256 test."""
    x, y = textures(512, seed=0)
    masked = np.full_like(y, -1)
    for label in range(NUM_CLASSES):
        masked[np.flatnonzero(y == label)[:4]] = label
    return {"train": (x, masked), "truth": y, "validation": textures(256, seed=1)}


@pytest.fixture(scope="module")
def encoder(pool):
    config = make_config(method="simclr", epochs=1)
    trained, _ = training.pretrain(config, pool["train"], num_classes=NUM_CLASSES)
    return trained


def fresh(encoder):
    copy = keras.models.clone_model(encoder)
    copy.set_weights(encoder.get_weights())
    return copy


def distill_config(**train):
    # probe_pool_tolerance 0: the teacher is the head the CV ranks first (ridge). Every head
    # scores 1.0 on these separable textures, and from any tolerance above 0 such a tie goes
    # to ridge on spread labels, whose calibrated scores here are one-hot to float32: a
    # teacher whose targets could not show they are its probabilities rather than its argmax.
    return make_config(
        distill_epochs=2, distill_learning_rate=0.003, probe_pool_tolerance=0.0, **train
    )


def distilled(encoder, pool):
    """`train_classifier` with distillation on `pool`: `(model, history, details)`."""
    details = {}
    model, history = training.train_classifier(
        distill_config(),
        encoder,
        pool["train"],
        pool["validation"],
        num_classes=NUM_CLASSES,
        details=details,
    )
    return model, history, details


def augmenter_settings(augmenter):
    """Each stage's settings, names and seeds aside (they differ by construction only)."""
    return [
        {k: v for k, v in layer.get_config().items() if k not in ("name", "seed")}
        for layer in augmenter.layers
    ]


def views_of(config, strength):
    settings = dataclasses.asdict(getattr(config.augment, strength))
    return augmenter_settings(build_augmenter((16, 16, 1), **settings))


@pytest.mark.slow
@pytest.mark.backend  # the student trains: each Keras backend
def test_the_student_trains_on_every_pool_image_and_is_kept_when_validation_agrees(
    encoder, pool, monkeypatch
):
    seen = {}
    real_fit = training.fitting.fit_model

    def spy(model, config, train, validation, **kwargs):
        seen["train"], seen["validation"] = train, validation
        return real_fit(model, config, train, validation, **kwargs)

    monkeypatch.setattr(distill.fitting, "fit_model", spy)
    monkeypatch.setattr(classifier_module, "_model_accuracy", lambda *args: 1.0)
    copy = fresh(encoder)
    before = weights_of(copy)
    model, history, details = distilled(copy, pool)
    images, targets = seen["train"]
    assert seen["validation"] is None  # the student's epochs read no held-out split
    assert images.shape[0] == 512 and targets.shape == (512, NUM_CLASSES)
    labelled = pool["train"][1] >= 0
    np.testing.assert_array_equal(targets[labelled].argmax(1), pool["train"][1][labelled])
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-5)
    # the unlabelled rows carry the teacher's distribution: every class predicted, not hard
    assert set(targets[~labelled].argmax(1)) == set(range(NUM_CLASSES))
    assert targets[~labelled].max(1).mean() < 0.999
    assert details["distill_kept"] == "student"
    assert details["distill_unlabelled"] == 512 - 16
    assert len(history["loss"]) == 2 and history["val_accuracy"] == [1.0]
    assert not any(isinstance(layer, training.FrozenEncoder) for layer in model.layers)
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights_of(copy), strict=True))
    # the student saw the strong views (train.distill_augment's default), not the weak ones
    config = distill_config()
    assert views_of(config, "strong") != views_of(config, "weak")
    assert augmenter_settings(model.get_layer("weak_augmenter")) == views_of(config, "strong")


@pytest.mark.slow
@pytest.mark.backend  # the student trains: each Keras backend
def test_the_fitted_head_is_kept_and_the_encoder_restored_when_the_student_is_worse(
    encoder, pool, monkeypatch
):
    monkeypatch.setattr(classifier_module, "_model_accuracy", lambda *args: 0.0)
    copy = fresh(encoder)
    before = weights_of(copy)
    model, history, details = distilled(copy, pool)
    assert details["distill_kept"] == "fitted"
    assert details["distilled_val_accuracy"] == 0.0
    assert history["val_accuracy"] == [details["fitted_val_accuracy"]]
    (frozen,) = [layer for layer in model.layers if isinstance(layer, training.FrozenEncoder)]
    for old, new in zip(before, weights_of(copy), strict=True):
        np.testing.assert_array_equal(old, new)
    assert frozen.encoder.trainable_weights == []  # frozen again after the student's epochs


@pytest.mark.slow
@pytest.mark.backend  # the student trains: each Keras backend
def test_the_students_validation_accuracy_is_its_own_prediction(encoder, pool):
    """Real selection: the recorded student accuracy is the returned model's on validation."""
    details = {}
    model, _ = training.train_classifier(
        distill_config(),
        fresh(encoder),
        pool["train"],
        pool["validation"],
        num_classes=NUM_CLASSES,
        details=details,
    )
    x, y = pool["validation"]
    assert details["distill_kept"] in ("student", "fitted")
    if details["distill_kept"] == "student":
        accuracy = np.mean(training.predict_proba(model, x).argmax(1) == y)
        assert details["distilled_val_accuracy"] == pytest.approx(accuracy, abs=1e-9)
        assert details["distilled_val_accuracy"] >= details["fitted_val_accuracy"]
    else:
        assert details["distilled_val_accuracy"] < details["fitted_val_accuracy"]


@pytest.mark.slow
@pytest.mark.backend  # the student trains: each Keras backend
def test_a_fully_labelled_pool_skips_distillation(encoder, pool):
    details = {}
    x, y = pool["train"]
    _, history = training.train_classifier(
        distill_config(),
        fresh(encoder),
        (x, pool["truth"]),
        num_classes=NUM_CLASSES,
        details=details,
    )
    assert details["distill_kept"] == "fitted"
    assert "labelled" in details["distill_skipped"]
    assert len(history["accuracy"]) == 1  # the fitted head's one-entry history
