"""Tests for the kNN monitor and the embedding helpers against loop-by-loop NumPy references."""

import math

import keras
import numpy as np
import pytest

from contrastive.training import KnnMonitor, embed, knn_accuracy, knn_predict, predict_proba

pytestmark = pytest.mark.backend


def reference_knn(reference, labels, queries, k, temperature):
    """Wu et al. 2018's weighted kNN, one query at a time, in float64."""
    reference = [np.asarray(r, np.float64) / np.linalg.norm(r) for r in reference]
    predictions = []
    for query in queries:
        query = np.asarray(query, np.float64) / np.linalg.norm(query)
        similarities = [float(query @ r) for r in reference]
        order = sorted(range(len(reference)), key=lambda i: -similarities[i])[:k]
        votes = {}
        for i in order:
            votes[labels[i]] = votes.get(labels[i], 0.0) + math.exp(similarities[i] / temperature)
        predictions.append(max(sorted(votes), key=lambda label: votes[label]))
    return np.array(predictions)


def flatten_encoder(shape):
    """Identity-like encoder: the flattened pixels are the features."""
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten()])


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (7, 0.1), (7, 0.5), (100, 0.07)])
def test_knn_predict_matches_reference(k, temperature):
    rng = np.random.default_rng(k)
    reference = rng.normal(size=(60, 5))
    labels = rng.integers(0, 4, 60)
    queries = rng.normal(size=(25, 5))
    predicted = knn_predict(
        reference, labels, queries, k=k, temperature=temperature, batch_size=8
    )  # several similarity blocks
    expected = reference_knn(reference, labels, queries, min(k, 60), temperature)
    np.testing.assert_array_equal(predicted, expected)


def test_knn_accuracy_on_flattened_images_matches_reference():
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (80, 4, 4, 1)).astype(np.uint8)
    train_y = rng.integers(0, 3, 80)
    query_x = rng.integers(0, 256, (30, 4, 4, 1)).astype(np.uint8)
    query_y = rng.integers(0, 3, 30)
    train_y[:5] = -1  # unlabelled references and queries are left out
    query_y[:4] = -1
    accuracy = knn_accuracy(
        flatten_encoder((4, 4, 1)),
        train_x,
        train_y,
        query_x,
        query_y,
        k=5,
        temperature=0.2,
        batch_size=16,
    )
    expected = reference_knn(
        train_x[5:].reshape(75, -1) / 255.0,
        train_y[5:],
        query_x[4:].reshape(26, -1) / 255.0,
        5,
        0.2,
    )
    assert accuracy == pytest.approx(np.mean(expected == query_y[4:]))


def test_knn_accuracy_is_one_for_clustered_features():
    centres = np.eye(3, 12) * 200.0
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 50)
    images = (centres[labels] + rng.uniform(0, 20, (50, 12))).reshape(50, 2, 2, 3)
    accuracy = knn_accuracy(flatten_encoder((2, 2, 3)), images, labels, images, labels, k=5)
    assert accuracy == 1.0


def test_embed_rescales_and_pads_the_last_batch():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (13, 3, 3, 1)).astype(np.uint8)
    features = embed(flatten_encoder((3, 3, 1)), images, batch_size=5)
    assert features.dtype == np.float32 and features.shape == (13, 9)
    np.testing.assert_allclose(features, images.reshape(13, 9) / 255.0, rtol=1e-6)
    assert embed(flatten_encoder((3, 3, 1)), images[:0]).shape == (0, 9)


def test_predict_proba_does_not_rescale():
    inputs = keras.Input((2, 2, 1))
    outputs = keras.layers.Softmax()(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    images = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
    probabilities = predict_proba(model, images, batch_size=1)
    logits = images.reshape(2, 4).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_knn_monitor_logs_every_n_epochs_and_the_last():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 2, 2, 1)).astype(np.uint8)
    labels = rng.integers(0, 2, 40)
    monitor = KnnMonitor(
        flatten_encoder((2, 2, 1)), images, labels, images, labels, k=3, every=2, max_examples=25
    )
    assert len(monitor.reference[1]) == 25 and len(monitor.query[1]) == 25
    monitor.set_params({"epochs": 3})
    logged = []
    for epoch in range(3):
        logs = {"loss": 1.0}
        monitor.on_epoch_end(epoch, logs)
        logged.append("val_knn_accuracy" in logs)
    assert logged == [False, True, True]
    reference_x, reference_y = monitor.reference
    query_x, query_y = monitor.query
    expected = knn_accuracy(
        flatten_encoder((2, 2, 1)), reference_x, reference_y, query_x, query_y, k=3
    )
    assert logs["val_knn_accuracy"] == pytest.approx(expected)
    assert monitor.get_config()["every"] == 2


def test_knn_errors_echo_the_value():
    features = np.ones((4, 2))
    with pytest.raises(ValueError, match="k=0"):
        knn_predict(features, [0, 1, 0, 1], features, k=0)
    with pytest.raises(ValueError, match="temperature=0"):
        knn_predict(features, [0, 1, 0, 1], features, temperature=0)
    with pytest.raises(ValueError, match="no labelled example"):
        knn_accuracy(
            flatten_encoder((1, 1, 1)),
            np.zeros((2, 1, 1, 1)),
            [-1, -1],
            np.zeros((2, 1, 1, 1)),
            [0, 1],
        )
    with pytest.raises(ValueError, match="batch_size=0"):
        embed(flatten_encoder((1, 1, 1)), np.zeros((2, 1, 1, 1)), batch_size=0)
