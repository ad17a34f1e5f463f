"""`contrastive.sizing`: the batch, steps per epoch and kNN neighbourhood fitted to the
training set where the user did not set them; a large set keeps the profile's values."""

import logging

import pytest

from contrastive import sizing
from contrastive.config import explicit_fields, resolve_config
from contrastive.sizing import DataSize

PHOTOS = DataSize(train=173, classes=3)  # 3 x 80 photos after the test and validation cuts


def test_a_small_folder_gets_a_batch_steps_and_k_that_fit_it():
    config, notes = sizing.fit_to_data(resolve_config("quick"), PHOTOS)
    train = config.train
    # 173 / 16 = 10 -> 8, below 32 -> 32; a pass is 6 batches -> 16; k <= 173 / (2 * 3) = 28
    assert (train.batch_size, train.min_steps_per_epoch, train.knn_k) == (32, 16, 28)
    assert notes == [
        "train.batch_size 256 -> 32: 173 training images in passes of 16 batches or more, a "
        "power of two >= 32",
        "train.min_steps_per_epoch 0 -> 16: a pass is 6 batches of 32; an epoch repeats it to "
        "16 steps",
        "train.knn_k 50 -> 28: half a class of the kNN sample (173 images, 3 classes)",
    ]
    rest = config.replace(
        {"train.batch_size": 256, "train.min_steps_per_epoch": 0, "train.knn_k": 50}
    )
    assert rest == resolve_config("quick")  # nothing else changed


@pytest.mark.parametrize("profile", ["quick", "few-labels", "full"])
def test_fashion_mnist_keeps_the_profiles_values(profile):
    config = resolve_config(profile)
    assert sizing.fit_to_data(config, DataSize(train=54_000, classes=10)) == (config, [])


def test_the_limit_counts_and_a_tiny_set_gets_a_batch_it_can_fill():
    config = resolve_config("quick", limit=4000)
    fitted, _ = sizing.fit_to_data(config, DataSize(train=54_000, classes=10))
    # 4000 / 16 = 250 -> 128: a pass of 32 batches, no repeat
    assert (fitted.train.batch_size, fitted.train.min_steps_per_epoch) == (128, 0)
    assert fitted.train.knn_k == 50
    fitted, _ = sizing.fit_to_data(config, DataSize(train=1000, classes=10))
    assert (fitted.train.batch_size, fitted.train.min_steps_per_epoch) == (32, 0)  # 32 batches
    fitted, _ = sizing.fit_to_data(config, DataSize(train=9, classes=2))
    assert (fitted.train.batch_size, fitted.train.min_steps_per_epoch, fitted.train.knn_k) == (
        8,
        16,
        2,
    )
    fitted, _ = sizing.fit_to_data(config, DataSize(train=2, classes=2))
    assert fitted.train.batch_size == 2 and fitted.train.knn_k == 1


def test_what_the_user_set_is_kept(tmp_path):
    assert sizing.fit_to_data(resolve_config("quick"), PHOTOS, sizing.FITTED_FIELDS)[1] == []
    # a flag (pipeline parameter), an override and a profile file of one's own are the user's
    for options in (
        {"batch_size": 256},
        {"overrides": ["train.batch_size=256"]},
        {"overrides": '{"train.batch_size": 256}'},
    ):
        config = resolve_config("quick", fit_to=PHOTOS, **options)
        assert config.train.batch_size == 256 and config.train.knn_k == 28, options
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: quick\ntrain: {batch_size: 256, epochs: 3}\n")
    assert explicit_fields(str(mine)) == {"train.batch_size", "train.epochs"}
    assert resolve_config(str(mine), fit_to=PHOTOS).train.batch_size == 256
    mine.write_text("base: quick\ntrain: {epochs: 3}\n")  # the shipped base's batch: fitted
    assert resolve_config(str(mine), fit_to=PHOTOS).train.batch_size == 32
    off = resolve_config("quick", overrides=["train.fit_to_data=false"], fit_to=PHOTOS)
    assert off.train.batch_size == 256 and off.train.min_steps_per_epoch == 0
    assert resolve_config("tiny", fit_to=PHOTOS) == resolve_config("tiny")  # tests pin theirs


def test_resolve_config_logs_each_change(caplog):
    with caplog.at_level(logging.INFO, logger="contrastive.sizing"):
        resolve_config("quick", fit_to=PHOTOS)
    assert [record.getMessage() for record in caplog.records][0] == (
        "fitted to the data: train.batch_size 256 -> 32: 173 training images in passes of 16 "
        "batches or more, a power of two >= 32"
    )
    assert DataSize.of_manifest({"splits": {"train": {"num_examples": 7}}, "num_classes": 2}) == (
        DataSize(7, 2)
    )


def test_an_epoch_of_a_short_pass_is_filled_to_the_minimum_steps(tiny_dataset):
    import numpy as np

    from contrastive.data import stream_training_data

    one_pass = stream_training_data(tiny_dataset, batch_size=64, seed=0)
    assert (len(one_pass.train), one_pass.num_train) == (6, 360)  # 360 = 5 x 64 + 40
    filled = stream_training_data(tiny_dataset, batch_size=64, seed=0, min_steps_per_epoch=10)
    assert (len(filled.train), filled.num_train) == (10, 640)
    labels = np.concatenate([y.numpy() for _, y in filled.train])
    assert len(labels) == 640
    counts = np.bincount(labels, minlength=4)
    # every image once per pass: 640 = 360 + 280, so each class appears once, then again
    assert counts.sum() == 640 and counts.min() >= 90
    longer = stream_training_data(tiny_dataset, batch_size=64, seed=0, min_steps_per_epoch=3)
    assert len(longer.train) == 6  # a pass already long enough is not cut
