"""Tests for contrastive.data.splits (stratified, seeded split planning) and path checks."""

import numpy as np
import pytest

from contrastive.data.splits import labeled_subset, plan_splits, stratified_split
from contrastive.storage import escapes_root


def test_stratified_split_takes_the_fraction_of_every_class():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    kept, taken = stratified_split(labels, 0.1, np.random.default_rng(0))
    assert len(taken) == 10
    assert np.bincount(labels[taken]).tolist() == [5, 3, 2]
    assert sorted(np.concatenate([kept, taken]).tolist()) == list(range(100))


def test_stratified_split_rounds_to_the_requested_total():
    labels = np.repeat([0, 1, 2], [7, 7, 7])
    _, taken = stratified_split(labels, 0.5, np.random.default_rng(0))
    assert len(taken) == round(0.5 * 21)
    assert set(np.bincount(labels[taken]).tolist()) <= {3, 4}


def test_stratified_split_edges():
    _, taken = stratified_split(np.zeros(0, np.int64), 0.3, np.random.default_rng(0))
    assert len(taken) == 0
    kept, taken = stratified_split(np.array([4, 4, 9]), 0.0, np.random.default_rng(0))
    assert len(taken) == 0 and len(kept) == 3


def test_plan_is_reproducible_and_changes_with_the_seed():
    labels = {"train": np.repeat(np.arange(4), 25), "test": np.arange(10) % 4}
    options = dict(validation_fraction=0.2, labeled_fraction=None, limit=None)
    first = plan_splits(labels, seed=7, **options)
    assert first == plan_splits(labels, seed=7, **options)
    assert first["validation"] != plan_splits(labels, seed=8, **options)["validation"]


def test_plan_splits_are_disjoint_and_cover_the_source():
    labels = {
        "train": np.repeat(np.arange(3), 40),
        "test": np.arange(12) % 3,
        "unlabeled": np.full(9, -1),
    }
    plan = plan_splits(labels, validation_fraction=0.25, labeled_fraction=0.5, limit=None, seed=0)
    train_positions = [
        position
        for name in ("train", "validation", "unlabeled")
        for source, position, _ in plan[name]
        if source == "train"
    ]
    assert sorted(train_positions) == list(range(120))
    assert len(plan["validation"]) == 30
    assert len(plan["train"]) == 45  # half of the 90 left after validation keeps its label
    assert {label for _, _, label in plan["unlabeled"]} == {-1}
    assert len(plan["unlabeled"]) == 45 + 9
    assert np.bincount([label for _, _, label in plan["train"]]).tolist() == [15, 15, 15]


def test_plan_limit_is_a_stratified_sample_per_source_split():
    labels = {"train": np.repeat(np.arange(5), 100), "test": np.repeat(np.arange(5), 20)}
    plan = plan_splits(labels, validation_fraction=0.0, labeled_fraction=None, limit=50, seed=0)
    assert "validation" not in plan
    assert np.bincount([label for _, _, label in plan["train"]]).tolist() == [10] * 5
    assert len(plan["test"]) == 50


def test_validation_is_independent_of_labeled_fraction():
    labels = {"train": np.repeat(np.arange(3), 30)}
    options = dict(validation_fraction=0.2, limit=None, seed=3)
    assert (
        plan_splits(labels, labeled_fraction=None, **options)["validation"]
        == plan_splits(labels, labeled_fraction=0.3, **options)["validation"]
    )


@pytest.mark.parametrize(
    ("root", "path", "escapes"),
    [
        ("gs://bucket/root", "gs://bucket/root/cat/a.png", False),
        ("gs://bucket/root", "gs://bucket/root/../secret/a.png", True),
        ("gs://bucket/root", "gs://bucket/root/cat/../../a.png", True),
        ("gs://bucket/root", "gs://bucket/rootx/a.png", True),
        ("gs://bucket/root/", "gs://bucket/root/cat/./a.png", False),
    ],
)
def test_escapes_root_for_object_store_paths(root, path, escapes):
    assert escapes_root(root, path) is escapes


def test_labeled_subset_counts_per_class_exactly_and_nests():
    labels = np.repeat(np.arange(10), 5400)  # the 54k train split of Fashion-MNIST
    labels = np.random.default_rng(3).permutation(labels)
    subsets = {f: labeled_subset(labels, f, seed=0) for f in (0.01, 0.1, 1.0)}
    for fraction, expected in ((0.01, 54), (0.1, 540), (1.0, 5400)):
        counts = np.bincount(labels[subsets[fraction]], minlength=10)
        assert counts.tolist() == [expected] * 10, fraction
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[1.0])
    assert len(subsets[1.0]) == len(labels)


def test_labeled_subset_of_unequal_classes_is_within_one_and_skips_unlabelled():
    labels = np.array([0] * 7 + [1] * 13 + [2] * 30 + [-1] * 50)
    for fraction in (0.1, 0.25, 0.5):
        taken = labeled_subset(labels, fraction, seed=1)
        assert len(taken) == round(fraction * 50)
        assert (labels[taken] >= 0).all()
        counts = np.bincount(labels[taken], minlength=3)
        assert (np.abs(counts - fraction * np.array([7, 13, 30])) <= 1).all(), (fraction, counts)
    smaller, larger = labeled_subset(labels, 0.1, seed=1), labeled_subset(labels, 0.5, seed=1)
    assert np.isin(smaller, larger).all()


def test_labeled_subset_is_seeded():
    labels = np.repeat(np.arange(4), 25)
    assert (labeled_subset(labels, 0.2, 0) == labeled_subset(labels, 0.2, 0)).all()
    assert (labeled_subset(labels, 0.2, 0) != labeled_subset(labels, 0.2, 1)).any()
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]. Received: fraction=0"):
        labeled_subset(labels, 0, 0)


def test_labeled_subset_takes_the_rounded_count_in_position_order():
    labels = np.arange(10) % 2
    for seed in range(4):
        taken = labeled_subset(labels, 0.37, seed=seed)
        assert len(taken) == 4  # round(3.7), not 3
        assert (np.diff(taken) > 0).all()  # sorted positions, each once
    with pytest.raises(ValueError, match=r"Received: fraction=1.5"):
        labeled_subset(labels, 1.5, 0)


def test_labeled_subset_ranks_by_when_each_example_is_due():
    """Each class's first example is due at 0, place r > 0 of a class of n at (r + 0.5) / n:
    of 2 + 6 examples, 5 are both firsts and the larger class's places 1-3 (due 0.25, 0.42,
    0.58, before the smaller class's second at 0.75), whatever the seed."""
    labels = np.repeat([0, 1], [2, 6])
    for seed in range(8):
        taken = labeled_subset(labels, 5 / 8, seed=seed)
        assert np.bincount(labels[taken], minlength=2).tolist() == [1, 4], seed


def test_labeled_subset_draws_which_class_gets_the_odd_example():
    """Equal classes tie in when their examples are due: the seed, not the position, picks
    which class gets the one example over an equal share. Labels sorted by class (a folder
    read class by class): 4 of 30 is one each plus one more, and over 30 seeds that one
    goes to every class (ordering ties by position would give it to class 0 or 1 only)."""
    labels = np.repeat(np.arange(3), 10)
    extra = set()
    for seed in range(30):
        counts = np.bincount(labels[labeled_subset(labels, 4 / 30, seed=seed)], minlength=3)
        assert sorted(counts.tolist()) == [1, 1, 2], (seed, counts)
        extra.add(int(np.argmax(counts)))
    assert extra == {0, 1, 2}


def test_an_epoch_over_a_small_subset_is_repeated_up_to_the_minimum_steps():
    from contrastive.data.splits import subset_epoch_examples

    assert subset_epoch_examples(90, 32, 40) == 40 * 32  # 3 batches a pass: repeated
    assert subset_epoch_examples(90, 32, 0) == 90  # 0: one pass
    assert subset_epoch_examples(2000, 32, 40) == 2000  # a pass is longer already


# --- degenerate classes: the hold-outs never take a class's last train example -------------


def test_a_hold_out_never_takes_a_class_last_example():
    # Class 0 has one image, class 1 two: half of 11 rounds to 6; the floors (0, 1, 4) leave
    # one more, which the largest remainder (class 0's 0.5) would take: its only image.
    labels = np.repeat([0, 1, 2], [1, 2, 8])
    kept, taken = stratified_split(labels, 0.5, np.random.default_rng(0), keep_in_kept=True)
    assert np.bincount(labels[kept], minlength=3).tolist() == [1, 1, 3]
    assert len(taken) == round(0.5 * 11)  # the share class 0 could not give came from class 2
    _, all_taken = stratified_split(
        np.array([0, 1, 1]), 0.99, np.random.default_rng(0), keep_in_kept=True
    )
    assert np.bincount(np.array([0, 1, 1])[all_taken], minlength=2).tolist() == [0, 1]


def test_planned_splits_keep_every_class_in_train():
    labels = {"train": np.repeat([0, 1, 2, 3], [1, 2, 3, 40])}
    for seed in range(20):
        plan = plan_splits(
            labels, validation_fraction=0.5, labeled_fraction=None, limit=None, seed=seed,
            test_fraction=0.5,
        )  # fmt: skip
        train = np.bincount([label for *_, label in plan["train"]], minlength=4)
        assert train.min() >= 1, (seed, train.tolist())


def test_the_labelled_share_keeps_every_class_labelled():
    labels = {"train": np.repeat([0, 1], [2, 200])}
    plan = plan_splits(labels, validation_fraction=0.0, labeled_fraction=0.01, limit=None, seed=0)
    assert sorted({label for *_, label in plan["train"]}) == [0, 1]


def test_a_labelled_subset_holds_every_class_once_it_can():
    labels = np.repeat([0, 1, 2], [1000, 2, 3])
    for fraction in (3 / 1005, 0.01, 0.1):
        subset = labeled_subset(labels, fraction, seed=0)
        assert set(labels[subset].tolist()) == {0, 1, 2}, fraction
    nested = labeled_subset(labels, 0.01, seed=0)
    assert set(nested) <= set(labeled_subset(labels, 0.1, seed=0))
