"""Classifiers fitted on frozen features (`contrastive.training.probe`): each solver against an
independent NumPy solution, the cross-validated choice, and the Keras heads built from them."""

import math

import numpy as np
import pytest

from contrastive.training import probe

pytestmark = pytest.mark.backend


def blobs(n_per_class=30, num_classes=3, dim=6, spread=1.0, seed=0):
    """Gaussian blobs: `(x float32 [N, dim], y int64 [N])`, class means on the axes."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label in range(num_classes):
        centre = np.zeros(dim)
        centre[label % dim] = 4.0
        x.append(centre + spread * rng.standard_normal((n_per_class, dim)))
        y.append(np.full(n_per_class, label))
    order = rng.permutation(n_per_class * num_classes)
    return np.concatenate(x)[order].astype(np.float32), np.concatenate(y)[order].astype(np.int64)


def one_hot(y, num_classes):
    return np.eye(num_classes)[y]


@pytest.mark.parametrize(("rows", "dim"), [(40, 6), (8, 20)])  # primal and dual solver paths
def test_ridge_fit_equals_the_normal_equations_with_an_unpenalised_intercept(rows, dim):
    x, y = blobs(n_per_class=rows // 2, num_classes=2, dim=dim, seed=1)
    strength = 3.0
    weights, bias = probe.ridge_fit(x, y, 2, strength)
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    penalty = strength * np.eye(dim + 1)
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ one_hot(y, 2))
    np.testing.assert_allclose(weights, solution[:-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias, solution[-1], rtol=1e-4, atol=1e-5)


def test_ridge_solver_predicts_every_strength_as_separate_fits():
    x, y = blobs(seed=2)
    query = blobs(n_per_class=5, seed=3)[0]
    solver = probe._RidgeSolver(x, one_hot(y, 3))
    strengths = [0.01, 1.0, 100.0]
    predictions = solver.predictions(query, strengths)
    for index, strength in enumerate(strengths):
        weights, bias = probe.ridge_fit(x, y, 3, strength)
        np.testing.assert_allclose(predictions[index], query @ weights + bias, atol=1e-4)


def newton_logistic(x, y, num_classes, strength, iterations=50):
    """Multinomial logistic regression by Newton's method with the exact Hessian (independent of
    the L-BFGS solver): minimises mean CE + strength / 2 * ||W||^2, bias unpenalised."""
    x = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    n, d = x.shape
    targets = one_hot(y, num_classes)
    theta = np.zeros((d, num_classes))
    mask = np.ones((d, num_classes))
    mask[-1] = 0.0
    for _ in range(iterations):
        logits = x @ theta
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (x.T @ (p - targets) / n + strength * mask * theta).ravel(order="F")
        hessian = np.zeros((d * num_classes, d * num_classes))
        for a in range(num_classes):
            for b in range(num_classes):
                weight = p[:, a] * ((a == b) - p[:, b])
                hessian[a * d : (a + 1) * d, b * d : (b + 1) * d] = (x.T * weight) @ x / n
        hessian += np.diag(strength * mask.ravel(order="F"))
        # the softmax is invariant to a common shift of the biases: a tiny ridge fixes it
        step = np.linalg.solve(hessian + 1e-10 * np.eye(d * num_classes), grad)
        theta -= step.reshape((d, num_classes), order="F")
    return theta[:-1], theta[-1]


def test_logistic_fit_converges_to_the_newton_solution():
    x, y = blobs(n_per_class=20, num_classes=3, dim=4, spread=2.0, seed=4)
    expected_weights, expected_bias = newton_logistic(x, y, 3, 0.05)
    weights, bias, info = probe.logistic_fit(
        x, y, 3, 0.05, tol=1e-9, max_iter=1000, dtype=np.float64
    )
    assert info["converged"], info
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    # biases are defined up to a common shift: compare the logits they give
    np.testing.assert_allclose(x @ weights + bias, x @ expected_weights + expected_bias, atol=1e-4)
    # float32 products (the default) to their precision
    weights, bias, info = probe.logistic_fit(x, y, 3, 0.05, tol=1e-5, max_iter=1000)
    assert info["converged"], info
    np.testing.assert_allclose(x @ weights + bias, x @ expected_weights + expected_bias, atol=1e-3)


def test_label_spreading_reaches_the_closed_form():
    x, y = blobs(n_per_class=8, seed=5)
    labels = np.full_like(y, -1)
    labels[::4] = y[::4]
    rows, cols, values = probe.knn_graph(x, 4)
    dense = np.zeros((len(y), len(y)))
    dense[rows, cols] = values
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)  # symmetric normalised affinity
    alpha = 0.8
    seed = np.zeros((len(y), 3))
    seed[np.flatnonzero(labels >= 0), labels[labels >= 0]] = 1.0
    closed = np.linalg.solve(np.eye(len(y)) - alpha * dense, (1 - alpha) * seed)
    spread = probe.label_spreading((rows, cols, values), labels, 3, alpha=alpha, iterations=200)
    np.testing.assert_allclose(spread, closed / closed.sum(1, keepdims=True), atol=1e-4)


def test_knn_votes_weight_the_nearest_references():
    reference = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
    targets = one_hot(np.array([0, 0, 1]), 2)
    query = np.array([[0.2, 1.0]], np.float32)
    votes = probe.knn_votes(reference, targets, query, k=2, temperature=0.1)
    similarity = probe.normalize_rows(query) @ probe.normalize_rows(reference).T
    top = np.argsort(-similarity[0])[:2]
    weights = np.exp(similarity[0, top] / 0.1)
    expected = (weights[:, None] * targets[top]).sum(0) / weights.sum()
    np.testing.assert_allclose(votes[0], expected, atol=1e-5)


def test_stratified_folds_deal_each_class_evenly_and_skip_unlabelled():
    labels = np.array([0] * 10 + [1] * 5 + [-1] * 3)
    folds = probe.stratified_folds(labels, 5, seed=0)
    assert (folds[-3:] == -1).all()
    for label in (0, 1):
        counts = np.bincount(folds[labels == label], minlength=5)
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("candidate", probe.CANDIDATES)
def test_select_classifier_fits_every_candidate_on_separable_blobs(candidate):
    x, y = blobs(n_per_class=25, seed=6)
    test_x, test_y = blobs(n_per_class=10, seed=7)
    labels = y.copy()
    labels[::3] = -1  # a third unlabelled: in the pool, never scored
    fitted = probe.select_classifier(x, labels, 3, candidates=(candidate,), folds=3, seed=0)
    assert fitted.kind == candidate
    assert fitted.selection["chosen"] == candidate
    assert fitted.selection["labelled"] == int((labels >= 0).sum())
    assert fitted.selection["pool"] == len(labels)
    assert np.mean(fitted.predict(test_x) == test_y) > 0.95
    # the cross-validation's seconds by part: the graph only where a candidate spreads
    timings = fitted.selection["cv_timings"]
    assert set(timings) == {"standardize", "pca", "graph", candidate}
    assert timings[candidate] > 0
    assert (timings["graph"] > 0) == (candidate in ("label_spreading", "spread_ridge"))
    assert (timings["pca"] > 0) == (candidate not in ("ridge", "logistic"))
    assert sum(timings.values()) <= fitted.selection["cv_seconds"]


def test_selection_picks_the_best_cross_validated_candidate():
    x, y = blobs(n_per_class=30, seed=8)
    fitted = probe.select_classifier(x, y, 3, candidates=("ridge", "knn"), folds=3, seed=0)
    scores = {
        name: fitted.selection["candidates"][name]["cv_accuracy"] for name in ("ridge", "knn")
    }
    assert fitted.selection["cv_accuracy"] == max(scores.values())
    assert fitted.kind == max(scores, key=lambda name: (scores[name], name == "ridge"))


def test_selection_fits_only_on_labelled_rows(monkeypatch):
    """A spy on every solver: each fit sees labelled rows of the pool only (the unlabelled
    rows are in the standardisation and the graph, never in a fit or a score)."""
    x, y = blobs(n_per_class=20, seed=9)
    labels = y.copy()
    labels[1::2] = -1
    mean, scale = probe.feature_stats(x)
    z = probe.standardize(x, mean, scale)
    projected = z @ probe.principal_basis(z, 128)  # kNN's space
    labelled_rows = {
        tuple(np.round(row, 4)) for row in np.vstack([z, projected])[np.tile(labels >= 0, 2)]
    }
    seen = []

    def spy(function):
        def wrapper(rows, *args, **kwargs):
            seen.append(np.asarray(rows))
            return function(rows, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(probe, "logistic_fit", spy(probe.logistic_fit))
    monkeypatch.setattr(probe, "ridge_fit", spy(probe.ridge_fit))
    original_solver = probe._RidgeSolver

    class SpySolver(original_solver):
        def __init__(self, rows, targets):
            seen.append(np.asarray(rows))
            super().__init__(rows, targets)

    monkeypatch.setattr(probe, "_RidgeSolver", SpySolver)
    monkeypatch.setattr(probe, "_neighbours", spy(probe._neighbours))
    probe.select_classifier(x, labels, 3, candidates=("ridge", "logistic", "knn"), folds=2, seed=0)
    assert len(seen) > 4
    for rows in seen:
        assert {tuple(np.round(row, 4)) for row in rows} <= labelled_rows


@pytest.mark.parametrize(
    "candidate", ["ridge", "logistic", "knn", "label_spreading", "spread_ridge"]
)
def test_repeated_cross_validation_scores_each_setting_over_every_split(candidate):
    """Every setting's score with `repeats=3` is the mean of its scores over the three splits
    that single cross-validations draw with the repeats' fold seeds."""
    x, y = blobs(n_per_class=12, seed=4, spread=2.5)  # overlapping: the folds matter
    labels = y.copy()
    labels[::3] = -1  # a pool to spread to
    step = probe.REPEAT_SEED_STEP
    single = [
        probe.select_classifier(x, labels, 3, candidates=(candidate,), folds=3, seed=5 + step * r)
        for r in range(3)
    ]
    repeated = probe.select_classifier(
        x, labels, 3, candidates=(candidate,), folds=3, seed=5, repeats=3
    )
    grids = [fitted.selection["candidates"][candidate]["grid"] for fitted in single]
    assert len({tuple(grid.values()) for grid in grids}) > 1  # the splits do differ
    expected = {key: np.mean([grid[key] for grid in grids]) for key in grids[0]}
    record = repeated.selection["candidates"][candidate]
    assert record["grid"] == pytest.approx(expected, abs=1e-12)
    assert record["cv_accuracy"] == pytest.approx(max(expected.values()), abs=1e-12)
    assert repeated.selection["repeats"] == 3
    with pytest.raises(ValueError, match="repeats"):
        probe.select_classifier(x, labels, 3, candidates=(candidate,), repeats=0)


def test_auto_repeats_draw_the_folds_until_600_predictions_at_most_5_times():
    labelled = (50, 120, 200, 201, 300, 599, 600, 5000)
    assert [probe.cv_repeats("auto", rows) for rows in labelled] == [5, 5, 3, 3, 2, 2, 1, 1]
    assert probe.cv_repeats(2, 5000) == 2  # a number is taken as it is


def test_pool_tolerance_takes_a_pool_head_within_that_many_standard_errors_of_the_best():
    """`pool_tolerance`: ridge on spread labels, then label spreading, is chosen over the best
    cross-validated head when its CV accuracy is within that many binomial standard errors of
    the best's (over the scored labelled rows); just outside, the best is kept."""
    x, y = blobs(n_per_class=12, seed=3, spread=2.5)
    labels = y.copy()
    labels[::3] = -1  # 24 labelled rows and a pool to spread to

    def select(tolerance, candidates=probe.CANDIDATES):
        return probe.select_classifier(
            x,
            labels,
            3,
            candidates=candidates,
            folds=3,
            seed=5,
            repeats=2,
            pool_tolerance=tolerance,
        )

    plain = select(0.0).selection
    accuracy = {name: record["cv_accuracy"] for name, record in plain["candidates"].items()}
    best = max(accuracy, key=accuracy.get)
    assert plain["best"] == plain["chosen"] == best == "ridge"  # a labelled-only head wins
    se = math.sqrt(accuracy[best] * (1 - accuracy[best]) / 24)
    assert plain["standard_error"] == pytest.approx(se, rel=1e-12)
    spread_gap = (accuracy[best] - accuracy["spread_ridge"]) / se
    spreading_gap = (accuracy[best] - accuracy["label_spreading"]) / se
    assert 0 < spread_gap < spreading_gap
    assert select(spread_gap * 0.99).selection["chosen"] == "ridge"
    fitted = select(spread_gap * 1.01)
    assert (fitted.kind, fitted.selection["best"]) == ("spread_ridge", "ridge")
    assert fitted.selection["pool_tolerance"] == pytest.approx(spread_gap * 1.01)
    assert fitted.selection["setting"] == plain["candidates"]["spread_ridge"]["setting"]
    assert select(100.0).kind == "spread_ridge"  # preferred to label spreading
    without = [name for name in probe.CANDIDATES if name != "spread_ridge"]
    assert select(spreading_gap * 0.99, without).kind == "ridge"
    assert select(spreading_gap * 1.01, without).kind == "label_spreading"
    for bad in (-0.5, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="pool_tolerance must be a finite number >= 0"):
            select(bad)


def test_auto_repeats_are_resolved_from_the_scored_rows():
    x, y = blobs(n_per_class=20, seed=1)  # 60 labelled rows: ceil(600 / 60) = 10, at most 5
    assert (
        probe.select_classifier(x, y, 3, candidates=("ridge",), repeats="auto").selection["repeats"]
        == 5
    )
    # 300 labelled rows, of which the CV scores a stratified 150: ceil(600 / 150) = 4 draws
    x, y = blobs(n_per_class=100, seed=1)
    fitted = probe.select_classifier(
        x, y, 3, candidates=("ridge",), repeats="auto", cv_max_rows=150
    )
    assert (fitted.selection["cross_validated"], fitted.selection["repeats"]) == (150, 4)
    with pytest.raises(ValueError, match="Received: repeats='often'"):
        probe.select_classifier(x, y, 3, candidates=("ridge",), repeats="often")


def test_select_classifier_rejects_bad_input():
    x, y = blobs(n_per_class=5)
    with pytest.raises(ValueError, match="Received: candidate='svm'"):
        probe.select_classifier(x, y, 3, candidates=("svm",))
    with pytest.raises(ValueError, match="at least 2 labelled rows"):
        probe.select_classifier(x, np.full_like(y, -1), 3)
    with pytest.raises(ValueError, match="one label per row"):
        probe.select_classifier(x, y[:-1], 3)


@pytest.mark.parametrize("candidate", ["ridge", "logistic", "knn", "label_spreading"])
def test_fitted_head_gives_the_fitted_classifiers_probabilities(candidate):
    import keras

    from contrastive.models import build_fitted_head

    x, y = blobs(n_per_class=20, seed=10)
    x = x * 3.0 + 5.0  # not standardised: the head must standardise as the fit did
    labels = y.copy()
    labels[::5] = -1
    fitted = probe.select_classifier(x, labels, 3, candidates=(candidate,), folds=2, seed=0)
    head = build_fitted_head(fitted, x.shape[1], 3)
    query = blobs(n_per_class=6, seed=11)[0] * 3.0 + 5.0
    probabilities = keras.ops.convert_to_numpy(head(query))
    scores = fitted.scores(query)
    if candidate in ("ridge", "logistic"):
        scores = np.exp(scores - scores.max(1, keepdims=True))
        scores /= scores.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, scores, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
