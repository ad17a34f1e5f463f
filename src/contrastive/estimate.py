"""How long a run will train on this machine, said before it starts.

The estimate is a measurement, not a guess: each kind of training step a run has
(pretraining, the classifier on a pretrained encoder, the cross-entropy baseline) is run on
this machine, each in a fresh Python process as `kfp.local` runs every task, through its own
entry point (`training.pretrain`, `train_classifier`, `train_baseline`) on random images of
the run's shape, in the precision the step will use (`train.mixed_precision`, `auto`
resolved for this machine), with the run's batch size and views, its checkpoints and
TensorBoard logs, for two short epochs of 8 to 32 steps. That gives, per kind:

- the fixed cost of a step: building, compiling and tracing the model, the first epoch's
  set-up (the first epoch less the second);
- the seconds of one optimizer step (the mean of the second epoch's steps after its first);
- the cost of an epoch beyond its steps (checkpoint, callbacks);
- the model's inference rate (validation passes, the kNN monitor of pretraining).

A step's seconds are then `fixed + epochs x (steps x step + epoch + inferred images / rate)`,
with the steps of an epoch as the step will run them (`train.min_steps_per_epoch`, the
labelled subsets of a few-labels run and their `labeled_steps_per_epoch`), and the run's time
the sum over its steps, one after another as `kfp.local` runs them. What it leaves out:
ingest, evaluation and each task's start-up (a fresh Python with TensorFlow, ~10 s). A model
too slow to train a full batch in `STEP_BUDGET_SECONDS` is measured at a smaller batch and
scaled by the images (which errs long: smaller batches run slower per image).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrastive import methods as method_registry
from contrastive.config import Config
from contrastive.methods import BASELINE

PRETRAIN, CLASSIFIER = "pretrain", "classifier"  # the kinds of step besides BASELINE
# Optimizer steps in each of the two measured epochs: the second epoch's steps but its first
# give a step's time (their mean: on a shared CPU single steps vary 2x with the load), as many
# as fill about `STEADY_SECONDS` by the probe's guess, within these bounds.
STEADY_SECONDS = 4.0
MIN_STEPS, MAX_STEPS = 8, 32
STEP_BUDGET_SECONDS = 5.0  # a measured step's rough bound: larger batches are scaled down
_SURVEYED_FILES = 200  # image headers read to guess a folder's median size


@dataclass(frozen=True)
class Costs:
    """What one kind of training step costs on this machine, measured by `measure_costs`."""

    fixed_seconds: float  # build, compile, trace, first-epoch set-up
    step_seconds: float  # one optimizer step of the run's batch
    epoch_seconds: float  # an epoch beyond its steps: checkpoint, callbacks
    inference_images_per_second: float  # the model's forward pass (validation, kNN)
    measured_batch: int  # the batch the step was timed at (< the run's: scaled by images)
    # A fitted classifier (no epochs): its cross-validation per scored labelled row and draw
    # of the folds (at most `probe.CV_MAX_ROWS` are scored, `train.probe_repeats` draws) and
    # its final fit per labelled row.
    cv_seconds_per_row: float = 0.0
    fit_seconds_per_row: float = 0.0
    # Its candidates that spread labels over the unlabelled pool (scored only where some
    # rows have no label): fixed + per pool row, and the pool's neighbour graph per pool
    # row squared (`measure_spreading`).
    spreading_fixed_seconds: float = 0.0
    spreading_seconds_per_row: float = 0.0
    graph_seconds_per_row_squared: float = 0.0


@dataclass(frozen=True)
class TrainingSet:
    """What ingest will make of a source, as far as training time goes."""

    train: int
    validation: int
    classes: int
    image_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Estimate:
    encoder: str
    image_shape: tuple[int, int, int]
    train_images: int
    batch_size: int
    precision: str
    costs: dict[str, Costs]  # kind of step -> its costs
    steps: dict[str, float]  # branch (method) -> seconds of its training steps
    measured_seconds: float  # what the measurement itself took

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


def training_set(
    source: str,
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: Sequence[int] | None = None,
    limit: int | None = None,
) -> TrainingSet | None:
    """Count the training images ingest will give `source` (after the validation cut, and
    the test cut of a source without a test split) and their shape; None when the source's
    size or image shape cannot be known before ingest (e.g. a TFDS dataset not yet
    prepared). `image_size` (the pipeline parameter, else the profile's) wins over the
    source's, as in the ingest step; `limit` is `data.limit`."""
    found = _source_size(source)
    if found is None:
        return None
    count, validation, shape, classes, cut = found
    if cut:
        count = round(count * (1 - test_fraction * (cut == "both")))
        validation = round(count * validation_fraction)
        count -= validation
        if image_size is not None:  # an ingested dataset keeps its size
            shape = (*image_size, shape[2])
    if limit is not None:
        count, validation = min(count, limit), min(validation, limit)
    return TrainingSet(count, validation, classes, tuple(int(s) for s in shape))


def estimate_run(
    data: TrainingSet,
    config: Config,
    methods: Sequence[str],
    *,
    labeled_fractions: Sequence[float] = (),
) -> Estimate:
    """Measure the run's kinds of step on this machine (`measure_costs`) and add up the
    seconds of every training step of a run of `methods` (one branch per labelled fraction
    with `labeled_fractions`, SimCLR pretraining once) on `data`, with `config` already
    fitted to it (`config.resolve_config(fit_to=...)`)."""
    from contrastive.training.optim import machine_mixed_precision
    from contrastive.training.probe import CV_MAX_ROWS, cv_repeats

    started = time.perf_counter()
    train = config.train
    end_to_end = [method_registry.get(method).end_to_end for method in methods]
    kinds = ([BASELINE] if any(end_to_end) else []) + (
        [PRETRAIN, CLASSIFIER] if not all(end_to_end) else []
    )
    # One branch per labelled fraction, or the run's one `train.labeled_fraction`.
    fractions = list(labeled_fractions) or [
        train.labeled_fraction if train.labeled_fraction < 1 else None
    ]
    unlabelled = train.classifier_mode == "fitted" and any(
        fraction is not None and fraction < 1 for fraction in fractions
    )
    # A distilled student trains like the baseline (one view, the whole encoder) on the pool.
    distilling = unlabelled and train.distill_epochs > 0
    if distilling and BASELINE not in kinds:
        kinds.append(BASELINE)
    costs = measure_costs(
        config, data.image_shape, data.classes, kinds, spreading=data.train if unlabelled else 0
    )
    knn = min(data.train, train.knn_max_examples) + min(data.validation, train.knn_max_examples)

    def seconds(kind: str, epochs: int, images: int, knn_images: int = 0) -> float:
        cost = costs[kind]
        steps = max(math.ceil(images / train.batch_size), train.min_steps_per_epoch)
        views = train.num_views if kind == PRETRAIN else 1
        inferred = data.validation * views + knn_images
        return cost.fixed_seconds + epochs * (
            steps * cost.step_seconds
            + cost.epoch_seconds
            + inferred / cost.inference_images_per_second
        )

    def labelled(fraction: float | None) -> int:
        """Images an epoch of a cross-entropy step reads: the subset, filled to its steps."""
        if fraction is None or fraction >= 1:
            return data.train
        subset = max(1, round(fraction * data.train))
        least = max(train.labeled_steps_per_epoch, train.min_steps_per_epoch)
        return max(subset, least * train.batch_size)

    def fitted_seconds(fraction: float | None) -> float:
        """A fitted classifier: the features of the pool and of the validation split, the
        cross-validation on at most `CV_MAX_ROWS` labelled rows, the fit on all of them."""
        cost = costs[CLASSIFIER]
        labelled = data.train if fraction is None else max(1, round(fraction * data.train))
        scored = min(labelled, CV_MAX_ROWS)
        repeats = cv_repeats(train.probe_repeats, scored)  # the CV runs this many times
        spreading = 0.0
        if labelled < data.train:  # label spreading has rows to spread to (one graph)
            spreading = (
                repeats
                * (cost.spreading_fixed_seconds + data.train * cost.spreading_seconds_per_row)
                + data.train**2 * cost.graph_seconds_per_row_squared
            )
        return (
            cost.fixed_seconds
            + (data.train + data.validation) / cost.inference_images_per_second
            + repeats * scored * cost.cv_seconds_per_row
            + labelled * cost.fit_seconds_per_row
            + spreading
        )

    steps: dict[str, float] = {}
    for fraction in fractions:
        tag = f" {100 * fraction:g}%" if labeled_fractions else ""
        for method in methods:
            entry = method_registry.get(method)
            if entry.end_to_end:
                epochs = train.epochs + train.classifier_epochs
                steps[method + tag] = seconds(BASELINE, epochs, labelled(fraction))
                continue
            once = entry.pretrain_once and bool(labeled_fractions)
            pretrain = seconds(PRETRAIN, train.epochs, data.train, knn)
            if entry.control:  # an untrained encoder: the step only builds and saves it
                pretrain = seconds(PRETRAIN, 0, data.train)
            elif once and fraction != labeled_fractions[0]:
                pretrain = 0.0  # one encoder serves every fraction
            if train.classifier_mode == "fitted":  # one feature pass over the pool and a solve
                classifier = fitted_seconds(fraction)
                if distilling and fraction is not None and fraction < 1:
                    classifier += seconds(BASELINE, train.distill_epochs, data.train)
            else:
                classifier = seconds(CLASSIFIER, train.classifier_epochs, labelled(fraction))
            steps[method + tag] = pretrain + classifier
    precision, _ = machine_mixed_precision(train.mixed_precision)
    return Estimate(
        config.model.encoder,
        data.image_shape,
        data.train,
        train.batch_size,
        precision,
        costs,
        steps,
        time.perf_counter() - started,
    )


def measure_costs(
    config: Config,
    image_shape: Sequence[int],
    num_classes: int,
    kinds: Sequence[str],
    *,
    fresh: bool = True,
    spreading: int = 0,
) -> dict[str, Costs]:
    """Time each kind of step (`BASELINE`, `PRETRAIN`, `CLASSIFIER`: on the pretrained
    encoder, in `train.classifier_mode`) through its training entry point
    (`measure_step`; `spreading`: the pool of a run with unlabelled rows, whose fitted
    classifier's label-spreading candidates are timed too; 0: none). `fresh`: each in a
    new Python process, as `kfp.local` runs every task (a process's first model pays for
    loading kernels and libraries that later ones reuse: measured in one process, the
    second and third kinds came out twice too cheap)."""
    image_shape = tuple(int(size) for size in image_shape)
    batch, steps = _measured_batch(config, image_shape)
    order = [kind for kind in (PRETRAIN, CLASSIFIER, BASELINE) if kind in kinds]
    if CLASSIFIER in order and PRETRAIN not in order:
        raise ValueError("measure PRETRAIN before CLASSIFIER: the classifier needs its encoder")
    costs = {}
    with tempfile.TemporaryDirectory(prefix="contrastive-estimate-") as folder:
        encoder = f"{folder}/encoder.keras"
        for kind in order:
            request = {
                "kind": kind,
                "config": config.to_dict(),
                "image_shape": image_shape,
                "num_classes": num_classes,
                "batch": batch,
                "steps": steps,
                "encoder": encoder,
                "spreading": spreading,
            }
            costs[kind] = _measure_fresh(request) if fresh else _measure(request)
    return costs


def measure_step(
    kind: str,
    config: Config,
    image_shape: tuple[int, ...],
    num_classes: int,
    batch: int,
    encoder_path: str,
    steps: int = MIN_STEPS,
    spreading: int = 0,
) -> Costs:
    """Time one kind of step through its training entry point: two epochs of
    `steps` steps of `batch` random images, with a checkpoint folder and
    TensorBoard logs like a real step's. PRETRAIN saves its encoder to `encoder_path`;
    CLASSIFIER loads it from there (before its clock starts, as the real step). A fitted
    classifier sees every row labelled; `spreading` (a pool's size, 0: none) adds
    `measure_spreading`'s costs of the candidates that only run where some rows have no
    label, timed at pools of at most that size (`spreading_pools`)."""
    import keras

    from contrastive import training
    from contrastive.training.callbacks import tensorboard_callback

    rng = np.random.default_rng(0)
    count = batch * steps
    train = (rng.integers(0, 256, (count, *image_shape), np.uint8), np.arange(count) % num_classes)
    validation = (train[0][:batch], train[1][:batch])
    measured = config.replace(
        {
            "train.batch_size": batch,
            "train.epochs": 2,
            "train.classifier_epochs": 2,
            "train.warmup_epochs": 0,
            "train.verbose": 0,
            "train.knn_max_examples": batch,
        }
    )
    encoder = keras.saving.load_model(encoder_path) if kind == CLASSIFIER else None
    details: dict = {}  # a fitted classifier's selection record (its timings)
    with tempfile.TemporaryDirectory(prefix="contrastive-estimate-") as folder:
        timer = _epoch_timer()
        common = dict(
            num_classes=num_classes,
            checkpoint_dir=f"{folder}/checkpoints",
            callbacks=[timer, tensorboard_callback(f"{folder}/tensorboard")],
        )
        timer.start()
        if kind == PRETRAIN:
            model, _ = training.pretrain(
                measured, train, validation, knn_sample=(*train, *validation), **common
            )
            model.save(encoder_path)
        elif kind == CLASSIFIER:
            model, _ = training.train_classifier(
                measured, encoder, train, validation, details=details, **common
            )
        else:
            once = measured.replace({"train.epochs": 1, "train.classifier_epochs": 1})
            model, _ = training.train_baseline(once, train, validation, **common)
    if not timer.epoch_ends:  # a fitted classifier: a feature pass and a solve, no epochs
        elapsed = time.perf_counter() - timer.started
        rate = _inference_rate(model, validation[0])
        solve, cv = details.get("seconds", 0.0), details.get("cv_seconds", 0.0)
        scored = max(1, details.get("cross_validated", count))
        pool_costs = {}
        if spreading:
            pool_costs = measure_spreading(
                details.get("feature_dim", 1),
                num_classes,
                config.train.probe_candidates,
                folds=config.train.probe_folds,
                pools=spreading_pools(spreading),
            )
        return Costs(
            # building the head and the model, the training-accuracy pass
            fixed_seconds=max(elapsed - solve - (count + len(validation[0])) / rate, 0.0),
            step_seconds=0.0,
            epoch_seconds=0.0,
            inference_images_per_second=rate,
            measured_batch=batch,
            cv_seconds_per_row=cv / scored / details.get("repeats", 1),  # one draw's
            fit_seconds_per_row=max(solve - cv, 0.0) / count,
            **pool_costs,
        )
    views = measured.train.num_views if kind == PRETRAIN else 1
    return timer.costs(
        inferred=batch * views + (2 * batch if kind == PRETRAIN else 0),  # + the kNN sample
        rate=_inference_rate(model, validation[0]),
        scale=config.train.batch_size / batch,
        batch=batch,
    )


SPREADING_CANDIDATES = ("label_spreading", "spread_ridge")  # they read the unlabelled pool
# The pools `measure_spreading` times, 10 % of their rows labelled: two sizes give each
# part's fixed cost (eigendecompositions of the feature dimension's Gram matrix) apart from
# its cost per pool row.
SPREADING_POOLS = (1000, 4000)


def spreading_pools(pool: int) -> tuple[int, int]:
    """The two pool sizes `measure_spreading` times for a run whose pool has `pool` rows:
    `SPREADING_POOLS`, or the pool itself and a quarter of it when it is smaller."""
    large = min(SPREADING_POOLS[1], max(int(pool), 100))
    return min(SPREADING_POOLS[0], max(large // 4, 25)), large


def measure_spreading(
    feature_dim: int,
    num_classes: int,
    candidates: Sequence[str],
    *,
    folds: int = 5,
    pools: Sequence[int] = SPREADING_POOLS,
    seed: int = 0,
) -> dict[str, float]:
    """Time the label-spreading candidates among `candidates` (the classifier selection's
    cross-validation, `probe.select_classifier`) on random clustered features of
    `feature_dim` at two pool sizes; returns the `Costs` fields `spreading_fixed_seconds`,
    `spreading_seconds_per_row` (their cross-validation: affine in the pool's rows) and
    `graph_seconds_per_row_squared` (the pool's kNN graph: every row against every row)."""
    from contrastive.training import probe

    scored = [name for name in candidates if name in SPREADING_CANDIDATES]
    if not scored:
        return {}
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, feature_dim)).astype(np.float32)
    timed = []
    for pool in pools:
        truth = np.arange(pool) % num_classes
        features = centres[truth] + 2 * rng.normal(size=(pool, feature_dim)).astype(np.float32)
        labels = np.where(np.arange(pool) % 10 == 0, truth, -1)
        selection = probe.select_classifier(
            np.maximum(features, 0), labels, num_classes, candidates=scored, folds=folds
        ).selection
        parts = selection["cv_timings"]
        timed.append((sum(parts[name] for name in scored), parts["graph"]))
    (small, _), (large, graph) = timed
    per_row = max((large - small) / (pools[1] - pools[0]), 0.0)
    return {
        "spreading_fixed_seconds": max(small - per_row * pools[0], 0.0),
        "spreading_seconds_per_row": per_row,
        "graph_seconds_per_row_squared": graph / pools[1] ** 2,
    }


def _measure(request: dict) -> Costs:
    from contrastive.config import Config

    return measure_step(
        request["kind"],
        Config.from_dict(request["config"]),
        tuple(request["image_shape"]),
        request["num_classes"],
        request["batch"],
        request["encoder"],
        request["steps"],
        request.get("spreading", 0),
    )


MEASURE_TIMEOUT_SECONDS = 1800  # one kind of step in its own process, at most


def _measure_fresh(request: dict) -> Costs:
    """`_measure(request)` in a new Python process (`python -m contrastive.estimate`)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "contrastive.estimate"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=MEASURE_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"measuring the {request['kind']} step failed: {tail}")
    return Costs(**json.loads(done.stdout.strip().splitlines()[-1]))


def _measured_batch(config: Config, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """`(batch, steps)` to measure at: the run's batch, or, for a model too slow to train it
    in about `STEP_BUDGET_SECONDS`, a smaller power of two (at least 2); and the steps that
    fill about `STEADY_SECONDS`. Both from a timed forward pass of the encoder (a training
    step of V views costs about 3 V forward passes)."""
    from contrastive import models
    from contrastive.training.optim import precision_policy

    target = config.train.batch_size
    with precision_policy(config.train.mixed_precision):
        encoder = models.build_encoder(
            config.model.encoder, image_shape, width=config.model.width, seed=0
        )
    probe = np.zeros((min(target, 8), *image_shape), np.float32)
    encoder.predict_on_batch(probe)  # compiles
    timings = []
    for _ in range(3):  # the fastest of three: a busy CPU's spikes must not shrink the batch
        start = time.perf_counter()
        encoder.predict_on_batch(probe)
        timings.append(time.perf_counter() - start)
    per_image = 3 * config.train.num_views * min(timings) / len(probe)  # trained, all views
    batch = target
    if per_image * target > STEP_BUDGET_SECONDS:
        fits = max(2, int(STEP_BUDGET_SECONDS / per_image))
        batch = min(target, 1 << (fits.bit_length() - 1))
    steps = math.ceil(STEADY_SECONDS / max(per_image * batch, 1e-6))
    return batch, min(MAX_STEPS, max(MIN_STEPS, steps))


def _inference_rate(model, images: np.ndarray) -> float:
    """Images per second of `model`'s forward pass on `images` (compiled first)."""
    scaled = images.astype(np.float32)
    model.predict_on_batch(scaled)
    start = time.perf_counter()
    model.predict_on_batch(scaled)
    return len(images) / max(time.perf_counter() - start, 1e-9)


def _epoch_timer():
    """A Keras callback that times a fit: its `start()` (before the model is built), each
    epoch's end and each training step of the second epoch; `costs(...)` splits them into a
    step's `Costs`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def start(self):
            self.started = time.perf_counter()
            self.epoch_ends, self.steps = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self.step_started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if len(self.epoch_ends) == 1 and batch > 0:
                self.steps.append(time.perf_counter() - self.step_started)

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(time.perf_counter())

        def costs(self, *, inferred: int, rate: float, scale: float, batch: int) -> Costs:
            first = self.epoch_ends[0] - self.started
            second = self.epoch_ends[1] - self.epoch_ends[0]
            step = float(np.mean(self.steps))
            return Costs(
                fixed_seconds=max(first - second, 0.0),
                step_seconds=step * max(scale, 1.0),
                epoch_seconds=max(second - (len(self.steps) + 1) * step - inferred / rate, 0.0),
                inference_images_per_second=rate,
                measured_batch=batch,
            )

    return EpochTimer()


def describe(estimate: Estimate) -> str:
    """One paragraph for the terminal."""
    height, width, channels = estimate.image_shape
    by_method: dict[str, float] = {}
    for name, seconds in estimate.steps.items():  # few labels: "supcon 10%" -> supcon
        method = name.split(" ")[0]
        by_method[method] = by_method.get(method, 0.0) + seconds
    steps = ", ".join(f"{name} {describe_duration(seconds)}" for name, seconds in by_method.items())
    smallest = min(cost.measured_batch for cost in estimate.costs.values())
    scaled = (
        f", timed at batch {smallest} and scaled (errs long)"
        if smallest < (estimate.batch_size)
        else ""
    )
    per_step = ", ".join(_describe_cost(kind, cost) for kind, cost in estimate.costs.items())
    return (
        f"estimated training time on this machine: {describe_duration(estimate.seconds)} ({steps}; "
        f"{estimate.encoder} at {height}x{width}x{channels}, {estimate.train_images:,} training "
        f"images, batch {estimate.batch_size}, {estimate.precision}{scaled}; measured here in "
        f"{estimate.measured_seconds:.0f} s: {per_step}). Ingest, evaluation and task start-up "
        "come on top."
    )


def _describe_cost(kind: str, cost: Costs) -> str:
    if cost.step_seconds == 0 and (cost.cv_seconds_per_row or cost.fit_seconds_per_row):
        return (  # a fitted classifier: a feature pass, then a solve
            f"{kind} features at {cost.inference_images_per_second:,.0f} images/s + "
            f"{1000 * (cost.cv_seconds_per_row + cost.fit_seconds_per_row):.2g} ms a "
            "labelled image"
        )
    return f"{kind} {cost.step_seconds:.3g} s a step + {cost.fixed_seconds:.0f} s set-up"


def describe_duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _source_size(source: str) -> tuple[int, int, tuple[int, ...], int, str] | None:
    """(train images, validation images, (height, width, channels), classes, which cuts
    ingest will still make: "" for an ingested dataset, "validation", or "both" for a source
    without a test split)."""
    from contrastive import storage
    from contrastive.data.images import header_size, sniff_format
    from contrastive.data.sources import ArraySplit, open_source

    if ":" not in source.split("/")[0] or storage.is_gcs(source):
        manifest_path = storage.join(storage.strip_trailing_slash(source), "manifest.json")
        if storage.exists(manifest_path):
            manifest = storage.read_json(manifest_path)
            splits = manifest["splits"]
            train = splits.get("train", {}).get("num_examples", 0)
            validation = splits.get("validation", {}).get("num_examples", 0)
            shape = tuple(manifest["image_shape"])
            return train, validation, shape, int(manifest["num_classes"]), ""
    try:
        opened = open_source(source)
    except Exception:  # the ingest step reports a bad source with its own message
        return None
    train = opened.splits.get("train")
    if train is None:
        return None
    cut = "validation" if "test" in opened.splits else "both"
    classes = len(opened.class_names)
    if isinstance(train, ArraySplit):
        return len(train.labels), 0, tuple(train.images.shape[1:]), classes, cut
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
    shape = (int(np.median(heights)), int(np.median(widths)), 3)
    return len(train.paths), 0, shape, classes, cut


if __name__ == "__main__":  # one measurement in a fresh process: `_measure_fresh`
    import dataclasses
    import json
    import sys

    print(json.dumps(dataclasses.asdict(_measure(json.load(sys.stdin)))), flush=True)
