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


def test_estimate_counts_images_views_and_epochs_at_the_measured_rate(tmp_path, monkeypatch):
    _folder(tmp_path / "photos", [(30, 40), (50, 60), (70, 80)] * 10)  # 60 images
    seen = {}

    def rate(config, shape, batch):
        seen.update(shape=tuple(shape), batch=batch)
        return 100.0

    monkeypatch.setattr(estimate, "measure_training_rate", rate)
    config = resolve_config("tiny", overrides=["train.epochs=3", "train.classifier_epochs=2"])
    result = estimate.estimate_run(
        str(tmp_path / "photos"),
        config,
        ["baseline", "supcon"],
        validation_fraction=0.25,
        test_fraction=0.5,
    )
    assert seen == {"shape": (50, 60, 3), "batch": 32}  # the median size; batch min(64, 32)
    assert result.train_images == 22  # round(60 * 0.75 * 0.5)
    assert result.passes == {"baseline": (3 + 2) * 22, "supcon": (3 * 2 + 2) * 22}
    assert result.seconds == pytest.approx((110 + 176) / 100.0)
    text = estimate.describe(result)
    assert text.startswith("estimated training time on this machine: ~3 s (small_cnn at 50x60x3")


def test_the_profile_size_and_an_ingested_dataset_are_used(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setattr(estimate, "measure_training_rate", lambda config, shape, batch: 10.0)
    config = resolve_config("photos")
    result = estimate.estimate_run(tiny_dataset, config, ["baseline"])
    assert result.image_shape == (96, 96, 1) and result.train_images == 360  # no cut again
    assert result.passes == {"baseline": (30 + 10) * 360}
    assert estimate.describe(result).startswith("estimated training time on this machine: ~24 min")


def test_no_estimate_for_a_source_that_cannot_be_read_yet(tmp_path):
    assert estimate.estimate_run(str(tmp_path / "missing"), resolve_config("tiny"), []) is None


@pytest.mark.backend
def test_measured_rate_is_positive():
    assert estimate.measure_training_rate(resolve_config("tiny"), (16, 16, 1), 4) > 0
