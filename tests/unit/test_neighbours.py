"""contrastive.neighbours and the kNN's neighbour search: against brute-force references."""

import numpy as np
import pytest

from contrastive import neighbours
from contrastive.training import nearest_neighbours

pytestmark = pytest.mark.backend  # the search lives in training.knn (imports Keras)


def _unit(features):
    return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_nearest_neighbours_match_a_full_sort(exclude_self, batch_size):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(23, 6)).astype(np.float32)
    query = reference if exclude_self else rng.normal(size=(11, 6)).astype(np.float32)
    similarity = _unit(query) @ _unit(reference).T
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :5]
    blocks = list(
        nearest_neighbours(reference, query, 5, batch_size=batch_size, exclude_self=exclude_self)
    )
    assert [start for start, _, _ in blocks] == list(range(0, len(query), batch_size))
    indices = np.concatenate([block[1] for block in blocks])
    top = np.concatenate([block[2] for block in blocks])
    assert np.array_equal(indices, expected)
    assert np.allclose(top, np.take_along_axis(similarity, expected, axis=1), atol=1e-6)


def test_nearest_neighbours_cap_k_and_refuse_bad_input():
    reference = np.eye(3, dtype=np.float32)
    (_, indices, _), *_ = nearest_neighbours(reference, reference, 10, exclude_self=True)
    assert indices.shape == (3, 2) and not np.any(indices == np.arange(3)[:, None])
    with pytest.raises(ValueError, match="exclude_self needs the queries to be the references"):
        next(nearest_neighbours(reference, reference[:2], 1, exclude_self=True))
    with pytest.raises(ValueError, match="at least two references"):
        next(nearest_neighbours(reference[:1], reference[:1], 1, exclude_self=True))


def test_neighbour_space_keeps_the_dot_products_of_the_best_rank_k_approximation():
    """The projection onto `dim` directions preserves the Gram matrix of the reference's best
    rank-`dim` approximation (NumPy's SVD: U_k S_k^2 U_k^T), whatever the directions' signs;
    with `dim` 0 or at least D the features are searched as they are."""
    rng = np.random.default_rng(3)
    reference = (rng.normal(size=(50, 12)) * np.linspace(3, 0.1, 12)).astype(np.float32)
    space = neighbours.NeighbourSpace.fit(reference, 4)
    projected = space(reference)
    assert projected.shape == (50, 4) and projected.dtype == np.float32
    u, s, _ = np.linalg.svd(reference.astype(np.float64), full_matrices=False)
    expected = (u[:, :4] * s[:4] ** 2) @ u[:, :4].T
    np.testing.assert_allclose(projected @ projected.T, expected, rtol=1e-4, atol=1e-3)
    query = rng.normal(size=(3, 12)).astype(np.float32)  # a new row: the same linear map
    np.testing.assert_allclose(space(query), query @ space.basis, rtol=1e-6)
    assert space.dim(12) == 4
    for dim in (0, 12, 40):
        identity = neighbours.NeighbourSpace.fit(reference, dim)
        assert identity.basis is None and identity.dim(12) == 12
        assert np.array_equal(identity(query), query)
    with pytest.raises(ValueError, match="Received: dim=-1"):
        neighbours.NeighbourSpace.fit(reference, -1)


def _clusters(rng, per_class=30, num_classes=4, dim=8, spread=0.1):
    centres = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return features.astype(np.float32), labels


def test_suspects_are_the_flipped_labels_most_certain_first():
    rng = np.random.default_rng(1)
    features, labels = _clusters(rng)
    noisy = labels.copy()
    flipped = rng.choice(len(labels), size=6, replace=False)
    noisy[flipped] = (labels[flipped] + 1 + rng.integers(0, 3, size=6)) % 4
    found = neighbours.suspect_labels(features, noisy, k=10, min_share=0.8)
    assert sorted(found["index"].tolist()) == sorted(flipped.tolist())
    assert np.array_equal(found["suggested"], labels[found["index"]])
    assert np.array_equal(found["label"], noisy[found["index"]])
    assert np.all(found["share"] >= 0.8) and found["checked"] == len(labels)
    # most certain first: share descending, then similarity descending
    order = np.lexsort((-found["similarity"], -found["share"]))
    assert np.array_equal(order, np.arange(len(order)))


def _brute_force_suspects(features, labels, k, min_share):
    labelled = np.flatnonzero(labels >= 0)
    unit = _unit(features[labelled])
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    rows = []
    for i, row in enumerate(similarity):
        near = np.argsort(-row, kind="stable")[:k]
        votes = np.bincount(labels[labelled][near], minlength=labels.max() + 1)
        votes[labels[labelled][i]] = -1
        best = votes.argmax()
        if votes[best] / k >= min_share:
            rows.append((labelled[i], best, votes[best] / k))
    return rows


@pytest.mark.parametrize("min_share", [0.5, 0.7, 1.0])
def test_suspects_match_a_brute_force_vote(min_share):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=60)
    labels[::7] = -1  # unlabelled: neither checked nor voting
    found = neighbours.suspect_labels(features, labels, k=6, min_share=min_share, batch_size=8)
    expected = _brute_force_suspects(features, labels, 6, min_share)
    got = sorted(
        zip(found["index"].tolist(), found["suggested"].tolist(), found["share"], strict=True)
    )
    assert [(i, s) for i, s, _ in got] == [(i, s) for i, s, _ in sorted(expected)]
    assert np.allclose([share for *_, share in got], [share for *_, share in sorted(expected)])
    assert found["checked"] == int(np.sum(labels >= 0))
    assert not np.isin(found["index"], np.flatnonzero(labels < 0)).any()


def test_no_suspect_among_unanimous_clusters_and_none_without_labels():
    rng = np.random.default_rng(3)
    features, labels = _clusters(rng)
    assert len(neighbours.suspect_labels(features, labels)["index"]) == 0
    none = neighbours.suspect_labels(features, -np.ones_like(labels))
    assert len(none["index"]) == 0 and none["checked"] == 0
    with pytest.raises(ValueError, match="min_share must be in"):
        neighbours.suspect_labels(features, labels, min_share=0)


def test_agreement_accumulates_per_class():
    agreement = neighbours.NeighbourAgreement(3)
    agreement.add([0, 1, 1], [0, 0, 1])
    agreement.add([2, 2, 0], [2, 1, -1])
    result = agreement.result()
    assert result["per_class"] == [0.5, 0.5, 1.0] and result["support"] == [2, 2, 1]
    assert result["overall"] == pytest.approx(3 / 5)
    assert neighbours.NeighbourAgreement(2).result()["per_class"] == [None, None]


def test_confident_mistakes_keep_the_top_of_the_whole_stream():
    rng = np.random.default_rng(4)
    labels, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    confidence = rng.random(200)
    confidence[[10, 150]] = 1.0  # a tie at the top (the others < 1): the earlier first
    labels[[10, 150]], predicted[[10, 150]] = 0, 1
    kept = neighbours.ConfidentMistakes(5)
    for start in range(0, 200, 32):
        rows = slice(start, start + 32)
        kept.add(
            positions=np.arange(200)[rows],
            labels=labels[rows],
            predicted=predicted[rows],
            confidence=confidence[rows],
            features=np.arange(200)[rows] * 10,
        )
    wrong = np.flatnonzero(labels != predicted)
    expected = wrong[np.lexsort((wrong, -confidence[wrong]))][:5]
    assert kept.rows["position"].tolist() == expected.tolist()
    assert kept.rows["position"][:2].tolist() == [10, 150]
    assert np.array_equal(kept.rows["features"], expected * 10) and len(kept) == 5


def test_explained_mistakes_get_their_nearest_training_images():
    reference = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], np.float32)
    indices, labels, similarity = neighbours.explain_mistakes(
        reference, [0, 1, 2, 3], np.array([[1, 0.1]], np.float32), k=2
    )
    assert indices.tolist() == [[0, 2]] and labels.tolist() == [[0, 2]]
    assert similarity[0, 0] > similarity[0, 1]
    empty = neighbours.explain_mistakes(reference, [0, 1, 2, 3], np.zeros((0, 2)), k=2)
    assert empty[0].shape == (0, 2)
