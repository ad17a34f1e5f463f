"""contrastive.evaluation: metrics against hand-computed values, PCA geometry, validation."""

import warnings

import numpy as np
import pytest

from contrastive.evaluation import (
    classification_metrics,
    metrics_from_confusion_matrix,
    pca_2d,
    top_confusions,
)

# Three classes, nine examples. Rows = true class, columns = predicted class:
#   true 0: predicted 0, 0, 1, 2  -> [2, 1, 1]
#   true 1: predicted 1, 1        -> [0, 2, 0]
#   true 2: predicted 2, 0, 0     -> [2, 0, 1]
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 2, 0, 0]
NAMES = ["cat", "dog", "bird"]


def test_three_class_example_matches_hand_computed_values():
    metrics = classification_metrics(Y_TRUE, Y_PRED, 3, NAMES)

    assert metrics["confusion_matrix"] == [[2, 1, 1], [0, 2, 0], [2, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(5 / 9)
    # Column sums (predictions per class) 4, 3, 2; row sums (support) 4, 2, 3.
    assert metrics["precision"] == pytest.approx([2 / 4, 2 / 3, 1 / 2])
    assert metrics["recall"] == pytest.approx([2 / 4, 2 / 2, 1 / 3])
    # F1 = 2PR / (P + R): 0.5; 2(2/3)(1)/(5/3) = 0.8; 2(1/2)(1/3)/(5/6) = 0.4.
    assert metrics["f1"] == pytest.approx([0.5, 0.8, 0.4])
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.4) / 3)
    assert metrics["support"] == [4, 2, 3]
    assert metrics["num_examples"] == 9
    assert metrics["class_names"] == NAMES


def test_results_are_plain_python_types():
    metrics = classification_metrics(np.array(Y_TRUE), np.array(Y_PRED), 3)
    assert type(metrics["accuracy"]) is float
    assert type(metrics["macro_f1"]) is float
    assert all(type(value) is int for row in metrics["confusion_matrix"] for value in row)
    assert all(type(value) is float for value in metrics["f1"])
    assert all(type(value) is int for value in metrics["support"])
    assert metrics["class_names"] == ["0", "1", "2"]


def test_perfect_prediction():
    labels = np.array([0, 1, 2, 2, 1, 0, 3])
    metrics = classification_metrics(labels, labels, 4)
    assert metrics["accuracy"] == 1.0
    assert metrics["precision"] == [1.0] * 4
    assert metrics["recall"] == [1.0] * 4
    assert metrics["f1"] == [1.0] * 4
    assert metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == np.diag([2, 2, 2, 1]).tolist()


def test_class_never_predicted_gets_zero_precision_without_nan_or_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics([0, 1, 2, 2], [0, 1, 1, 1], 3)
    assert metrics["precision"] == pytest.approx([1.0, 1 / 3, 0.0])
    assert metrics["recall"] == pytest.approx([1.0, 1.0, 0.0])
    assert metrics["f1"] == pytest.approx([1.0, 0.5, 0.0])
    assert not np.isnan(metrics["precision"] + metrics["recall"] + metrics["f1"]).any()


def test_class_absent_from_labels_and_predictions_is_left_out_of_macro_f1():
    metrics = classification_metrics([0, 1, 1], [0, 1, 1], 4)
    assert metrics["f1"] == [1.0, 1.0, 0.0, 0.0]
    assert metrics["support"] == [1, 2, 0, 0]
    assert metrics["macro_f1"] == 1.0


def test_class_only_predicted_counts_in_macro_f1():
    # Class 1 is never true but is predicted once: F1 0, and it counts (scikit-learn's default
    # label set is the union of y_true and y_pred). Class 2 occurs nowhere and is left out.
    metrics = classification_metrics([0, 0], [0, 1], 3)
    assert metrics["f1"] == pytest.approx([2 / 3, 0.0, 0.0])
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_empty_input_gives_zeros_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics([], [], 2)
    assert metrics["accuracy"] == 0.0
    assert metrics["macro_f1"] == 0.0
    assert metrics["confusion_matrix"] == [[0, 0], [0, 0]]


def test_float_labels_holding_integers_are_accepted():
    metrics = classification_metrics(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 2)
    assert metrics["confusion_matrix"] == [[0, 1], [0, 1]]


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"len\(y_true\)=3, len\(y_pred\)=2"):
        classification_metrics([0, 1, 1], [0, 1], 2)


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([0, 1, 3], [0, 1, 1], r"y_true\[2\]=3"),
        ([0, 1, 1], [0, -1, 1], r"y_pred\[1\]=-1"),
        ([0, 1, 1], [0, 1, 0.5], r"y_pred\[2\]=.*0\.5"),
    ],
)
def test_labels_outside_range_name_value_and_position(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, 3)


def test_out_of_range_message_names_the_valid_range():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classification_metrics([0, 1, 7], [0, 1, 1], 3)


@pytest.mark.parametrize("num_classes", [0, -2, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        classification_metrics([0], [0], num_classes)


def test_class_names_length_must_match():
    with pytest.raises(ValueError, match=r"len\(class_names\)=2"):
        classification_metrics([0], [0], 3, ["a", "b"])


def test_two_dimensional_labels_are_rejected():
    with pytest.raises(ValueError, match=r"y_true.shape=\(2, 1\)"):
        classification_metrics([[0], [1]], [0, 1], 2)


def test_metrics_from_confusion_matrix_agrees_with_labels():
    from_labels = classification_metrics(Y_TRUE, Y_PRED, 3, NAMES)
    from_matrix = metrics_from_confusion_matrix(from_labels["confusion_matrix"], NAMES)
    assert from_matrix == from_labels


def test_top_confusions_orders_by_count_then_index():
    confusion = classification_metrics(Y_TRUE, Y_PRED, 3)["confusion_matrix"]
    top = top_confusions(confusion, NAMES, k=5)
    assert [(c["true"], c["predicted"], c["count"]) for c in top] == [
        ("bird", "cat", 2),
        ("cat", "dog", 1),
        ("cat", "bird", 1),
    ]
    assert top[0]["rate"] == pytest.approx(2 / 3)
    assert (top[0]["true_index"], top[0]["predicted_index"]) == (2, 0)


def test_top_confusions_respects_k_and_skips_perfect_matrices():
    confusion = [[5, 3, 1], [2, 4, 0], [0, 0, 6]]
    assert [c["count"] for c in top_confusions(confusion, None, k=2)] == [3, 2]
    assert top_confusions(np.eye(3, dtype=int) * 4, NAMES) == []
    assert top_confusions(confusion, NAMES, k=0) == []


def test_top_confusions_validates_input():
    with pytest.raises(ValueError, match="square"):
        top_confusions([[1, 2, 3]], ["a"])
    with pytest.raises(ValueError, match=r"len\(class_names\)=2"):
        top_confusions(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match=r"k=-1"):
        top_confusions(np.eye(3), NAMES, k=-1)


def _pairwise_distances(points):
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def test_pca_recovers_a_plane_embedded_in_ten_dimensions():
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(60, 2)) * np.array([3.0, 1.0])
    basis, _ = np.linalg.qr(rng.normal(size=(10, 2)))  # orthonormal columns [10, 2]
    features = plane @ basis.T + rng.normal(size=(1, 10)) * 5.0

    points, indices = pca_2d(features)

    assert points.shape == (60, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(indices, np.arange(60))
    # Distances survive (rotation / reflection of the plane only).
    np.testing.assert_allclose(
        _pairwise_distances(points), _pairwise_distances(plane), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=1e-4)
    variances = points.var(axis=0)
    assert variances[0] >= variances[1]
    # The second coordinate is uncorrelated with the first (principal axes).
    assert abs(np.corrcoef(points.T)[0, 1]) < 1e-4


def test_pca_subsample_is_deterministic_and_consistent():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(50, 6))

    points, indices = pca_2d(features, max_points=20, seed=3)
    points_again, indices_again = pca_2d(features, max_points=20, seed=3)
    _, other_indices = pca_2d(features, max_points=20, seed=4)

    assert points.shape == (20, 2) and indices.shape == (20,)
    assert indices.dtype == np.int64
    assert len(set(indices.tolist())) == 20 and np.all(np.diff(indices) > 0)
    np.testing.assert_array_equal(indices, indices_again)
    np.testing.assert_array_equal(points, points_again)
    assert not np.array_equal(indices, other_indices)
    # The points are the PCA of exactly the selected rows.
    subset_points, _ = pca_2d(features[indices])
    np.testing.assert_allclose(points, subset_points, atol=1e-5)


def test_pca_pads_low_rank_features_with_zeros():
    line = np.arange(5, dtype=np.float64)[:, None]
    points, _ = pca_2d(line)
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(line[:, 0] - 2.0), atol=1e-5)
    np.testing.assert_allclose(points[:, 1], 0.0, atol=1e-5)
    single, _ = pca_2d(np.ones((1, 4)))
    np.testing.assert_array_equal(single, np.zeros((1, 2), dtype=np.float32))


@pytest.mark.parametrize(
    "features, kwargs, message",
    [
        (np.zeros(5), {}, r"shape=\(5,\)"),
        (np.zeros((0, 3)), {}, r"shape=\(0, 3\)"),
        (np.zeros((4, 3)), {"max_points": 0}, r"max_points=0"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), {}, "row 1"),
    ],
)
def test_pca_validates_input(features, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pca_2d(features, **kwargs)


def test_predictions_writer_batches_equal_one_write_and_abort_leaves_nothing(tmp_path):
    import pyarrow.parquet as pq

    from contrastive.evaluation import PredictionsWriter, write_predictions

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=10).astype(np.float32)
    labels, predicted = rng.integers(0, 3, 10), probabilities.argmax(axis=1)
    write_predictions(tmp_path / "whole.parquet", labels, predicted, probabilities)
    writer = PredictionsWriter(tmp_path / "batched.parquet")
    for start in (0, 4, 8):
        stop = start + 4
        writer.write(labels[start:stop], predicted[start:stop], probabilities[start:stop])
    writer.close()
    whole = pq.read_table(tmp_path / "whole.parquet").to_pydict()
    assert pq.read_table(tmp_path / "batched.parquet").to_pydict() == whole
    assert whole["index"] == list(range(10))
    aborted = PredictionsWriter(tmp_path / "aborted.parquet")
    aborted.write(labels, predicted, probabilities)
    aborted.abort()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["batched.parquet", "whole.parquet"]


def test_confusion_matrices_of_batches_add_up():
    from contrastive.evaluation import confusion_matrix

    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    whole = confusion_matrix(y_true, y_pred, 4)
    parts = sum(confusion_matrix(y_true[i : i + 7], y_pred[i : i + 7], 4) for i in range(0, 50, 7))
    np.testing.assert_array_equal(parts, whole)
    expected = np.zeros((4, 4), np.int64)
    for true, guess in zip(y_true, y_pred, strict=True):
        expected[true, guess] += 1
    np.testing.assert_array_equal(whole, expected)
