"""How long a run will train on this machine, said before it starts.

The estimate is measured, not guessed: the profile's encoder, behind the strong augmentation
and a classifier head, is built at the run's image size and timed here: the fixed cost of a
training step (build, compile, first batch, saving the model), one epoch's checkpoint, and the
throughput of training and inference batches (images/s). The seconds are then those costs
times what each step does: images x epochs x views through training, validation and kNN
passes through inference, one checkpoint per epoch. Ingest, evaluation and each task's
start-up (a fresh Python with TensorFlow, ~10 s) come on top; the steps are assumed to run
one after another, as `kfp.local` runs them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from contrastive import methods as method_registry
from contrastive.config import Config

_TIMED_STEPS = 2
_MEASURE_BATCH = 32  # at most; smaller batches run slower per image, so this errs long
_SURVEYED_FILES = 200  # image headers read to guess a folder's median size


@dataclass(frozen=True)
class Costs:
    """What one training step costs on this machine, measured by `measure_costs`."""

    train_images_per_second: float
    inference_images_per_second: float
    seconds_per_fit: float  # build, compile, first batch, save the model
    seconds_per_epoch: float  # one checkpoint


@dataclass(frozen=True)
class Estimate:
    encoder: str
    image_shape: tuple[int, int, int]
    train_images: int
    batch_size: int
    costs: Costs
    steps: dict[str, float]  # branch -> seconds of its training steps

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


def estimate_run(
    source: str,
    config: Config,
    methods: Sequence[str],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: Sequence[int] | None = None,
) -> Estimate | None:
    """Measure the encoder and count the training images of `source` (after the validation
    cut, and the test cut of a source without a test split); None when the source's size or
    image shape cannot be known before ingest (e.g. a TFDS dataset not yet prepared).
    `image_size` (the pipeline parameter) wins over the profile's, as in the ingest step."""
    found = _source_size(source)
    if found is None:
        return None
    count, shape, cut = found
    validation = 0
    if cut:
        count = round(count * (1 - test_fraction * (cut == "both")))
        validation = round(count * validation_fraction)
        count -= validation
    image_size = image_size or config.data.image_size
    if image_size is not None and cut:  # an ingested dataset keeps its size
        shape = (*image_size, shape[2])
    train = count if config.data.limit is None else min(count, config.data.limit)
    batch = min(config.train.batch_size, _MEASURE_BATCH)
    costs = measure_costs(config, shape, batch)
    train_cost = 1 / costs.train_images_per_second
    infer_cost = 1 / costs.inference_images_per_second

    def fit(epochs: int, views: int = 1) -> float:
        return (
            costs.seconds_per_fit
            + epochs * costs.seconds_per_epoch
            + epochs * train * views * train_cost
            + epochs * validation * infer_cost
        )

    steps = {}
    epochs, classifier_epochs = config.train.epochs, config.train.classifier_epochs
    knn = min(train, config.train.knn_max_examples) + min(validation, config.train.knn_max_examples)
    for method in methods:
        if method_registry.get(method).end_to_end:
            steps[method] = fit(epochs + classifier_epochs)
        else:
            pretrain = fit(epochs, config.train.num_views) + knn * infer_cost
            steps[method] = pretrain + fit(classifier_epochs)
    return Estimate(config.model.encoder, shape, train, batch, costs, steps)


def measure_costs(config: Config, image_shape: Sequence[int], batch_size: int) -> Costs:
    """Time the profile's encoder behind the strong augmentation with a 10-class head: build to
    first batch and save (fixed per step), a checkpoint (per epoch), then `_TIMED_STEPS`
    training and inference batches (throughput)."""
    import keras

    from contrastive import augment, models
    from contrastive.training.optim import precision_policy

    image_shape = tuple(int(size) for size in image_shape)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size, *image_shape)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    start = time.perf_counter()
    augmenter = augment.build_augmenter(image_shape, **asdict(config.augment.strong), seed=0)
    with precision_policy(config.train.mixed_precision):  # the precision the steps train in
        encoder = models.build_encoder(
            config.model.encoder, image_shape, width=config.model.width, seed=0
        )
    inputs = keras.Input(image_shape)
    features = encoder(augmenter(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(features))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    with tempfile.TemporaryDirectory(prefix="contrastive-estimate-") as folder:
        model.save(os.path.join(folder, "model.keras"))
        fixed = time.perf_counter() - start
        start = time.perf_counter()
        model.save_weights(os.path.join(folder, "checkpoint.weights.h5"))
        per_epoch = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(_TIMED_STEPS):
        model.train_on_batch(x, y)
    training = _TIMED_STEPS * batch_size / (time.perf_counter() - start)
    model.predict_on_batch(x)  # compiles the inference function
    start = time.perf_counter()
    for _ in range(_TIMED_STEPS):
        model.predict_on_batch(x)
    inference = _TIMED_STEPS * batch_size / (time.perf_counter() - start)
    return Costs(training, inference, fixed, per_epoch)


def describe(estimate: Estimate) -> str:
    """One paragraph for the terminal."""
    height, width, channels = estimate.image_shape
    costs = estimate.costs
    steps = ", ".join(f"{name} {_duration(seconds)}" for name, seconds in estimate.steps.items())
    return (
        f"estimated training time on this machine: {_duration(estimate.seconds)} ({steps}; "
        f"{estimate.encoder} at {height}x{width}x{channels}, {estimate.train_images:,} training "
        f"images; measured here: {costs.train_images_per_second:.0f} images/s training and "
        f"{costs.inference_images_per_second:.0f} images/s inference at batch "
        f"{estimate.batch_size}, {costs.seconds_per_fit:.1f} s to build and save a model, "
        f"{costs.seconds_per_epoch:.2f} s per checkpoint). Ingest, evaluation and task start-up "
        "come on top."
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
