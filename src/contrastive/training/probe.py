"""Classifiers fitted on frozen features, and their choice by k-fold cross-validation.

A linear head trained by a few epochs of gradient descent is under-fitted and sensitive to
its learning rate; these are fitted to convergence on features held in memory (NumPy,
float64 where it matters):

- `ridge`: closed-form ridge regression on one-hot targets (with intercept), every strength
  of a grid solved from one eigendecomposition per fold;
- `logistic`: L2-regularised multinomial logistic regression, L-BFGS to a gradient tolerance;
- `knn`: weighted cosine kNN (Wu et al. 2018), `k` by cross-validation;
- `label_spreading`: Zhou et al. (2004) over a kNN graph of the labelled *and* unlabelled
  training pool; new images are classified by a kNN vote over the pool's spread labels;
- `spread_ridge`: the same spreading labels the whole pool (its argmax; the true labels where
  known), then ridge regression on every pool row learns them: a linear head that new images
  reach without an index (the best at 1 % labels, docs/BENCHMARKS.md 4c).

`select_classifier` standardises the features (mean and scale of the whole training pool,
labelled or not; never validation or test), scores every candidate and strength by stratified
k-fold cross-validation on the labelled rows alone, and refits the winner on all of them. The
result is a `FittedClassifier` that `contrastive.models.build_fitted_head` turns into a Keras
head (a `Dense` layer with the standardisation folded in, or a `KnnHead`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np

from contrastive import validation

log = logging.getLogger(__name__)

CANDIDATES = ("ridge", "logistic", "knn", "label_spreading", "spread_ridge")
# The candidates whose head is one linear layer (the others keep a reference set).
LINEAR_KINDS = ("ridge", "logistic", "spread_ridge")
# Strengths tried: ridge's penalty on the squared error summed over rows (standardised
# features: the Gram matrix's mean eigenvalue is the number of rows), and logistic
# regression's L2 weight beside the mean cross-entropy (strong to weak: warm starts).
RIDGE_STRENGTHS = tuple(10.0**e for e in np.arange(-2.0, 5.01, 0.5))
LOGISTIC_LAMBDAS = tuple(10.0**e for e in np.arange(0.0, -4.01, -1.0))
# Labelled rows the cross-validation scores at most (a stratified subset; the final fit reads
# every labelled row). 10,000 rather than 5,000: on validation, nine of nine encoder/seed cases
# with more rows were unchanged or better (+1.06 where the choice moved), and `quick` SupCon
# seed 2 chose logistic lambda 0.01 over 0.1 (validation 90.32 -> 91.52 %); docs/BENCHMARKS.md 4c.
CV_MAX_ROWS = 10_000
FINAL_LOGISTIC_TOL = 1e-3  # the refit on every labelled row (max-abs gradient)
KNN_KS = (1, 3, 5, 10, 20, 50, 100, 200)
SPREADING_ALPHAS = (0.5, 0.9, 0.99)
REPEAT_SEED_STEP = 7919  # the fold seed of repeat r is seed + r * this
# `train.probe_repeats: auto`: the k-fold split is drawn until about this many held-out
# predictions score each setting (3 draws at 200 labelled rows, one from 600), at most
# AUTO_MAX_REPEATS. With 200 labels one draw's folds decided between heads 4 points apart
# (docs/BENCHMARKS.md 4c, "repeated cross-validation").
AUTO_SCORED_ROWS = 600
AUTO_MAX_REPEATS = 5
# The heads that read the unlabelled pool, in the order `pool_tolerance` prefers them: on
# validation data at 200 labels (docs/BENCHMARKS.md 4c) ridge on spread labels beat every
# other head in all nine encoder/seed cases, label spreading came second in most.
POOL_PREFERENCE = ("spread_ridge", "label_spreading")


@dataclasses.dataclass(frozen=True)
class FittedClassifier:
    """A classifier fitted on standardised features.

    `kind` "ridge" / "logistic" / "spread_ridge": `scores = score_scale * (((features - mean)
    / scale) @ weights + bias)` (`score_scale` makes ridge's scores readable as softmax
    logits; 1 for logistic).
    "knn" / "label_spreading": a weighted cosine kNN in the principal subspace `projection`
    (`[D, P]`) of the standardised features: `reference` (`[N, P]`, pool rows projected) vote
    with `reference_targets` (`[N, C]`, one-hot or spread labels), `k` neighbours, vote
    temperature `temperature`.
    `selection` records every candidate's cross-validated accuracy and the chosen settings.
    """

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    score_scale: float = 1.0
    projection: np.ndarray | None = None
    reference: np.ndarray | None = None
    reference_targets: np.ndarray | None = None
    k: int = 0
    temperature: float = 0.1
    selection: dict = dataclasses.field(default_factory=dict)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Class scores `[M, C]` of raw (unstandardised) features `[M, D]`; argmax = class."""
        z = standardize(features, self.mean, self.scale)
        if self.kind in LINEAR_KINDS:
            return self.score_scale * (z @ self.weights + self.bias)
        return knn_votes(
            self.reference,
            self.reference_targets,
            z @ self.projection,
            k=self.k,
            temperature=self.temperature,
        )

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(features), axis=1)


# --------------------------------------------------------------------------------------------
# BLAS threads


@contextlib.contextmanager
def blas_threads(count: int = 1) -> Iterator[None]:
    """Limits NumPy's BLAS (OpenBLAS) to `count` threads inside the block.

    OpenBLAS's threads spin while they wait for each other; on a machine whose cores are
    busy with other work (a shared CI runner, a pod under its CPU limit) a 2-thread solve of
    these sizes ran 20 to 50 times slower than a 1-thread one (docs/BENCHMARKS.md 4c), so the
    probe's solvers run in one. `threadpoolctl` is used when installed; else the OpenBLAS
    that NumPy loaded is found in `/proc/self/maps` and set through its C API (Linux); else
    nothing changes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(count, user_api="blas"):
            yield
        return
    controls = _openblas_controls()
    previous = [get() for get, _ in controls]
    for _, set_threads in controls:
        set_threads(count)
    try:
        yield
    finally:
        for (_, set_threads), value in zip(controls, previous, strict=True):
            set_threads(value)


def _openblas_controls() -> list:
    """`(get, set)` thread-count functions of each OpenBLAS loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return []
    controls = []
    for path in paths:
        if ".so" not in path:
            continue
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", ""), ("openblas", "64_")):
            get = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
            set_threads = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_threads is not None:
                controls.append((get, set_threads))
                break
    return controls


# --------------------------------------------------------------------------------------------
# standardisation


def feature_stats(
    features: np.ndarray, min_scale: float = 1e-6, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale (standard deviation, at least `min_scale` times the largest
    one, so constant dimensions stay finite) of `features` `[N, D]`, float32; accumulated in
    float64 over row chunks (no float64 copy of the whole array)."""
    features = np.asarray(features)
    n = features.shape[0]
    total = np.zeros(features.shape[1])
    for start in range(0, n, chunk):
        total += features[start : start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(total)
    for start in range(0, n, chunk):
        centred = features[start : start + chunk] - mean.astype(np.float32)
        squares += np.einsum("ij,ij->j", centred, centred, dtype=np.float64)
    std = np.sqrt(squares / n)
    floor = max(float(std.max(initial=0.0)) * min_scale, 1e-12)
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


def standardize(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return ((np.asarray(features, dtype=np.float32) - mean) / scale).astype(np.float32)


# --------------------------------------------------------------------------------------------
# ridge


def ridge_fit(x, y, num_classes, strength):
    """Ridge regression on one-hot targets with an unpenalised intercept.

    Minimises `||X W + 1 b - Y||^2 + strength * ||W||^2`.

    Args:
        x: float `[N, D]`.
        y: int `[N]` in `[0, num_classes)`.
        num_classes: C.
        strength: the penalty, > 0 (absolute, not a multiple of N).

    Returns:
        `(weights float32 [D, C], bias float32 [C])`.
    """
    if not strength > 0:
        raise ValueError(f"strength must be > 0. Received: strength={strength!r}")
    return _RidgeSolver(x, _one_hot(y, num_classes)).solution(strength)


class _RidgeSolver:
    """Every ridge strength's solution for any targets, from one eigendecomposition of the
    centred data: the n x n kernel when there are fewer rows than features, else the D x D
    Gram matrix, built from sufficient statistics (`gram_stats`) so that cross-validation
    folds subtract their held-out rows instead of recomputing it.

    Args:
        x: float `[n, D]` rows.
        targets: float `[n, C]` (or None: give them to `fit`).
        stats: `(sum of x^T x [D, D] float64, sum of x [D], n)` of `x` when known.
    """

    def __init__(self, x, targets=None, stats=None):
        self.x = np.asarray(x, dtype=np.float32)
        n, d = self.x.shape
        self.dual = n < d
        if self.dual:  # W = Xc^T Q diag(1 / (e + s)) Q^T Yc
            self.x_mean = self.x.mean(axis=0, dtype=np.float64)
            xc = self.x.astype(np.float64) - self.x_mean
            eigenvalues, self.q = np.linalg.eigh(xc @ xc.T)
            self.basis = xc.T @ self.q  # [D, n]
        else:  # W = V diag(1 / (e + s)) V^T Xc^T Yc
            products, total, count = stats if stats is not None else gram_stats(self.x)
            self.x_mean = total / count
            eigenvalues, self.basis = np.linalg.eigh(
                products - count * np.outer(self.x_mean, self.x_mean)
            )
        self.eigenvalues = np.maximum(eigenvalues, 0.0)
        if targets is not None:
            self.fit(targets)

    def fit(self, targets):
        """Sets the targets `[n, C]` (one-hot, or any scores) the solutions regress."""
        targets = np.asarray(targets, dtype=np.float64)
        self.y_mean = targets.mean(axis=0)
        centred = targets - self.y_mean
        if self.dual:
            self.projected_targets = self.q.T @ centred
        else:  # X^T (Y - mean) = Xc^T Yc, in row chunks
            cross = np.zeros((self.x.shape[1], targets.shape[1]))
            for start in range(0, self.x.shape[0], 8192):
                rows = slice(start, start + 8192)
                cross += self.x[rows].T.astype(np.float64) @ centred[rows]
            self.projected_targets = self.basis.T @ cross
        return self

    def predictions(self, x_query, strengths):
        """Scores of `x_query` for every strength: `[len(strengths), M, C]`."""
        projected = (np.asarray(x_query, dtype=np.float64) - self.x_mean) @ self.basis
        out = []
        for strength in strengths:
            shrink = 1.0 / (self.eigenvalues + strength)
            out.append(projected @ (shrink[:, None] * self.projected_targets) + self.y_mean)
        return np.stack(out)

    def solution(self, strength):
        shrink = 1.0 / (self.eigenvalues + strength)
        weights = self.basis @ (shrink[:, None] * self.projected_targets)
        bias = self.y_mean - self.x_mean @ weights
        return weights.astype(np.float32), bias.astype(np.float32)


def gram_stats(x, chunk=8192):
    """`(x^T x float64 [D, D], column sums float64 [D], rows)` of float `[n, D]`, accumulated
    over row chunks of float32 products."""
    x = np.asarray(x, dtype=np.float32)
    products = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, x.shape[0], chunk):
        rows = x[start : start + chunk]
        products += rows.T @ rows
    return products, x.sum(axis=0, dtype=np.float64), x.shape[0]


# --------------------------------------------------------------------------------------------
# logistic regression


def logistic_fit(
    x, y, num_classes, strength, *, max_iter=500, tol=1e-5, init=None, dtype=np.float32
):
    """L2-regularised multinomial logistic regression, fitted with L-BFGS.

    Minimises `mean_i CE(softmax(x_i W + b), y_i) + strength / 2 * ||W||^2` (the bias is not
    penalised) until the largest gradient entry is below `tol` or `max_iter` iterations.

    Args:
        x: float `[N, D]`.
        y: int `[N]` in `[0, num_classes)`.
        num_classes: C.
        strength: L2 weight, > 0.
        max_iter: L-BFGS iterations, >= 1.
        tol: gradient tolerance (max-abs), > 0.
        init: `(weights [D, C], bias [C])` to start from (a warm start), or None for zeros.
        dtype: of the data products (float32: twice as fast; the optimiser's state is
            float64 either way).

    Returns:
        `(weights float32 [D, C], bias float32 [C], info)` with `info` holding `iterations`,
        `gradient` (the final max-abs gradient) and `converged`.
    """
    if not strength > 0:
        raise ValueError(f"strength must be > 0. Received: strength={strength!r}")
    x = np.asarray(x, dtype=dtype)
    n, d = x.shape
    targets = _one_hot(y, num_classes)

    def objective(theta):
        weights, bias = theta[: d * num_classes].reshape(d, num_classes), theta[d * num_classes :]
        logits = (x @ weights.astype(dtype)).astype(np.float64) + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_prob = logits - log_norm
        loss = -(targets * log_prob).sum() / n + 0.5 * strength * (weights**2).sum()
        residual = (np.exp(log_prob) - targets) / n
        grad_w = (x.T @ residual.astype(dtype)).astype(np.float64) + strength * weights
        return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    if init is None:
        theta = np.zeros(d * num_classes + num_classes)
    else:
        theta = np.concatenate([np.ravel(init[0]), np.ravel(init[1])]).astype(np.float64)
    theta, info = lbfgs(objective, theta, max_iter=max_iter, tol=tol)
    weights = theta[: d * num_classes].reshape(d, num_classes)
    return weights.astype(np.float32), theta[d * num_classes :].astype(np.float32), info


def lbfgs(objective, theta, *, max_iter=500, tol=1e-5, memory=10):
    """Minimises a smooth function with limited-memory BFGS and a backtracking (Armijo) line
    search (Nocedal & Wright, Algorithm 7.4/7.5).

    Args:
        objective: `theta -> (value, gradient)`.
        theta: float64 start `[P]`.
        max_iter: iterations, >= 1.
        tol: stop when `max|gradient| <= tol`.
        memory: curvature pairs kept.

    Returns:
        `(theta, info)`; `info` = `{"iterations", "gradient", "converged"}`.
    """
    validation.check_int("max_iter", max_iter)
    value, grad = objective(theta)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007  (reported below)
        if np.max(np.abs(grad)) <= tol:
            iteration -= 1
            break
        direction = -_two_loop(grad, pairs)
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            pairs.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0 if pairs else min(1.0, 1.0 / max(np.max(np.abs(grad)), 1e-12))
        while True:
            candidate = theta + step * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s, y = candidate - theta, new_grad - grad
        curvature = float(s @ y)
        if curvature > 1e-12:
            pairs.append((s, y, 1.0 / curvature))
            del pairs[:-memory]
        theta, value, grad = candidate, new_value, new_grad
        if step < 1e-12:
            break
    gradient = float(np.max(np.abs(grad)))
    return theta, {"iterations": iteration, "gradient": gradient, "converged": gradient <= tol}


def _two_loop(grad, pairs):
    q = grad.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * float(s @ q)
        q -= alpha * y
        alphas.append(alpha)
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas), strict=True):
        beta = rho * float(y @ q)
        q += (alpha - beta) * s
    return q


# --------------------------------------------------------------------------------------------
# kNN and label spreading


def normalize_rows(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_votes(reference, reference_targets, query, *, k, temperature=0.1, batch_size=1024):
    """Weighted cosine kNN votes `[M, C]`, rows summing to 1.

    The `k` most cosine-similar rows of `reference` vote with `reference_targets` (one-hot or
    soft labels) weighted by `exp(similarity / temperature)`.
    """
    reference = normalize_rows(reference)
    query = normalize_rows(query)
    targets = np.asarray(reference_targets, dtype=np.float32)
    k = min(int(k), reference.shape[0])
    out = np.empty((query.shape[0], targets.shape[1]), np.float32)
    for start in range(0, query.shape[0], batch_size):
        similarity = query[start : start + batch_size] @ reference.T
        top = _top_k(similarity, k)
        sims = np.take_along_axis(similarity, top, axis=1)
        weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / temperature)
        votes = np.einsum("bk,bkc->bc", weights, targets[top])
        out[start : start + batch_size] = votes / np.maximum(votes.sum(1, keepdims=True), 1e-30)
    return out


def _top_k(similarity, k):
    """Column indices of each row's `k` largest entries, largest first (`keras.ops.top_k`:
    a heap in the backend, several times faster than NumPy's `argpartition` for small k)."""
    import keras

    k = min(k, similarity.shape[1])
    _, indices = keras.ops.top_k(keras.ops.convert_to_tensor(similarity), k, sorted=True)
    return keras.ops.convert_to_numpy(indices).astype(np.int64)


def principal_basis(features, dim, chunk=4096):
    """The `dim` leading principal directions of `features` `[N, D]` (about their mean), as a
    float32 `[D, min(D, dim)]` matrix with orthonormal columns, largest variance first."""
    features = np.asarray(features, dtype=np.float32)
    mean = features.mean(axis=0)
    if features.shape[0] < features.shape[1]:  # the N x N kernel is the smaller problem
        centred = (features - mean).astype(np.float64)
        values, vectors = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(values)[::-1][: min(dim, features.shape[0])]
        basis = centred.T @ vectors[:, order] / np.sqrt(np.maximum(values[order], 1e-12))
        return basis.astype(np.float32)
    gram = np.zeros((features.shape[1],) * 2)
    for start in range(0, features.shape[0], chunk):
        centred = features[start : start + chunk] - mean
        gram += centred.T @ centred  # float32 products, float64 sum
    _, vectors = np.linalg.eigh(gram)
    return np.ascontiguousarray(vectors[:, ::-1][:, :dim]).astype(np.float32)


def knn_graph(features, k, *, batch_size=1024):
    """The symmetric normalised affinity `S = D^-1/2 W D^-1/2` of the `k`-nearest-neighbour
    graph of `features` (cosine; `W_ij = max(sim, 0)` kept where j is among i's k nearest or i
    among j's), as CSR-like arrays `(rows, cols, values)` of the nonzeros."""
    x = normalize_rows(features)
    n = x.shape[0]
    k = min(int(k), n - 1)
    rows, cols, values = [], [], []
    for start in range(0, n, batch_size):
        similarity = x[start : start + batch_size] @ x.T
        block = np.arange(similarity.shape[0])
        similarity[block, start + block] = -np.inf  # no self loop
        top = _top_k(similarity, k)
        rows.append(np.repeat(start + block, k))
        cols.append(top.ravel())
        values.append(np.maximum(np.take_along_axis(similarity, top, axis=1).ravel(), 0.0))
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
    # symmetrise: W = max(W, W^T) via the union of both directions
    key = np.concatenate([rows * n + cols, cols * n + rows])
    both = np.concatenate([values, values])
    order = np.argsort(key, kind="stable")
    key, both = key[order], both[order]
    unique, first = np.unique(key, return_index=True)
    merged = np.maximum.reduceat(both, first)
    rows, cols = unique // n, unique % n
    degree = np.bincount(rows, weights=merged, minlength=n)
    inverse_root = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    return rows, cols, (merged * inverse_root[rows] * inverse_root[cols]).astype(np.float32)


def label_spreading(graph, labels, num_classes, *, alpha=0.99, iterations=30):
    """Zhou et al. (2004): `F <- alpha * S F + (1 - alpha) * Y`, from `F = Y`.

    Args:
        graph: `(rows, cols, values)` of `S` from `knn_graph`.
        labels: int `[N]`, -1 for unlabelled rows.
        num_classes: C.
        alpha: in (0, 1); how far labels spread.
        iterations: updates, >= 1.

    Returns:
        float32 `[N, C]`, rows normalised to sum 1 (uniform where nothing reached a row).
    """
    from scipy import sparse

    rows, cols, values = graph
    labels = np.asarray(labels)
    count = labels.shape[0]
    seed = np.zeros((count, num_classes), np.float32)
    known = labels >= 0
    seed[np.flatnonzero(known), labels[known]] = 1.0
    spread = seed.copy()
    # `knn_graph` returns the nonzeros sorted by row, every row with at least one: they are
    # a CSR matrix as they are (SciPy's product: 7x NumPy's gather and reduceat at 20k rows)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    if starts.size != count:
        raise ValueError("graph must have a nonzero in every row (use knn_graph)")
    affinity = sparse.csr_matrix(
        (values, cols, np.r_[starts, rows.size]), shape=(count, count), dtype=np.float32
    )
    alpha = float(alpha)  # a Python float: a NumPy float64 would make `spread` float64
    for _ in range(iterations):
        spread = alpha * (affinity @ spread) + (1 - alpha) * seed
    total = spread.sum(axis=1, keepdims=True)
    return np.where(total > 0, spread / np.maximum(total, 1e-30), 1.0 / num_classes).astype(
        np.float32
    )


# --------------------------------------------------------------------------------------------
# selection


def cv_repeats(setting, labelled: int) -> int:
    """The cross-validation's repeats for `train.probe_repeats` (`"auto"` or an int >= 1)
    and `labelled` scored rows."""
    if setting == "auto":
        wanted = math.ceil(AUTO_SCORED_ROWS / max(int(labelled), 1))
        return int(min(AUTO_MAX_REPEATS, max(1, wanted)))
    return int(setting)


def stratified_folds(labels, folds, seed):
    """Fold index `[N]` in `[0, folds)` for labelled rows, each class dealt round-robin in a
    seeded order (so every fold gets its share of every class); -1 for unlabelled rows."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 23])
    assignment = np.full(labels.shape[0], -1, np.int64)
    offset = 0
    for label in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = (offset + np.arange(members.size)) % folds
        offset += members.size
    return assignment


def select_classifier(
    features,
    labels,
    num_classes,
    *,
    candidates: Sequence[str] = ("ridge", "logistic", "knn"),
    folds: int = 5,
    seed: int = 0,
    knn_temperature: float = 0.1,
    graph_k: int = 10,
    neighbour_dim: int = 128,
    cv_max_rows: int = CV_MAX_ROWS,
    knn_max_reference: int = 20_000,
    repeats: int | str = 1,
    pool_tolerance: float = 0.0,
) -> FittedClassifier:
    """Chooses and fits a classifier on frozen features by stratified k-fold cross-validation.

    Only `features` / `labels` are read: the training pool, `-1` marking rows without a label
    (used by the standardisation and by label spreading's graph, never scored). Every
    candidate's settings are scored by the mean accuracy over the folds of the labelled rows;
    the best (candidate, setting) is refitted on every labelled row. Ties go to the earlier
    candidate in `candidates` and to the stronger regularisation.

    Args:
        features: float `[N, D]` of the training pool.
        labels: int `[N]`, -1 for unlabelled rows.
        num_classes: C.
        candidates: a subset of `CANDIDATES`.
        folds: cross-validation folds, >= 2 (fewer when a class has fewer labelled rows;
            leave-one-out never).
        seed: seeds the folds.
        knn_temperature: vote temperature of kNN and of label spreading's predictions.
        graph_k: neighbours of label spreading's graph.
        neighbour_dim: kNN and label spreading work on this many principal components of the
            standardised features (as accurate as all 1,600 for small_cnn's flatten, 12x
            cheaper, and a 12x smaller index in the exported head).
        cv_max_rows: with more labelled rows than this, the cross-validation (of every
            candidate, on the same folds) runs on a stratified subset of this many; the final
            fit uses every labelled row.
        knn_max_reference: kNN is skipped with more labelled rows than this (its
            cross-validation costs minutes and a linear head wins there); a label-spreading
            head keeps at most this many pool rows. Label spreading is skipped when every row
            is labelled.
        repeats: the k-fold split is drawn this many times (the first with `seed`) and every
            setting is scored by its accuracy over all of them: with few labelled rows one
            split's folds decide between candidates by a few images. `"auto"`: `cv_repeats`
            of the rows the cross-validation scores.
        pool_tolerance: a head that reads the unlabelled pool (`POOL_PREFERENCE`, in that
            order) is chosen over the best cross-validated head when its CV accuracy is
            within this many standard errors of the best one's; the standard error is the
            binomial one of the best accuracy over the scored rows, sqrt(p (1 - p) / n).
            0: the best CV accuracy always wins (ties as above).

    Returns:
        `FittedClassifier` with `selection` = `{"chosen", "cv_accuracy", "candidates": {name:
        {"cv_accuracy", "setting", "grid": {setting: accuracy}}}, "skipped": {name: reason},
        "best", "standard_error", "pool_tolerance", "folds", "repeats", "labelled",
        "cross_validated", "pool", "feature_dim", "seconds",
        "cv_seconds", "cv_timings"}` (`cv_seconds`: the standardisation and the
        cross-validation, of `seconds` in all; the rest is the final fit. `cv_timings`: its
        seconds by part: "standardize", "pca", "graph" and each scored candidate).
    """
    with blas_threads(1):
        return _select(
            features,
            labels,
            num_classes,
            candidates=tuple(candidates),
            folds=folds,
            seed=seed,
            knn_temperature=knn_temperature,
            graph_k=graph_k,
            neighbour_dim=neighbour_dim,
            cv_max_rows=cv_max_rows,
            knn_max_reference=knn_max_reference,
            repeats=repeats,
            pool_tolerance=pool_tolerance,
        )


def _select(
    features,
    labels,
    num_classes,
    *,
    candidates,
    folds,
    seed,
    knn_temperature,
    graph_k,
    neighbour_dim,
    cv_max_rows,
    knn_max_reference,
    repeats,
    pool_tolerance,
):
    started = time.perf_counter()
    for name in candidates:
        validation.check_choice("candidate", name, CANDIDATES)
    validation.check_int("folds", folds, minimum=2)
    if repeats != "auto":
        validation.check_int("repeats", repeats, minimum=1)
    validation.check_non_negative("pool_tolerance", pool_tolerance)
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            "features must be [N, D] with one label per row. Received: "
            f"features.shape={features.shape}, labels.shape={labels.shape}"
        )
    labelled = np.flatnonzero(labels >= 0)
    if labelled.size < 2:
        raise ValueError(f"at least 2 labelled rows are needed. Received: {labelled.size}")
    mean, scale = feature_stats(features)
    z = standardize(features, mean, scale)
    del features
    counts = np.bincount(labels[labelled], minlength=num_classes)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    scored_rows = labelled
    if labelled.size > cv_max_rows:  # a stratified subset, the same for every candidate
        part = stratified_folds(labels, math.ceil(labelled.size / cv_max_rows), seed + 1) == 0
        scored_rows = np.flatnonzero(part)
    scored_labels = np.where(np.isin(np.arange(labels.size), scored_rows), labels, -1)
    repeats = cv_repeats(repeats, scored_rows.size)
    # repeat 0 is the plain k-fold split; each other repeat draws the folds again
    splits = [
        stratified_folds(scored_labels, folds, seed + REPEAT_SEED_STEP * repeat)
        for repeat in range(repeats)
    ]
    results, skipped = {}, {}
    projection = reduced = graph = pool_stats = None
    # Where the cross-validation's time goes, for the estimate (which prices each part by
    # the rows it grows with): the principal basis, the pool's neighbour graph, each candidate.
    timings = {"standardize": time.perf_counter() - started, "pca": 0.0, "graph": 0.0}
    for name in candidates:
        reason = _skip_reason(name, labelled.size, labels.size, knn_max_reference)
        if reason:
            skipped[name] = reason
            log.info("probe %s: skipped (%s)", name, reason)
            continue
        if name in ("knn", "label_spreading", "spread_ridge") and reduced is None:
            clock = time.perf_counter()
            projection = principal_basis(z, neighbour_dim)
            reduced = z @ projection
            timings["pca"] = time.perf_counter() - clock
        if name in ("label_spreading", "spread_ridge") and graph is None:
            clock = time.perf_counter()
            graph = knn_graph(reduced, graph_k)
            timings["graph"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if name == "ridge":
            results[name] = _cv_ridge(z, labels, splits, folds, num_classes)
        elif name == "logistic":
            results[name] = _cv_logistic(z, labels, splits, folds, num_classes)
        elif name == "knn":
            results[name] = _cv_knn(reduced, labels, splits, folds, num_classes, knn_temperature)
        elif name == "label_spreading":
            results[name] = _cv_spreading(
                graph, reduced, labels, splits, folds, num_classes, knn_temperature
            )
        else:
            pool_stats = gram_stats(z)
            results[name] = _cv_spread_ridge(
                graph, z, labels, splits, folds, num_classes, pool_stats
            )
        timings[name] = time.perf_counter() - clock
        log.info(
            "probe %s: cv accuracy %.4f at %s",
            name,
            results[name]["cv_accuracy"],
            results[name]["setting"],
        )
    cv_seconds = time.perf_counter() - started
    if not results:
        raise ValueError(f"every candidate was skipped: {skipped}. Received: {candidates=}")
    scored = [name for name in candidates if name in results]
    best = max(scored, key=lambda name: (results[name]["cv_accuracy"], -scored.index(name)))
    chosen, standard_error = _prefer_pool(results, best, scored_rows.size, pool_tolerance)
    setting = results[chosen]["setting"]
    x, y = z[labelled], labels[labelled]
    common = {"mean": mean, "scale": scale}
    if chosen == "ridge":
        weights, bias = ridge_fit(x, y, num_classes, setting["strength"])
        fitted = FittedClassifier(
            "ridge", weights=weights, bias=bias, score_scale=setting["score_scale"], **common
        )
    elif chosen == "spread_ridge":
        spread = label_spreading(graph, labels, num_classes, alpha=setting["alpha"])
        solver = _RidgeSolver(z, _spread_targets(spread, labels), stats=pool_stats)
        weights, bias = solver.solution(setting["strength"])
        fitted = FittedClassifier(
            "spread_ridge", weights=weights, bias=bias, score_scale=setting["score_scale"], **common
        )
    elif chosen == "logistic":
        # The cross-validation's tolerance: on the 54,000 Fashion-MNIST training images
        # (small_cnn flatten features, lambda 0.01) 1e-4 took 235 iterations and 36 s for a
        # validation accuracy of 88.68 %, 1e-3 took 54 iterations and 8.6 s for 88.80 %.
        weights, bias, info = logistic_fit(
            x, y, num_classes, setting["lambda"], tol=FINAL_LOGISTIC_TOL, max_iter=300
        )
        results[chosen]["final_fit"] = info
        fitted = FittedClassifier("logistic", weights=weights, bias=bias, **common)
    else:
        if chosen == "knn":
            reference, targets = reduced[labelled], _one_hot(y, num_classes).astype(np.float32)
        else:
            spread = label_spreading(graph, labels, num_classes, alpha=setting["alpha"])
            reference, targets = _cap_reference(reduced, spread, knn_max_reference, seed)
        fitted = FittedClassifier(
            chosen,
            projection=projection,
            reference=reference,
            reference_targets=targets,
            k=setting["k"],
            temperature=knn_temperature,
            **common,
        )
    selection = {
        "chosen": chosen,
        "setting": setting,
        "cv_accuracy": results[chosen]["cv_accuracy"],
        "candidates": results,
        "skipped": skipped,
        "best": best,
        "standard_error": standard_error,
        "pool_tolerance": float(pool_tolerance),
        "folds": folds,
        "repeats": repeats,
        "labelled": int(labelled.size),
        "cross_validated": int(scored_rows.size),
        "pool": int(labels.size),
        "feature_dim": int(z.shape[1]),
        "seconds": time.perf_counter() - started,  # unrounded: the estimate splits it
        "cv_seconds": cv_seconds,  # standardisation and cross-validation
        "cv_timings": timings,  # cv_seconds by part (`_select`'s loop)
    }
    return dataclasses.replace(fitted, selection=_plain(selection))


def _prefer_pool(results, best, scored_rows, tolerance):
    """`(chosen, standard_error)`: with `tolerance` > 0, the first head of `POOL_PREFERENCE`
    that was scored and whose CV accuracy is within `tolerance` standard errors of `best`'s;
    else `best`."""
    accuracy = results[best]["cv_accuracy"]
    standard_error = math.sqrt(accuracy * (1.0 - accuracy) / scored_rows)
    if tolerance > 0:
        floor = accuracy - tolerance * standard_error
        for name in POOL_PREFERENCE:
            if name in results and results[name]["cv_accuracy"] >= floor:
                return name, standard_error
    return best, standard_error


def _skip_reason(name, labelled, pool, knn_max_reference):
    """Why a candidate is not scored, or "" (kNN's cost and index grow with the labelled
    rows; label spreading needs unlabelled rows to spread to)."""
    if name == "knn" and labelled > knn_max_reference:
        return f"{labelled} labelled rows > knn_max_reference={knn_max_reference}"
    if name in ("label_spreading", "spread_ridge") and labelled == pool:
        return "every row is labelled: nothing to spread to"
    return ""


def _held_out(splits, folds):
    """`(train, held)` row masks of every fold of every repeat of the cross-validation
    (`splits`: one fold assignment per repeat, -1 for rows never scored)."""
    for fold_of in splits:
        for fold in range(folds):
            yield (fold_of != fold) & (fold_of >= 0), fold_of == fold


def _scored(splits):
    """Held-out predictions a candidate's accuracy is counted over: every scored row, once a
    repeat."""
    return sum(int((fold_of >= 0).sum()) for fold_of in splits)


def _cv_ridge(z, labels, splits, folds, num_classes):
    correct = np.zeros(len(RIDGE_STRENGTHS))
    scores_by_strength = [[] for _ in RIDGE_STRENGTHS]
    truth = []
    for train, held in _held_out(splits, folds):
        solver = _RidgeSolver(z[train], _one_hot(labels[train], num_classes))
        predictions = solver.predictions(z[held], RIDGE_STRENGTHS)
        correct += (predictions.argmax(axis=2) == labels[held]).sum(axis=1)
        for index in range(len(RIDGE_STRENGTHS)):
            scores_by_strength[index].append(predictions[index])
        truth.append(labels[held])
    accuracy = correct / _scored(splits)
    # strengths ascend: on a tie prefer the stronger (the later)
    best = _best_index(accuracy, prefer_last=True)
    score_scale = _calibrate(np.concatenate(scores_by_strength[best]), np.concatenate(truth))
    return {
        "cv_accuracy": float(accuracy[best]),
        "setting": {"strength": RIDGE_STRENGTHS[best], "score_scale": score_scale},
        "grid": {f"{a:g}": float(v) for a, v in zip(RIDGE_STRENGTHS, accuracy, strict=True)},
    }


def _cv_logistic(z, labels, splits, folds, num_classes):
    correct = np.zeros(len(LOGISTIC_LAMBDAS))
    for train, held in _held_out(splits, folds):
        init = None
        for index, strength in enumerate(LOGISTIC_LAMBDAS):  # strong to weak, warm-started
            weights, bias, _ = logistic_fit(
                z[train], labels[train], num_classes, strength, init=init, tol=1e-3, max_iter=200
            )
            init = (weights, bias)
            correct[index] += ((z[held] @ weights + bias).argmax(axis=1) == labels[held]).sum()
    accuracy = correct / _scored(splits)
    best = _best_index(accuracy, prefer_last=False)  # strengths descend: the first is strongest
    return {
        "cv_accuracy": float(accuracy[best]),
        "setting": {"lambda": LOGISTIC_LAMBDAS[best]},
        "grid": {f"{s:g}": float(v) for s, v in zip(LOGISTIC_LAMBDAS, accuracy, strict=True)},
    }


def _cv_knn(z, labels, splits, folds, num_classes, temperature):
    correct = np.zeros(len(KNN_KS))
    for train, held in _held_out(splits, folds):
        targets = _one_hot(labels[train], num_classes).astype(np.float32)
        order, sims = _neighbours(z[held], z[train], max(KNN_KS))
        weights = np.exp((sims - sims[:, :1]) / temperature)
        votes = np.cumsum(weights[:, :, None] * targets[order], axis=1)
        for index, k in enumerate(KNN_KS):
            kk = min(k, order.shape[1])
            correct[index] += (votes[:, kk - 1].argmax(axis=1) == labels[held]).sum()
    accuracy = correct / _scored(splits)
    best = _best_index(accuracy, prefer_last=True)  # ties: more neighbours
    return {
        "cv_accuracy": float(accuracy[best]),
        "setting": {"k": KNN_KS[best]},
        "grid": {str(k): float(v) for k, v in zip(KNN_KS, accuracy, strict=True)},
    }


def _neighbours(query, reference, k, batch_size=1024):
    """The `k` most cosine-similar reference rows of each query row, most similar first:
    `(indices [M, k], similarities [M, k])`."""
    query, reference = normalize_rows(query), normalize_rows(reference)
    k = min(k, reference.shape[0])
    indices = np.empty((query.shape[0], k), np.int64)
    sims = np.empty((query.shape[0], k), np.float32)
    for start in range(0, query.shape[0], batch_size):
        similarity = query[start : start + batch_size] @ reference.T
        top = _top_k(similarity, k)
        indices[start : start + batch_size] = top
        sims[start : start + batch_size] = np.take_along_axis(similarity, top, axis=1)
    return indices, sims


def _cv_spreading(graph, z, labels, splits, folds, num_classes, temperature):
    """Label spreading scored on held-out labelled rows: their labels hidden, spread from
    the others; the held-out rows are classified as new images would be (a kNN vote of
    their neighbours' spread labels, themselves excluded)."""
    ks = (10, 50)
    settings = [(alpha, k) for alpha in SPREADING_ALPHAS for k in ks]
    correct = np.zeros(len(settings))
    for _, held in _held_out(splits, folds):
        hidden = np.where(held, -1, labels)
        others = np.flatnonzero(~held)
        order, sims = _neighbours(z[held], z[others], max(ks))
        weights = np.exp((sims - sims[:, :1]) / temperature)
        for alpha in SPREADING_ALPHAS:
            spread = label_spreading(graph, hidden, num_classes, alpha=alpha)[others]
            votes = np.cumsum(weights[:, :, None] * spread[order], axis=1)
            for k in ks:
                predicted = votes[:, min(k, order.shape[1]) - 1].argmax(axis=1)
                correct[settings.index((alpha, k))] += (predicted == labels[held]).sum()
    accuracy = correct / _scored(splits)
    best = _best_index(accuracy, prefer_last=False)
    alpha, k = settings[best]
    return {
        "cv_accuracy": float(accuracy[best]),
        "setting": {"alpha": alpha, "k": k},
        "grid": {f"{a:g}/{k}": float(v) for (a, k), v in zip(settings, accuracy, strict=True)},
    }


def _cv_spread_ridge(graph, z, labels, splits, folds, num_classes, pool_stats):
    """`spread_ridge` scored on held-out labelled rows: their labels hidden, the others
    spread over the pool, ridge fitted on every other pool row, the held-out rows scored.
    One eigendecomposition per fold (the pool's Gram statistics minus the held-out rows')
    serves every spreading and ridge strength."""
    products, total, count = pool_stats
    settings = [(alpha, strength) for alpha in SPREADING_ALPHAS for strength in RIDGE_STRENGTHS]
    correct = np.zeros(len(settings))
    scores = {setting: [] for setting in settings}
    truth = []
    for _, held in _held_out(splits, folds):
        held_products, held_total, held_count = gram_stats(z[held])
        others = ~held
        solver = _RidgeSolver(
            z[others],
            stats=(products - held_products, total - held_total, count - held_count),
        )
        hidden = np.where(held, -1, labels)
        for alpha in SPREADING_ALPHAS:
            spread = label_spreading(graph, hidden, num_classes, alpha=alpha)
            solver.fit(_spread_targets(spread[others], hidden[others]))
            predictions = solver.predictions(z[held], RIDGE_STRENGTHS)
            for index, strength in enumerate(RIDGE_STRENGTHS):
                setting = (alpha, strength)
                correct[settings.index(setting)] += (
                    predictions[index].argmax(axis=1) == labels[held]
                ).sum()
                scores[setting].append(predictions[index])
        truth.append(labels[held])
    accuracy = correct / _scored(splits)
    best = _best_index(accuracy, prefer_last=True)  # ties: the stronger ridge
    alpha, strength = settings[best]
    score_scale = _calibrate(np.concatenate(scores[settings[best]]), np.concatenate(truth))
    return {
        "cv_accuracy": float(accuracy[best]),
        "setting": {"alpha": alpha, "strength": strength, "score_scale": score_scale},
        "grid": {f"{a:g}/{s:g}": float(v) for (a, s), v in zip(settings, accuracy, strict=True)},
    }


def _spread_targets(spread, labels):
    """One-hot targets: the true label where known, else the spread labels' argmax."""
    num_classes = spread.shape[1]
    return _one_hot(np.where(labels >= 0, labels, spread.argmax(axis=1)), num_classes)


def _best_index(accuracy, *, prefer_last):
    accuracy = np.round(np.asarray(accuracy), 10)
    if prefer_last:
        return int(len(accuracy) - 1 - np.argmax(accuracy[::-1]))
    return int(np.argmax(accuracy))


def _calibrate(scores, truth):
    """The multiplier of held-out ridge scores whose softmax has the least cross-entropy (an
    inverse temperature; a coarse grid of powers of 2, enough for readable probabilities)."""
    best, best_loss = 1.0, np.inf
    for multiplier in 2.0 ** np.arange(-2, 12):
        logits = scores * multiplier
        logits = logits - logits.max(axis=1, keepdims=True)
        log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -log_prob[np.arange(truth.size), truth].mean()
        if loss < best_loss:
            best, best_loss = float(multiplier), loss
    return best


def _cap_reference(reference, targets, cap, seed):
    if reference.shape[0] <= cap:
        return reference, targets
    keep = np.sort(np.random.default_rng([seed, 29]).choice(reference.shape[0], cap, replace=False))
    return reference[keep], targets[keep]


def _one_hot(labels, num_classes):
    labels = np.asarray(labels).astype(np.int64)
    out = np.zeros((labels.shape[0], num_classes), np.float64)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
