"""`contrastive.estimate`: the training-time estimate printed before a run."""

import numpy as np
import pytest
from PIL import Image

from contrastive import estimate
from contrastive.config import resolve_config


def _folder(root, sizes):
    for label in ("a", "b"):
        for i, (height, width) in enumerate(sizes):
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


COSTS = estimate.Costs(
    train_images_per_second=100.0,
    inference_images_per_second=400.0,
    seconds_per_fit=2.0,
    seconds_per_epoch=0.5,
)


def test_estimate_counts_images_views_and_epochs_at_the_measured_costs(tmp_path, monkeypatch):
    _folder(tmp_path / "photos", [(30, 40), (50, 60), (70, 80)] * 10)  # 60 images
    seen = {}

    def measure(config, shape, batch):
        seen.update(shape=tuple(shape), batch=batch)
        return COSTS

    monkeypatch.setattr(estimate, "measure_costs", measure)
    config = resolve_config("tiny", overrides=["train.epochs=3", "train.classifier_epochs=2"])
    result = estimate.estimate_run(
        str(tmp_path / "photos"),
        config,
        ["baseline", "supcon"],
        validation_fraction=0.25,
        test_fraction=0.5,
    )
    assert seen == {"shape": (50, 60, 3), "batch": 32}  # the median size; batch min(64, 32)
    assert result.train_images == 22  # 60 -> 30 after test -> 8 validation, 22 train
    # per fit: 2 s fixed + 0.5 s per epoch + train images x views / 100 + 8 validation / 400
    baseline = 2 + 5 * 0.5 + 5 * 22 / 100 + 5 * 8 / 400
    pretrain = 2 + 3 * 0.5 + 3 * 22 * 2 / 100 + 3 * 8 / 400 + (22 + 8) / 400  # + kNN
    classifier = 2 + 2 * 0.5 + 2 * 22 / 100 + 2 * 8 / 400
    assert result.steps == pytest.approx({"baseline": baseline, "supcon": pretrain + classifier})
    assert result.seconds == pytest.approx(baseline + pretrain + classifier)
    text = estimate.describe(result)
    assert text.startswith("estimated training time on this machine: ~14 s (baseline ~6 s, ")
    assert "small_cnn at 50x60x3, 22 training images; measured here: 100 images/s" in text


def test_the_profile_size_and_an_ingested_dataset_are_used(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setattr(estimate, "measure_costs", lambda config, shape, batch: COSTS)
    result = estimate.estimate_run(tiny_dataset, resolve_config("photos"), ["baseline"])
    # an ingested dataset is trained at its stored size and is not cut again
    assert result.image_shape == (28, 28, 1) and result.train_images == 360
    assert result.steps == pytest.approx({"baseline": 2 + 40 * 0.5 + 40 * 360 / 100})


def test_the_image_size_parameter_wins_over_the_profile(tmp_path, monkeypatch):
    _folder(tmp_path / "photos", [(30, 40)] * 4)
    monkeypatch.setattr(estimate, "measure_costs", lambda config, shape, batch: COSTS)
    config = resolve_config("photos")  # 96x96
    result = estimate.estimate_run(str(tmp_path / "photos"), config, [], image_size=(64, 48))
    assert result.image_shape == (64, 48, 3)


def test_no_estimate_for_a_source_that_cannot_be_read_yet(tmp_path):
    assert estimate.estimate_run(str(tmp_path / "missing"), resolve_config("tiny"), []) is None


@pytest.mark.backend
def test_costs_are_measured_on_every_backend(monkeypatch):
    """The profile's model really steps on this backend; the figures are its timed spans
    turned into rates the estimate's way. A clock that moves 0.5 s per reading makes each
    span 0.5 s: rates of `_TIMED_STEPS` batches of 4 images in 0.5 s, and 0.5 s fixed and
    per-epoch costs."""
    from types import SimpleNamespace

    readings = iter(0.5 * i for i in range(1000))
    monkeypatch.setattr(estimate, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    costs = estimate.measure_costs(resolve_config("tiny"), (16, 16, 1), 4)
    rate = estimate._TIMED_STEPS * 4 / 0.5
    assert costs == estimate.Costs(
        train_images_per_second=rate,
        inference_images_per_second=rate,
        seconds_per_fit=0.5,
        seconds_per_epoch=0.5,
    )
