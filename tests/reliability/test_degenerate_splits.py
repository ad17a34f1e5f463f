"""Splits keep every class they can: a hold-out never takes a class's last train image, a
class left without train images is named (ingest and training), and a training step refuses
a train split with labelled images of fewer than two classes (it would report 100 %)."""

import logging

import numpy as np
import pytest

from contrastive import data, tasks
from contrastive.config import resolve_config
from contrastive.data import DataError


def _npz(path, y_train, y_test):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 255, size=(len(y_train), 12, 12, 1), dtype=np.uint8)
    x_test = rng.integers(0, 255, size=(len(y_test), 12, 12, 1), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=np.asarray(y_train), x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def test_the_validation_hold_out_leaves_a_class_its_only_train_image(tmp_path):
    """The fault as reported: the hold-out took a class's only image, the train split had
    one class, and the baseline trained on it reported 100 % accuracy."""
    source = _npz(tmp_path / "d.npz", [0] + [1] * 9, np.arange(6) % 2)
    manifest = data.ingest(source, str(tmp_path / "out"), validation_fraction=0.5, progress=False)
    assert manifest["splits"]["train"]["class_counts"] == [1, 4]
    assert manifest["splits"]["validation"]["class_counts"] == [0, 5]


def test_a_class_without_train_images_is_named_and_training_refuses_one_class(tmp_path, caplog):
    source = _npz(tmp_path / "d.npz", np.arange(40) % 2, np.arange(30) % 3)  # no 2 in train
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="contrastive.data"):
        manifest = data.ingest(source, str(out), validation_fraction=0.2, progress=False)
    assert manifest["splits"]["train"]["class_counts"] == [16, 16, 0]
    assert f"1 of 3 classes have no train images in {out}: '2'." in caplog.text

    # One labelled image in all (2 % of 32): the labelled subset holds one class.
    config = resolve_config("tiny", labeled_fraction=0.02)
    baseline = tmp_path / "baseline"
    with pytest.raises(DataError) as raised:
        tasks.run_train_baseline(str(out), baseline, config)
    assert str(raised.value).startswith(
        f"{out}: the train split train_baseline learns from holds labelled images of 1 of 3 "
        "classes ('"
    )
    assert str(raised.value).endswith(
        "); training needs at least two (raise train.labeled_fraction, or ingest with train "
        "images of more classes)"
    )
    assert not baseline.exists()  # refused before anything was written


@pytest.mark.slow
def test_training_names_the_classes_it_has_no_labelled_image_of(tmp_path, caplog):
    source = _npz(tmp_path / "d.npz", np.arange(40) % 2, np.arange(30) % 3)
    out = tmp_path / "out"
    data.ingest(source, str(out), validation_fraction=0.2, progress=False)
    with caplog.at_level(logging.WARNING, logger="contrastive.tasks"):
        tasks.run_train_baseline(str(out), tmp_path / "baseline", resolve_config("tiny"))
    assert (
        f"train_baseline: 1 of 3 classes have no labelled train image in {out}: '2'. The "
        "model cannot learn them"
    ) in caplog.text
