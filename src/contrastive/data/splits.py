"""Seeded, stratified assignment of source examples to the output splits (pure NumPy)."""

from __future__ import annotations

import numpy as np

# Output splits, in manifest order. `unlabeled` examples carry label -1.
SPLITS = ("train", "validation", "test", "unlabeled")

# Independent random streams per decision, so that e.g. changing `labeled_fraction` does not
# change which examples land in `validation`.
_STREAM_LIMIT, _STREAM_VALIDATION, _STREAM_LABELED, _STREAM_ORDER, _STREAM_TEST = range(5)
_STREAM_SUBSET = 5


def stratified_split(
    labels: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    *,
    keep_in_kept: bool = False,
    keep_in_taken: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions `0..N-1` into `(kept, taken)` with `taken` ≈ `fraction` of every class.

    `taken` holds `round(fraction * N)` positions; each class gets its proportional share,
    the rounding remainders going to the classes with the largest fractional parts.

    Args:
        labels: int `[N]`.
        fraction: in `[0, 1]`.
        rng: the random stream choosing which examples of a class are taken.
        keep_in_kept: a hold-out: never take a class's last position (a class of two or more
            keeps one in `kept`, a class of one stays whole); the share it cannot take goes
            to the classes with room, so `taken` may hold fewer only when no class has room.
        keep_in_taken: a labelled subset: every class gets at least one position in `taken`,
            even when its share rounds to none (`taken` then holds more).

    Returns:
        Two sorted int64 arrays of positions into `labels`, disjoint, together `0..N-1`.
    """
    labels = np.asarray(labels)
    if not len(labels):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    total = int(round(fraction * len(labels)))
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quotas = counts * fraction
    floors = np.floor(quotas).astype(np.int64)
    highest = np.maximum(counts - 1, 0) if keep_in_kept else counts
    lowest = np.minimum(1, highest) if keep_in_taken else np.zeros_like(counts)
    shares = np.clip(floors, lowest, highest)
    remainder = total - int(shares.sum())
    by_fraction = np.argsort(-(quotas - floors), kind="stable")
    while remainder > 0:  # one more for each class in turn, while any has room
        room = [index for index in by_fraction if shares[index] < highest[index]]
        for index in room[:remainder]:
            shares[index] += 1
        remainder -= len(room[:remainder])
        if not room:
            break
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    kept, taken = [], []
    for share, positions in zip(shares, members, strict=True):
        positions = rng.permutation(positions)
        taken.append(positions[:share])
        kept.append(positions[share:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(taken))


def labeled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The positions whose label a training step keeps when it sees only `fraction` of the
    labels: stratified, seeded, and nested (for one `labels` and `seed`, the subset of a
    smaller fraction lies inside the subset of every larger one).

    Every example gets a rank: within its class a `seed`-drawn order, and an example at
    place `r` of a class of `n` is "due" at `(r + 0.5) / n`, except each class's first, due
    at 0; all examples are sorted by when they are due (seeded ties). The subset of
    `fraction` is the first `round(fraction * N)` of that ranking, so once it holds as many
    examples as there are classes it holds every class, a class of `n` gets
    `round(fraction * n)` examples give or take one (exactly that when the classes share
    their size), and a larger fraction only extends the prefix. Negative labels (unlabelled
    images) are never chosen.

    Args:
        labels: int `[N]`, -1 for images without a label.
        fraction: in `(0, 1]`; 1 keeps every labelled position.
        seed: seeds the order within each class and the ties.

    Returns:
        Sorted int64 positions into `labels`.
    """
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]. Received: fraction={fraction!r}")
    labelled = np.flatnonzero(labels >= 0)
    rank = labelled_ranking(labels[labelled], seed)
    return np.sort(labelled[rank[: int(round(fraction * len(labelled)))]])


def subset_epoch_examples(count: int, batch_size: int, min_steps: int) -> int:
    """Examples in one epoch over a labelled subset of `count`: one pass, or the subset
    repeated up to `min_steps` batches of `batch_size` when one pass is shorter
    (`train.labeled_steps_per_epoch`; 0 = one pass)."""
    return max(count, min_steps * batch_size)


def labelled_ranking(labels: np.ndarray, seed: int) -> np.ndarray:
    """The order `labeled_subset` takes labelled examples in: positions into `labels` (all
    >= 0), any prefix of which is stratified (see `labeled_subset`)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, _STREAM_SUBSET])
    due = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        due[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
        # Its first example leads: a small class is never left out of a subset that could
        # hold every class (the others' first examples are due early anyway).
        due[members[due[members].argmin()]] = 0.0
    ties = rng.permutation(len(labels))
    return np.lexsort((ties, due))


def hold_out_validation(
    labels: np.ndarray, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline's stratified validation cut of a train split: `(kept, held_out)` positions
    (the cut `plan_splits` makes when no `limit` applies; the benchmarks reuse it)."""
    rng = np.random.default_rng([seed, _STREAM_VALIDATION])
    return stratified_split(labels, validation_fraction, rng, keep_in_kept=True)


def plan_splits(
    source_labels: dict[str, np.ndarray],
    *,
    validation_fraction: float,
    labeled_fraction: float | None,
    limit: int | None,
    seed: int,
    test_fraction: float = 0.0,
) -> dict[str, list[tuple[str, int, int]]]:
    """Decide which source example goes to which output split, and in which order.

    Source splits are `train`, `test` and optionally `unlabeled` (labels -1) and `validation`.
    Each is first cut to `limit` examples (stratified sample). `validation` is the source's
    own validation split when it has one (an import file's ML_USE; `validation_fraction` is
    then not used), else a stratified `validation_fraction` of the source train split; with
    `labeled_fraction`, only that stratified fraction of the remaining train examples keeps
    its label and the rest joins `unlabeled` with label -1.
    The hold-outs (`test`, `validation`) never take a class's last train example, and the
    labelled share keeps at least one example of every class.
    `train` and `unlabeled` are written in a seeded random order (so that a reader's shuffle
    buffer mixes classes); `validation` and `test` keep source order. A source without a
    `test` split (an image folder of `<root>/<class>/` only) gets a stratified `test_fraction`
    of its train split as `test`, cut before `validation` (0: no test split).

    Returns:
        Output split -> `[(source_split, source_position, stored_label), ...]` in write order;
        empty splits are left out.
    """
    chosen = {}
    for number, (name, labels) in enumerate(sorted(source_labels.items())):
        positions = np.arange(len(labels))
        if limit is not None and limit < len(labels):
            rng = np.random.default_rng([seed, _STREAM_LIMIT, number])
            _, positions = stratified_split(labels, limit / len(labels), rng)
        chosen[name] = positions

    plan: dict[str, list[tuple[str, int, int]]] = {name: [] for name in SPLITS}
    if "train" in chosen:
        labels = source_labels["train"]
        train = chosen["train"]
        if "test" not in chosen and test_fraction > 0:
            rng = np.random.default_rng([seed, _STREAM_TEST])
            kept, tested = stratified_split(labels[train], test_fraction, rng, keep_in_kept=True)
            plan["test"] = [("train", int(p), int(labels[p])) for p in train[tested]]
            train = train[kept]
        if "validation" not in chosen:
            kept, held_out = hold_out_validation(labels[train], validation_fraction, seed)
            plan["validation"] = [("train", int(p), int(labels[p])) for p in train[held_out]]
            train = train[kept]
        if labeled_fraction is not None and labeled_fraction < 1:
            unlabel, label = stratified_split(
                labels[train],
                labeled_fraction,
                np.random.default_rng([seed, _STREAM_LABELED]),
                keep_in_taken=True,
            )
            plan["unlabeled"] = [("train", int(p), -1) for p in train[unlabel]]
            train = train[label]
        plan["train"] = [("train", int(p), int(labels[p])) for p in train]
    for name in ("validation", "test"):
        if name in chosen:
            labels = source_labels[name]
            plan[name] = [(name, int(p), int(labels[p])) for p in chosen[name]]
    if "unlabeled" in chosen:
        plan["unlabeled"] += [("unlabeled", int(p), -1) for p in chosen["unlabeled"]]

    for number, name in enumerate(("train", "unlabeled")):
        order = np.random.default_rng([seed, _STREAM_ORDER, number]).permutation(len(plan[name]))
        plan[name] = [plan[name][i] for i in order]
    return {name: items for name, items in plan.items() if items}
