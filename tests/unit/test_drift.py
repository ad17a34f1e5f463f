"""contrastive.drift: the MMD two-sample test, the streamed sample, the retraining decision."""

import numpy as np
import pytest

from contrastive import drift


def _reference_mmd2(x, y, bandwidth, normalize=False):
    """Gretton et al. 2012, Eq. 3, written out with loops over pairs (independent of
    `drift._mmd2`'s matrix form)."""
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * bandwidth**2))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("normalize", [False, True])
def test_statistic_matches_the_written_out_estimate(normalize):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 4)), rng.normal(0.5, 1.0, size=(7, 4))
    result = drift.mmd_test(x, y, permutations=20, bandwidth=0.8, normalize=normalize)
    expected = _reference_mmd2(x, y, 0.8, normalize)
    assert result["statistic"] == pytest.approx(expected, rel=1e-9)
    assert result["effect_size"] == pytest.approx(np.sqrt(max(result["statistic"], 0)))
    assert result["sizes"] == [9, 7] and len(result["null"]) == 20


def test_median_heuristic_bandwidth():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    pooled = np.concatenate([x, y])
    distances = [
        np.linalg.norm(pooled[i] - pooled[j])
        for i in range(len(pooled))
        for j in range(i + 1, len(pooled))
    ]
    result = drift.mmd_test(x, y, permutations=5)
    assert result["bandwidth"] == pytest.approx(np.median(distances), rel=1e-9)


def test_permutation_null_holds_the_statistics_of_relabelled_splits():
    # Every permuted value is the MMD² of some split of the pooled rows into 5 and 4: with
    # so few rows all 126 splits can be enumerated.
    import itertools

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    pooled = np.concatenate([x, y])
    result = drift.mmd_test(x, y, permutations=50, bandwidth=1.0, chunk=7)
    every = {
        round(_reference_mmd2(pooled[list(a)], np.delete(pooled, list(a), axis=0), 1.0), 9)
        for a in itertools.combinations(range(9), 5)
    }
    assert all(round(value, 9) in every for value in result["null"])
    expected = (1 + sum(v >= result["statistic"] - 1e-12 for v in result["null"])) / 51
    assert result["p_value"] == pytest.approx(expected)


def test_same_distribution_is_not_drift_and_a_shift_is():
    rng = np.random.default_rng(3)
    centre = rng.normal(size=16)
    p_values = []
    for seed in range(10):
        draws = np.random.default_rng(100 + seed)
        x = centre + draws.normal(size=(200, 16))
        y = centre + draws.normal(size=(200, 16))
        p_values.append(drift.mmd_test(x, y, permutations=200, seed=seed)["p_value"])
    assert sum(p < 0.05 for p in p_values) <= 2, p_values  # 10 draws at alpha 0.05
    shifted = centre + 0.6 * np.eye(16)[0] + rng.normal(size=(200, 16))
    same = centre + rng.normal(size=(200, 16))
    result = drift.mmd_test(same, shifted, permutations=200)
    assert result["p_value"] < 0.01 and result["statistic"] > max(result["null"])


def test_test_is_symmetric_and_seeded():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.3, 1, size=(25, 5))
    first = drift.mmd_test(x, y, permutations=100, seed=7)
    assert drift.mmd_test(x, y, permutations=100, seed=7) == first
    swapped = drift.mmd_test(y, x, permutations=100, seed=7)
    assert swapped["statistic"] == pytest.approx(first["statistic"])


def test_a_scaled_sample_drifts_unless_normalised():
    # What a darker image does to a ReLU encoder's features: the same directions, smaller.
    rng = np.random.default_rng(5)
    x, y = rng.normal(1, 1, size=(150, 8)), rng.normal(1, 1, size=(150, 8))
    assert drift.mmd_test(x, 0.7 * y, permutations=100)["p_value"] < 0.01
    assert drift.mmd_test(x, 0.7 * y, permutations=100, normalize=True)["p_value"] > 0.05


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((1, 3)), np.ones((4, 3)), "x must be [rows >= 2, dim]"),
        (np.ones((4, 3)), np.ones((4, 2)), "x and y must have the same width"),
        (np.full((3, 2), np.nan), np.ones((4, 2)), "x must be finite"),
    ],
)
def test_bad_samples_are_refused(x, y, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        drift.mmd_test(x, y)


def test_reservoir_keeps_everything_up_to_its_capacity_in_order():
    sample = drift.ReservoirSample(10)
    sample.add(np.arange(4) * 10, np.array(list("abcd")))
    sample.add(np.arange(4, 7) * 10, np.array(list("efg")))
    positions, (values, names) = sample.arrays()
    assert positions.tolist() == list(range(7)) and values.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert names.tolist() == list("abcdefg") and sample.seen == 7


def test_reservoir_sample_is_uniform_bounded_and_aligned():
    counts = np.zeros(100)
    for seed in range(400):
        sample = drift.ReservoirSample(20, seed=seed)
        for start in range(0, 100, 16):  # batches that straddle the capacity
            rows = np.arange(start, min(start + 16, 100))
            sample.add(rows * 2, rows)
        positions, (doubled, rows) = sample.arrays()
        assert len(positions) == 20 and np.all(np.diff(positions) > 0)
        assert np.array_equal(rows, positions) and np.array_equal(doubled, 2 * positions)
        counts[positions] += 1
    # Each row is kept with probability 0.2: 80 of 400 runs, binomial std 8.
    assert np.all(np.abs(counts - 80) < 5 * 8), counts
    assert abs(counts[:20].mean() - counts[80:].mean()) < 12  # early rows are not favoured


def test_label_shift_is_the_total_variation_of_the_class_shares():
    shift = drift.label_shift([0, 0, 1, 1], [0, 1, 1, 1, -1], 3)
    assert shift["reference_shares"] == [0.5, 0.5, 0.0]
    assert shift["new_shares"] == [0.25, 0.75, 0.0]
    assert shift["total_variation"] == pytest.approx(0.25)


SAME = {"data": "d1", "code": "c1"}
NO_DRIFT = {"statistic": 0.0001, "p_value": 0.4}
DRIFT = {"statistic": 0.02, "p_value": 0.002}


@pytest.mark.parametrize(
    ("policy", "champion", "mine", "test", "train", "reason"),
    [
        ("always", SAME, SAME, NO_DRIFT, True, "retrain_when=always"),
        ("changed", None, SAME, None, True, "no champion"),
        ("changed", SAME, SAME, NO_DRIFT, False, "the same training data, no drift"),
        ("changed", SAME, {"data": "d2", "code": "c1"}, NO_DRIFT, True, "data changed"),
        ("changed", SAME, {"data": "d1", "code": "c2"}, NO_DRIFT, True, "code or the training"),
        ("changed", SAME, SAME, DRIFT, True, "drift found"),
        ("changed", SAME, SAME, None, True, "could not be measured"),
        ("drifted", SAME, {"data": "d2", "code": "c1"}, NO_DRIFT, False, "new training data"),
        ("drifted", SAME, {"data": "d2", "code": "c1"}, DRIFT, True, "p = 0.002 < 0.05"),
        ("drifted", SAME, {"data": "d2", "code": "c2"}, NO_DRIFT, True, "code or the training"),
    ],
)
def test_retraining_decision(policy, champion, mine, test, train, reason):
    decided, why = drift.decide_retraining(
        policy, champion=champion, fingerprints=mine, test=test, alpha=0.05
    )
    assert decided is train and reason in why


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="retrain_when must be one of"):
        drift.decide_retraining("never", champion=None, fingerprints={}, test=None, alpha=0.05)
    with pytest.raises(ValueError, match="alpha must be in"):
        drift.DriftSettings(alpha=1.5)


def test_reservoir_of_one_keeps_the_second_of_two_rows_half_the_time():
    kept = []
    for seed in range(400):
        sample = drift.ReservoirSample(1, seed=seed)
        sample.add(np.arange(2))
        kept.append(int(sample.arrays()[0][0]))
    assert 160 < sum(kept) < 240  # binomial(400, 0.5): std 10
