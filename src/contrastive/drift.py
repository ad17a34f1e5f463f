"""Has the training data moved? A two-sample test on encoder embeddings, and what a scheduled
run does with the answer.

The champion's encoder embeds a bounded, uniform sample of the champion's training data (kept
with the champion when it is promoted, `reference`) and the same size of sample of the new
run's training data; `mmd_test` compares the two: the maximum mean discrepancy (Gretton et al.
2012) with a Gaussian kernel on the embeddings, a permutation p-value from a
bounded number of seeded permutations, and the MMD itself as the effect size.
`decide_retraining` turns the test and the data and code fingerprints into the run's
decision. Pure NumPy; the step that embeds the samples is `contrastive.tasks.inspecting`.

Reference: Gretton, Borgwardt, Rasch, Schölkopf, Smola 2012, "A Kernel Two-Sample Test"
(JMLR 13), Eq. 3 (unbiased MMD²) and Sec. 8 (the median heuristic for the bandwidth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contrastive import validation

# What `retrain_when` may say (the pipeline parameter): when a scheduled run trains.
RETRAIN_POLICIES = ("always", "changed", "drifted")
RETRAIN, SKIP = "train", "skip"


@dataclass(frozen=True)
class DriftSettings:
    """How drift is measured."""

    sample_size: int = 1000  # embeddings per side (the champion's reference, the new data)
    permutations: int = 500  # of the pooled sample, for the p-value (resolution 1/501)
    alpha: float = 0.05  # drift is found when the p-value is below this
    seed: int = 0  # of the samples and the permutations
    max_points: int = 300  # per side in the report's 2-D map

    def __post_init__(self):
        validation.check_int("sample_size", self.sample_size, minimum=2)
        validation.check_int("permutations", self.permutations)
        validation.check_int("max_points", self.max_points)
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1). Received: alpha={self.alpha!r}")


class ReservoirSample:
    """A uniform sample of at most `capacity` rows of a stream (Vitter's algorithm R), in
    bounded memory: the first `capacity` rows, then row `t` replaces a random slot with
    probability `capacity / (t + 1)`. Seeded: the same stream gives the same sample.

    Each row is a tuple of aligned arrays (features, labels, ids, ...); `add` takes a batch
    of them, `arrays` returns the sample in stream order, with each row's stream position.
    """

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = validation.check_int("capacity", capacity)
        self._rng = np.random.default_rng(seed)
        self._columns: list[np.ndarray] | None = None
        self._positions = np.zeros(0, np.int64)
        self.seen = 0

    def add(self, *columns) -> None:
        columns = [np.asarray(column) for column in columns]
        count = len(columns[0])
        if any(len(column) != count for column in columns):
            raise ValueError(
                "every column of a batch needs one entry per row. "
                f"Received: lengths {[len(column) for column in columns]}"
            )
        positions = np.arange(self.seen, self.seen + count, dtype=np.int64)
        free = max(0, min(count, self.capacity - len(self._positions)))
        if free:
            self._append([column[:free] for column in columns], positions[:free])
        if free < count:
            later = positions[free:]
            slots = (self._rng.random(len(later)) * (later + 1)).astype(np.int64)
            chosen = np.flatnonzero(slots < self.capacity)
            # A later row replacing the same slot wins, as in the sequential algorithm.
            _, last = np.unique(slots[chosen][::-1], return_index=True)
            chosen = chosen[::-1][last]
            for column, new in zip(self._columns, columns, strict=True):
                column[slots[chosen]] = new[free:][chosen]
            self._positions[slots[chosen]] = later[chosen]
        self.seen += count

    def _append(self, columns, positions) -> None:
        if self._columns is None:
            self._columns = [column.copy() for column in columns]
        else:
            self._columns = [
                np.concatenate([old, new]) for old, new in zip(self._columns, columns, strict=True)
            ]
        self._positions = np.concatenate([self._positions, positions])

    def arrays(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """`(positions int64 [n], [column [n, ...], ...])` in stream order; empty columns
        when nothing was added."""
        order = np.argsort(self._positions, kind="stable")
        columns = [] if self._columns is None else [column[order] for column in self._columns]
        return self._positions[order], columns


def mmd_test(
    x,
    y,
    *,
    permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
    normalize: bool = False,
    chunk: int = 100,
) -> dict:
    """Kernel two-sample test of `x` against `y`: unbiased MMD², permutation p-value.

    Rows are compared as they are (the features a linear classifier reads: a brightness
    change that scales them counts), or L2-normalised with `normalize` (the cosine space of
    the neighbours), with the Gaussian kernel `k(a, b) = exp(-|a - b|² / (2 σ²))`, σ the
    median distance between distinct rows of the pooled sample (fixed before permuting, so
    the test stays exact). The p-value is
    `(1 + #{permuted MMD² >= observed}) / (1 + permutations)` over `permutations` seeded
    reassignments of the pooled rows to the two sides. Memory: the `(n + m)²` kernel matrix
    plus `chunk` permutations at a time.

    Args:
        x: `[n, D]`, n >= 2.
        y: `[m, D]`, m >= 2.
        permutations: >= 1.
        seed: of the permutations.
        bandwidth: σ; None: the median heuristic.
        normalize: L2-normalise the rows first.
        chunk: permutations evaluated per matrix product.

    Returns:
        `{"statistic": MMD², "effect_size": sqrt(max(MMD², 0)), "p_value", "bandwidth",
        "permutations", "null": [permuted MMD², ...], "sizes": [n, m]}`, floats.

    Raises:
        ValueError: fewer than two rows on a side, differing widths, non-finite values.
    """
    x, y = _rows("x", x), _rows("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same width. Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    validation.check_int("permutations", permutations)
    validation.check_int("chunk", chunk)
    pooled = np.concatenate([x, y]).astype(np.float64)
    if normalize:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    norms = np.sum(pooled**2, axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    if bandwidth is None:
        distances = np.sqrt(squared[np.triu_indices(len(pooled), 1)])
        positive = distances[distances > 1e-12]
        bandwidth = float(np.median(positive)) if positive.size else 1.0
    else:
        validation.check_positive("bandwidth", bandwidth)
    kernel = np.exp(-squared / (2.0 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out i == j
    n = len(x)
    observed = _mmd2(kernel, np.arange(len(pooled))[:, None] < n, n)[0]
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, permutations, chunk):
        count = min(chunk, permutations - start)
        # Column j marks side x of permutation j: the first n of a random order of the rows.
        order = np.argsort(rng.random((len(pooled), count)), axis=0)
        sides = np.zeros((len(pooled), count), bool)
        np.put_along_axis(sides, order[:n], True, axis=0)
        null.append(_mmd2(kernel, sides, n))
    null = np.concatenate(null)
    p_value = (1.0 + np.count_nonzero(null >= observed - 1e-12)) / (1.0 + permutations)
    return {
        "statistic": float(observed),
        "effect_size": float(np.sqrt(max(observed, 0.0))),
        "p_value": float(p_value),
        "bandwidth": float(bandwidth),
        "permutations": int(permutations),
        "null": [float(value) for value in null],
        "sizes": [int(n), int(len(y))],
    }


def _mmd2(kernel: np.ndarray, sides: np.ndarray, n: int) -> np.ndarray:
    """Unbiased MMD² per column of `sides` (`[N, P]` booleans, n True per column) for a
    kernel matrix with a zero diagonal."""
    a = sides.astype(np.float64)
    b = 1.0 - a
    m = kernel.shape[0] - n
    kernel_a = kernel @ a  # [N, P]
    kernel_b = kernel.sum(axis=1, keepdims=True) - kernel_a
    within_x = np.einsum("ij,ij->j", a, kernel_a) / (n * (n - 1))
    within_y = np.einsum("ij,ij->j", b, kernel_b) / (m * (m - 1))
    across = np.einsum("ij,ij->j", a, kernel_b) / (n * m)
    return within_x + within_y - 2.0 * across


def label_shift(reference_labels, new_labels, num_classes: int) -> dict:
    """Class shares of the two samples and their total variation distance (half the L1
    distance of the shares, in [0, 1]); unlabelled entries (< 0) are left out."""
    shares = []
    for labels in (reference_labels, new_labels):
        labels = np.asarray(labels, dtype=np.int64)
        labels = labels[labels >= 0]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes].astype(np.float64)
        shares.append(counts / counts.sum() if counts.sum() else counts)
    return {
        "reference_shares": shares[0].tolist(),
        "new_shares": shares[1].tolist(),
        "total_variation": float(0.5 * np.abs(shares[0] - shares[1]).sum()),
    }


def decide_retraining(
    policy: str,
    *,
    champion: dict | None,
    fingerprints: dict,
    test: dict | None,
    alpha: float,
) -> tuple[bool, str]:
    """Whether a run trains, and why.

    Args:
        policy: `always` (train every run), `changed` (skip when the data and the code are
            the champion's and no drift is found), `drifted` (skip when the code is the
            champion's and no drift is found, even on new data).
        champion: the champion's `{"data": ..., "code": ...}` fingerprints; None when there is
            no champion, or it was promoted without a drift reference.
        fingerprints: this run's `{"data": ..., "code": ...}`.
        test: `mmd_test`'s result against the champion's reference; None when not measured.
        alpha: drift is found when the p-value is below it.

    Returns:
        `(train, reason)`.
    """
    validation.check_choice("retrain_when", policy, RETRAIN_POLICIES)
    if policy == "always":
        return True, "retrain_when=always: every run trains"
    if champion is None:
        return True, "no champion with a drift reference to compare with: training"
    same_code = champion.get("code") == fingerprints.get("code")
    same_data = champion.get("data") == fingerprints.get("data")
    if not same_code:
        return True, "the code or the training configuration changed since the champion"
    if policy == "changed" and not same_data:
        return True, "the training data changed since the champion (retrain_when=changed)"
    if test is None:
        return True, "drift could not be measured: training"
    if test["p_value"] < alpha:
        return True, (
            f"drift found: MMD² {test['statistic']:.4g}, p = {test['p_value']:.3g} < {alpha:g}"
        )
    data = "the same training data" if same_data else "new training data"
    return False, (
        f"skipped: the champion's code and configuration, {data}, no drift "
        f"(MMD² {test['statistic']:.4g}, p = {test['p_value']:.3g} >= {alpha:g})"
    )


def _rows(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be [rows >= 2, dim]. Received: {name}.shape={array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: a non-finite value")
    return array
