"""The classifier step's fitted head (`train.classifier_mode: fitted`) against an independent
NumPy solve, the flatten features it reads, and the random-init control (`training.random_init`,
`train.method: random_init`): the untrained encoder `pretrain` starts from."""

import keras
import numpy as np
import pytest

from contrastive import training
from contrastive.config import load_config
from contrastive.models import feature_model
from contrastive.training import build_pretrain_model

pytestmark = pytest.mark.backend

NUM_CLASSES = 3
IMAGE_SHAPE = (16, 16, 1)


def images(count, seed):
    """uint8 `[count, 16, 16, 1]` images whose mean brightness depends on the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int64)
    base = 60.0 + 60.0 * labels[:, None, None, None]
    pixels = base + rng.normal(0.0, 30.0, (count, *IMAGE_SHAPE))
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def make_config(**overrides):
    values = {
        "train.batch_size": 32,
        "train.verbose": 0,
        "train.checkpoint_every": 0,
        "train.mixed_precision": "float32",
        **overrides,
    }
    return load_config("tiny", overrides=[f"{key}={value}" for key, value in values.items()])


@pytest.mark.slow
def test_fitted_ridge_head_equals_an_independent_numpy_solve():
    """The classifier's probabilities are softmax(score_scale * ridge scores), the ridge solved
    here by the normal equations (unpenalised intercept) on the features standardised by the
    pool's own mean and standard deviation, at the strength the cross-validation chose; the
    unlabelled rows enter the standardisation only."""
    config = make_config(**{"train.probe_candidates": "[ridge]", "model.feature_layer": "flatten"})
    x, y = images(96, seed=0)
    labels = y.copy()
    labels[::3] = -1  # a third of the pool unlabelled
    encoder, history = training.random_init(config, (x, labels), num_classes=NUM_CLASSES)
    assert history == {}
    details = {}
    model, _ = training.train_classifier(
        config, encoder, (x, labels), num_classes=NUM_CLASSES, mode="fitted", details=details
    )
    assert details["chosen"] == "ridge"
    # train.probe_repeats: auto, 64 labelled rows: the folds drawn ceil(600 / 64) = 10 times,
    # at most 5; train.probe_pool_tolerance reaches the selection
    assert (details["labelled"], details["repeats"]) == (64, 5)
    assert details["pool_tolerance"] == config.train.probe_pool_tolerance == 0.25
    setting = details["candidates"]["ridge"]["setting"]

    extractor = feature_model(encoder, "flatten")
    assert extractor.output_shape[-1] != encoder.output_shape[-1]  # the flatten, not the output
    features = keras.ops.convert_to_numpy(extractor(x.astype(np.float32) / 255.0)).astype(
        np.float64
    )
    mean, std = features.mean(axis=0), features.std(axis=0)
    std = np.maximum(std, std.max() * 1e-6)
    z = (features - mean) / std
    known = labels >= 0
    design = np.hstack([z[known], np.ones((known.sum(), 1))])
    penalty = setting["strength"] * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    targets = np.eye(NUM_CLASSES)[labels[known]]
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ targets)
    query, _ = images(20, seed=1)
    query_z = (keras.ops.convert_to_numpy(extractor(query.astype(np.float32) / 255.0)) - mean) / std
    logits = setting["score_scale"] * (query_z @ solution[:-1] + solution[-1])
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probabilities = training.predict_proba(model, query)
    np.testing.assert_allclose(probabilities, expected, atol=2e-3)


def test_random_init_is_the_encoder_pretraining_starts_from():
    """The control's encoder has exactly the weights `pretrain` would start from (same seed),
    and `pretrain` with `train.method: random_init` returns it untrained, history empty."""
    config = make_config(**{"train.method": "random_init"})
    x, y = images(8, seed=2)
    control, history = training.pretrain(config, (x, y), num_classes=NUM_CLASSES)
    assert history == {}
    start = build_pretrain_model(make_config(**{"train.method": "simclr"}), IMAGE_SHAPE)
    for ours, theirs in zip(control.get_weights(), start.encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    again, _ = training.random_init(config, (x, y), num_classes=NUM_CLASSES)
    for ours, theirs in zip(control.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
