"""What an encoder's space says about single images: the training images nearest to a test
mistake (an explanation a person can check), how often a test image's nearest training image
has its label, and training images whose neighbourhood carries another label (suspect labels).

Pure NumPy over features that a step computed batch by batch
(`contrastive.tasks.inspecting`); the neighbour search is the kNN's
(`contrastive.training.knn.nearest_neighbours`, cosine similarity, blocks of queries), in a
`NeighbourSpace` (the features' leading singular directions, an approximation of the raw
features' cosine similarities at a fraction of the cost).
Every accumulator here holds a bounded number of rows, whatever the split's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contrastive import validation
from contrastive.training.knn import nearest_neighbours
from contrastive.training.probe import gram_stats


@dataclass(frozen=True)
class NeighbourSpace:
    """Where neighbours are searched: the features projected onto the `dim` directions that
    keep their dot products best (the leading right singular vectors of the reference, not
    centred), or the features themselves.

    Cosine similarities there approximate those of the raw features at a fraction of the
    cost: the explain step's all-pairs search over 42k references of `small_cnn`'s 1,600-d
    flatten took 206 CPU s over the raw features and 81 over 256 directions, with the test
    images' nearest-neighbour label agreement 85.2 against 84.9 % and 82 % of the suspect
    labels the same (docs/BENCHMARKS.md 8).
    """

    basis: np.ndarray | None  # float32 [D, dim] with orthonormal columns; None: identity

    @classmethod
    def fit(cls, reference, dim: int = 256) -> NeighbourSpace:
        """The space of `reference` `[N, D]`: `dim` directions, or the raw features when
        `dim` is 0 or at least D."""
        validation.check_int("dim", dim, minimum=0)
        reference = np.asarray(reference, dtype=np.float32)
        if dim == 0 or dim >= reference.shape[1]:
            return cls(None)
        second_moment, _, _ = gram_stats(reference)  # not centred
        _, vectors = np.linalg.eigh(second_moment)  # ascending eigenvalues
        return cls(np.ascontiguousarray(vectors[:, ::-1][:, :dim]).astype(np.float32))

    def dim(self, features_dim: int) -> int:
        return features_dim if self.basis is None else int(self.basis.shape[1])

    def __call__(self, features) -> np.ndarray:
        """`features` `[M, D]` in this space: float32 `[M, dim]`."""
        features = np.asarray(features, dtype=np.float32)
        return features if self.basis is None else features @ self.basis


def suspect_labels(
    features, labels, *, k: int = 10, min_share: float = 0.8, batch_size: int = 256
) -> dict:
    """Labelled examples whose `k` nearest other examples overwhelmingly carry one other label.

    For each example with a label (>= 0), its `k` most cosine-similar other labelled examples
    vote; it is a suspect when one label other than its own holds at least `min_share` of the
    votes. That label is `suggested`. A flipped label in a tight cluster of the right class
    is found; an ambiguous image between classes is not (its neighbours disagree).

    Args:
        features: `[N, D]` encoder features.
        labels: int `[N]`; entries < 0 (unlabelled) are neither checked nor voters.
        k: neighbours, >= 1 (capped at the labelled count - 1).
        min_share: in (0, 1]; 0.8 with k = 10: at least 8 neighbours agree on another label.
        batch_size: queries per similarity block.

    Returns:
        `{"index", "label", "suggested", "share", "similarity"}`: arrays over the suspects
        (`index` into `features`; `similarity` the mean cosine similarity of the neighbours
        with the suggested label), most certain first (share, then similarity, descending;
        then index), and `"checked"`, the number of labelled examples checked.
    """
    validation.check_int("k", k)
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1]. Received: min_share={min_share!r}")
    features = np.asarray(features)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(features) != len(labels):
        raise ValueError(
            f"features and labels differ in length. Received: {len(features)} features, "
            f"{len(labels)} labels"
        )
    labelled = np.flatnonzero(labels >= 0)
    found = {name: [] for name in ("index", "label", "suggested", "share", "similarity")}
    if len(labelled) >= 2:
        own = labels[labelled]
        num_classes = int(own.max()) + 1
        blocks = nearest_neighbours(
            features[labelled], features[labelled], k, batch_size=batch_size, exclude_self=True
        )
        for start, neighbours, similarity in blocks:
            rows = np.arange(len(neighbours))
            votes = np.zeros((len(neighbours), num_classes))
            voter_labels = own[neighbours]
            np.add.at(votes, (np.broadcast_to(rows[:, None], neighbours.shape), voter_labels), 1)
            mine = own[start : start + len(neighbours)]
            votes[rows, mine] = -1  # only another label can be suggested
            suggested = votes.argmax(axis=1)
            share = votes[rows, suggested] / neighbours.shape[1]
            hit = np.flatnonzero(share >= min_share - 1e-9)
            agreeing = voter_labels[hit] == suggested[hit, None]
            mean = (similarity[hit] * agreeing).sum(axis=1) / np.maximum(agreeing.sum(axis=1), 1)
            found["index"].append(labelled[start + hit])
            found["label"].append(mine[hit])
            found["suggested"].append(suggested[hit])
            found["share"].append(share[hit])
            found["similarity"].append(mean)
    result = {
        name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in found.items()
    }
    for name in ("index", "label", "suggested"):
        result[name] = result[name].astype(np.int64)
    order = np.lexsort((result["index"], -result["similarity"], -result["share"]))
    result = {name: values[order] for name, values in result.items()}
    result["checked"] = int(len(labelled))
    return result


class NeighbourAgreement:
    """Per class, the share of query images whose nearest reference image has their label,
    accumulated batch by batch."""

    def __init__(self, num_classes: int):
        self.num_classes = validation.check_int("num_classes", num_classes)
        self.hits = np.zeros(num_classes, np.int64)
        self.totals = np.zeros(num_classes, np.int64)

    def add(self, nearest_labels, labels) -> None:
        """`nearest_labels`: the label of each query's nearest reference; `labels`: the
        queries' own (entries < 0 are left out)."""
        nearest_labels = np.asarray(nearest_labels, np.int64)
        labels = np.asarray(labels, np.int64)
        keep = labels >= 0
        nearest_labels, labels = nearest_labels[keep], labels[keep]
        self.totals += np.bincount(labels, minlength=self.num_classes)[: self.num_classes]
        agree = labels[nearest_labels == labels]
        self.hits += np.bincount(agree, minlength=self.num_classes)[: self.num_classes]

    def result(self) -> dict:
        """`{"per_class": [share or None], "support": [count], "overall": share or None}`."""
        total = int(self.totals.sum())
        return {
            "per_class": [
                float(hit / count) if count else None
                for hit, count in zip(self.hits, self.totals, strict=True)
            ],
            "support": self.totals.tolist(),
            "overall": float(self.hits.sum() / total) if total else None,
        }


class ConfidentMistakes:
    """The `count` most confident mistakes of a stream of predictions, with whatever rows
    the caller keeps beside them (features, thumbnails): bounded by `count`.

    Order: confidence descending, then stream position ascending (deterministic).
    """

    def __init__(self, count: int):
        self.count = validation.check_int("count", count, minimum=0)
        self.rows: dict[str, np.ndarray] = {}

    def add(self, *, positions, labels, predicted, confidence, **extra) -> None:
        """One batch: `positions` (stream positions), true `labels`, `predicted` labels,
        `confidence` of the prediction, and `extra` aligned arrays (e.g. `features`)."""
        batch = {
            "position": np.asarray(positions, np.int64),
            "label": np.asarray(labels, np.int64),
            "predicted": np.asarray(predicted, np.int64),
            "confidence": np.asarray(confidence, np.float64),
            **{name: np.asarray(values) for name, values in extra.items()},
        }
        wrong = (batch["label"] >= 0) & (batch["predicted"] != batch["label"])
        batch = {name: values[wrong] for name, values in batch.items()}
        if self.rows:
            batch = {name: np.concatenate([self.rows[name], batch[name]]) for name in batch}
        order = np.lexsort((batch["position"], -batch["confidence"]))[: self.count]
        self.rows = {name: values[order] for name, values in batch.items()}

    def __len__(self) -> int:
        return len(self.rows.get("position", ()))


def explain_mistakes(reference_features, reference_labels, mistake_features, *, k: int = 5):
    """The `k` nearest reference (training) examples of each mistake.

    Returns:
        `(indices int64 [m, k], labels int64 [m, k], similarities float32 [m, k])`, most
        similar first.
    """
    reference_labels = np.asarray(reference_labels, np.int64)
    mistake_features = np.asarray(mistake_features)
    if len(mistake_features) == 0:
        empty = np.zeros((0, k), np.int64)
        return empty, empty, np.zeros((0, k), np.float32)
    blocks = list(nearest_neighbours(reference_features, mistake_features, k))
    indices = np.concatenate([block[1] for block in blocks])
    similarities = np.concatenate([block[2] for block in blocks])
    return indices, reference_labels[indices], similarities
