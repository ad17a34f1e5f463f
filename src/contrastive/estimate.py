"""How long a run will train on this machine, said before it starts.

The estimate is measured, not guessed: the profile's encoder is built at the run's image size
and timed over a few training steps (forward, backward, update) on random pixels; that
throughput (images/s) times the images each step will see gives the seconds. It covers the
training steps only (ingest, evaluation, kNN and each task's start-up come on top) and
assumes the steps run one after another, as `kfp.local` runs them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrastive.config import BASELINE, Config

_TIMED_STEPS = 2
_MEASURE_BATCH = 32  # at most; smaller batches run slower per image, so this errs long
_SURVEYED_FILES = 200  # image headers read to guess a folder's median size


@dataclass(frozen=True)
class Estimate:
    encoder: str
    image_shape: tuple[int, int, int]
    train_images: int
    images_per_second: float  # one training step's throughput, measured here
    batch_size: int
    passes: dict[str, int]  # step -> images it processes (epochs x images x views)

    @property
    def seconds(self) -> float:
        return sum(self.passes.values()) / self.images_per_second


def estimate_run(
    source: str,
    config: Config,
    methods: Sequence[str],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Estimate | None:
    """Measure the encoder and count the training images of `source` (after the validation
    cut, and the test cut of a source without a test split); None when the source's size or
    image shape cannot be known before ingest (e.g. a TFDS dataset not yet prepared)."""
    found = _source_size(source)
    if found is None:
        return None
    count, shape, cut = found
    if cut:
        count = round(count * (1 - validation_fraction) * (1 - test_fraction * (cut == "both")))
    if config.data.image_size is not None:
        shape = (*config.data.image_size, shape[2])
    train_images = count if config.data.limit is None else min(count, config.data.limit)
    batch = min(config.train.batch_size, _MEASURE_BATCH)
    rate = measure_training_rate(config, shape, batch)
    epochs, classifier_epochs = config.train.epochs, config.train.classifier_epochs
    passes = {}
    for method in methods:
        if method == BASELINE:
            passes[method] = (epochs + classifier_epochs) * train_images
        else:
            views = config.train.num_views
            passes[method] = (epochs * views + classifier_epochs) * train_images
    return Estimate(config.model.encoder, shape, train_images, rate, batch, passes)


def measure_training_rate(config: Config, image_shape: Sequence[int], batch_size: int) -> float:
    """Images per second of one training step of the profile's encoder plus a linear head,
    timed after one warm-up step (which compiles)."""
    import keras

    from contrastive import models

    encoder = models.build_encoder(
        config.model.encoder, tuple(image_shape), width=config.model.width, seed=0
    )
    model = keras.Sequential([encoder, keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *image_shape), dtype=np.float32)
    y = rng.integers(0, 10, batch_size)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(_TIMED_STEPS):
        model.train_on_batch(x, y)
    return _TIMED_STEPS * batch_size / (time.perf_counter() - start)


def describe(estimate: Estimate) -> str:
    """One paragraph for the terminal."""
    height, width, channels = estimate.image_shape
    steps = ", ".join(f"{name} {passes:,}" for name, passes in estimate.passes.items())
    return (
        f"estimated training time on this machine: {_duration(estimate.seconds)} "
        f"({estimate.encoder} at {height}x{width}x{channels}: measured "
        f"{estimate.images_per_second:.0f} images/s per training step at batch "
        f"{estimate.batch_size}; {estimate.train_images:,} training images; images processed "
        f"per step: {steps}). Ingest, evaluation and task start-up come on top."
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _source_size(source: str) -> tuple[int, tuple[int, int, int], str] | None:
    """(train images, (height, width, channels), which cuts ingest will still make: "" for an
    ingested dataset, "validation", or "both" for a source without a test split)."""
    from contrastive import storage
    from contrastive.data.images import header_size, sniff_format
    from contrastive.data.sources import ArraySplit, open_source

    if ":" not in source.split("/")[0] or storage.is_gcs(source):
        manifest_path = storage.join(storage.strip_trailing_slash(source), "manifest.json")
        if storage.exists(manifest_path):
            manifest = storage.read_json(manifest_path)
            train = manifest["splits"].get("train", {}).get("num_examples", 0)
            return train, tuple(manifest["image_shape"]), ""
    try:
        opened = open_source(source)
    except Exception:  # the ingest step reports a bad source with its own message
        return None
    train = opened.splits.get("train")
    if train is None:
        return None
    cut = "validation" if "test" in opened.splits else "both"
    if isinstance(train, ArraySplit):
        return len(train.labels), tuple(train.images.shape[1:]), cut
    sizes = []
    for path in train.paths[:: max(1, len(train.paths) // _SURVEYED_FILES)]:
        data = storage.read_bytes(path)
        image_format = sniff_format(data[:32])
        size = header_size(data, image_format) if image_format else None
        if size is not None:
            sizes.append(size)
    if not sizes:
        return None
    heights, widths = zip(*sizes, strict=True)
    return len(train.paths), (int(np.median(heights)), int(np.median(widths)), 3), cut
