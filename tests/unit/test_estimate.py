"""`contrastive.estimate`: the training-time estimate printed before a run."""

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from contrastive import estimate
from contrastive.config import resolve_config
from contrastive.estimate import BASELINE, CLASSIFIER, PRETRAIN, Costs, TrainingSet


def _folder(root, sizes):
    for label in ("a", "b"):
        for i, (height, width) in enumerate(sizes):
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


def _costs(step, fixed, rate, **fitted):
    return Costs(
        fixed_seconds=fixed,
        step_seconds=step,
        epoch_seconds=0.5,
        inference_images_per_second=rate,
        measured_batch=32,
        **fitted,
    )


COSTS = {
    PRETRAIN: _costs(0.4, 10.0, 100.0),
    # a linear head's epochs, or a fitted head's cross-validation and fit per labelled row
    CLASSIFIER: _costs(0.1, 4.0, 400.0, cv_seconds_per_row=0.003, fit_seconds_per_row=0.001),
    BASELINE: _costs(0.2, 6.0, 200.0),
}


def _repeats(labelled):
    """`train.probe_repeats: auto`, written out: the folds drawn until 600 held-out
    predictions, at most 5 times."""
    return min(5, max(1, math.ceil(600 / min(labelled, 10_000))))


def _fitted(pool, validation, labelled):
    """A fitted classifier's seconds by the rule, written out: COSTS[CLASSIFIER]'s set-up,
    the features of pool and validation at 400 images/s, cross-validation on at most 10,000
    labelled rows (`_repeats` times), the final fit on all."""
    cv = min(labelled, 10_000) * 0.003 * _repeats(labelled)
    return 4.0 + (pool + validation) / 400 + cv + labelled * 0.001


def test_the_training_set_is_counted_as_ingest_will_cut_it(tmp_path, tiny_dataset):
    _folder(tmp_path / "photos", [(30, 40), (50, 60), (70, 80)] * 10)  # 60 images, 2 classes
    found = estimate.training_set(
        str(tmp_path / "photos"), validation_fraction=0.25, test_fraction=0.5
    )
    # 60 -> 30 after the test cut -> 8 validation, 22 train; the median size
    assert found == TrainingSet(train=22, validation=8, classes=2, image_shape=(50, 60, 3))
    sized = estimate.training_set(str(tmp_path / "photos"), image_size=(64, 48), limit=20)
    assert sized.image_shape == (64, 48, 3) and sized.train == 20
    # an ingested dataset is trained at its stored size and is not cut again
    assert estimate.training_set(tiny_dataset, image_size=(96, 96)) == TrainingSet(
        train=360, validation=40, classes=4, image_shape=(28, 28, 1)
    )
    assert estimate.training_set(str(tmp_path / "missing")) is None


def test_seconds_count_steps_epochs_views_validation_and_knn(monkeypatch):
    seen = {}

    def measure(config, shape, classes, kinds, spreading=0):
        seen.update(
            batch=config.train.batch_size,
            shape=shape,
            classes=classes,
            kinds=kinds,
            spreading=spreading,
        )
        return COSTS

    monkeypatch.setattr(estimate, "measure_costs", measure)
    config = resolve_config(
        "quick",
        overrides=[
            "train.epochs=3",
            "train.classifier_epochs=2",
            "train.knn_max_examples=50",
            "train.classifier_mode=linear",
        ],
        batch_size=32,
    )
    data = TrainingSet(train=100, validation=20, classes=2, image_shape=(16, 16, 3))
    result = estimate.estimate_run(data, config, ["baseline", "supcon", "simclr"])
    assert seen == {
        "batch": 32,
        "shape": (16, 16, 3),
        "classes": 2,
        "kinds": [BASELINE, PRETRAIN, CLASSIFIER],
        "spreading": 0,  # every row labelled: label spreading is not scored
    }
    # ceil(100 / 32) = 4 steps an epoch; validation 20 images (x 2 views in pretraining);
    # the kNN monitor embeds min(100, 50) + min(20, 50) images each pretraining epoch
    baseline = 6 + 5 * (4 * 0.2 + 0.5 + 20 / 200)
    pretrain = 10 + 3 * (4 * 0.4 + 0.5 + (20 * 2 + 70) / 100)
    classifier = 4 + 2 * (4 * 0.1 + 0.5 + 20 / 400)
    assert result.steps == pytest.approx(
        {"baseline": baseline, "supcon": pretrain + classifier, "simclr": pretrain + classifier}
    )
    assert result.seconds == pytest.approx(baseline + 2 * (pretrain + classifier))
    text = estimate.describe(result)
    assert text.startswith("estimated training time on this machine: ~64 s (baseline ~13 s, ")
    assert "small_cnn at 16x16x3, 100 training images, batch 32, " in text
    assert "pretrain 0.4 s a step + 10 s set-up" in text

    # A fitted classifier reads its images once, whatever classifier_epochs says.
    fitted = config.replace({"train.classifier_mode": "fitted"})
    steps = estimate.estimate_run(data, fitted, ["supcon"]).steps
    # (100 labelled rows: the folds drawn 5 times)
    assert steps["supcon"] == pytest.approx(
        pretrain + 4 + 120 / 400 + 5 * 100 * 0.003 + 100 * 0.001
    )
    # past CV_MAX_ROWS labelled rows only the final fit grows
    big = TrainingSet(train=20_000, validation=0, classes=2, image_shape=(16, 16, 3))
    pretrain_big = 10 + 3 * (625 * 0.4 + 0.5 + 50 / 100)  # ceil(20,000 / 32) steps
    assert estimate.estimate_run(big, fitted, ["supcon"]).steps["supcon"] == pytest.approx(
        pretrain_big + _fitted(20_000, 0, 20_000)
    )

    # as the measurement gives it: no steps, its feature rate and its seconds per row
    measured = {**COSTS, CLASSIFIER: _costs(0.0, 0.0, 400.0, cv_seconds_per_row=0.003)}
    monkeypatch.setattr(estimate, "measure_costs", lambda *args, **kwargs: measured)
    text = estimate.describe(estimate.estimate_run(data, fitted, ["supcon"]))
    assert "classifier features at 400 images/s + 3 ms a labelled image" in text

    filled = config.replace({"train.min_steps_per_epoch": 10})  # fitted to small data
    steps = estimate.estimate_run(data, filled, ["baseline"]).steps
    assert steps["baseline"] == pytest.approx(6 + 5 * (10 * 0.2 + 0.5 + 20 / 200))


def test_few_labels_counts_each_fraction_and_simclr_once(monkeypatch):
    seen = []
    monkeypatch.setattr(
        estimate, "measure_costs", lambda *args, spreading: seen.append(spreading) or COSTS
    )
    config = resolve_config(
        "few-labels",
        overrides=["train.knn_max_examples=50", "train.classifier_mode=linear"],
        batch_size=100,
    )  # 4 + 2 epochs, labelled subsets filled to 40 steps
    data = TrainingSet(train=1000, validation=0, classes=10, image_shape=(28, 28, 1))
    steps = estimate.estimate_run(
        data, config, ["baseline", "supcon", "simclr"], labeled_fractions=(0.01, 1.0)
    ).steps

    def fit(kind, epochs, steps, knn=0):
        cost = COSTS[kind]
        return cost.fixed_seconds + epochs * (
            steps * cost.step_seconds + 0.5 + knn / cost.inference_images_per_second
        )

    pretrain = fit(PRETRAIN, 4, 10, knn=50)  # 1000 / 100 = 10 steps, every image
    assert steps == pytest.approx(
        {
            "baseline 1%": fit(BASELINE, 6, 40),  # 10 images repeated to 40 batches
            "supcon 1%": pretrain + fit(CLASSIFIER, 2, 40),
            "simclr 1%": pretrain + fit(CLASSIFIER, 2, 40),
            "baseline 100%": fit(BASELINE, 6, 10),
            "supcon 100%": pretrain + fit(CLASSIFIER, 2, 10),
            "simclr 100%": fit(CLASSIFIER, 2, 10),  # its encoder is the 1 % branch's
        }
    )
    assert seen == [0]  # linear heads: no label spreading to measure
    # Fitted (the default): the classifier embeds the whole pool once at every fraction;
    # with unlabelled rows (1 %) its label-spreading candidates cost a fixed part, a part per
    # pool row and the pool's neighbour graph per pool row squared.
    spreading = {
        "spreading_fixed_seconds": 3.0,
        "spreading_seconds_per_row": 0.002,
        "graph_seconds_per_row_squared": 1e-6,
    }
    costs = {**COSTS, CLASSIFIER: dataclasses.replace(COSTS[CLASSIFIER], **spreading)}
    monkeypatch.setattr(
        estimate, "measure_costs", lambda *args, spreading: seen.append(spreading) or costs
    )
    fitted = config.replace({"train.classifier_mode": "fitted"})
    steps = estimate.estimate_run(
        data, fitted, ["supcon", "random_init"], labeled_fractions=(0.01, 1.0)
    ).steps
    assert seen == [0, 1000]  # the pool it is timed at, at most
    untrained = COSTS[PRETRAIN].fixed_seconds  # the control's encoder is built and saved
    # (1 % of 1,000 = 10 labelled rows: the folds drawn 5 times, the graph built once)
    spread = 5 * (3.0 + 1000 * 0.002) + 1000**2 * 1e-6
    assert steps == pytest.approx(
        {
            "supcon 1%": pretrain + _fitted(1000, 0, 10) + spread,
            "random_init 1%": untrained + _fitted(1000, 0, 10) + spread,
            "supcon 100%": pretrain + _fitted(1000, 0, 1000),
            "random_init 100%": untrained + _fitted(1000, 0, 1000),
        }
    )
    # One labelled fraction set for the whole run: its subset, priced the same way.
    single = fitted.replace({"train.labeled_fractions": (), "train.labeled_fraction": 0.01})
    steps = estimate.estimate_run(data, single, ["supcon", "baseline"]).steps
    assert seen == [0, 1000, 1000]
    assert steps == pytest.approx(
        {"supcon": pretrain + _fitted(1000, 0, 10) + spread, "baseline": fit(BASELINE, 6, 40)}
    )
    # Self-distillation after the fitted head: a student trained like the baseline on the
    # whole pool for distill_epochs, where the pool has unlabelled rows; the baseline's step
    # is measured for it even in a run without the baseline.
    kinds = []
    monkeypatch.setattr(
        estimate,
        "measure_costs",
        lambda config, shape, classes, measured, spreading: kinds.append(list(measured)) or costs,
    )
    distilled = fitted.replace({"train.distill_epochs": 3})
    steps = estimate.estimate_run(data, distilled, ["supcon"], labeled_fractions=(0.01, 1.0)).steps
    assert kinds == [[PRETRAIN, CLASSIFIER, BASELINE]]
    assert steps == pytest.approx(
        {
            "supcon 1%": pretrain + _fitted(1000, 0, 10) + spread + fit(BASELINE, 3, 10),
            "supcon 100%": pretrain + _fitted(1000, 0, 1000),
        }
    )


def test_spreading_costs_separate_fixed_per_row_and_graph(monkeypatch):
    """`measure_spreading` reads the selection's timings at two pool sizes: an affine part
    (fixed + per row) and the graph's part per row squared, recovered exactly."""
    from contrastive.training import probe

    calls = []

    def timed(features, labels, num_classes, *, candidates, folds):
        pool = len(labels)
        calls.append((features.shape, int((labels >= 0).sum()), tuple(candidates), folds))
        timings = {"standardize": 9.0, "pca": 9.0, "graph": 2e-7 * pool**2, "ridge": 9.0}
        timings.update({name: 1.0 + 0.001 * pool for name in candidates})
        return probe.FittedClassifier("ridge", None, None, selection={"cv_timings": timings})

    monkeypatch.setattr(probe, "select_classifier", timed)
    costs = estimate.measure_spreading(
        64, 4, ("ridge", "label_spreading", "spread_ridge"), folds=3, pools=(100, 400)
    )
    # two spreading candidates: 2 * (1 + 0.001 n); ridge, the PCA and the standardisation
    # are in the measurement with every row labelled, not here
    assert costs == pytest.approx(
        {
            "spreading_fixed_seconds": 2.0,
            "spreading_seconds_per_row": 0.002,
            "graph_seconds_per_row_squared": 2e-7,
        }
    )
    assert calls == [
        ((100, 64), 10, ("label_spreading", "spread_ridge"), 3),
        ((400, 64), 40, ("label_spreading", "spread_ridge"), 3),
    ]
    assert estimate.measure_spreading(64, 4, ("ridge", "knn")) == {}


def test_spreading_is_timed_at_pools_no_larger_than_the_runs():
    assert estimate.spreading_pools(20_000) == (1000, 4000)
    assert estimate.spreading_pools(1_000) == (250, 1000)
    assert estimate.spreading_pools(40) == (25, 100)  # enough rows for the folds


def test_spreading_is_measured_on_this_machine():
    costs = estimate.measure_spreading(32, 3, ("label_spreading",), folds=2, pools=(300, 900))
    assert costs["graph_seconds_per_row_squared"] > 0
    assert costs["spreading_fixed_seconds"] + 900 * costs["spreading_seconds_per_row"] > 0


@pytest.mark.backend
@pytest.mark.slow
def test_costs_are_measured_through_the_training_entry_points():
    config = resolve_config("tiny", batch_size=4)
    kinds = [BASELINE, CLASSIFIER, PRETRAIN]
    costs = estimate.measure_costs(config, (16, 16, 1), 3, kinds, fresh=False)
    assert list(costs) == [PRETRAIN, CLASSIFIER, BASELINE]  # the encoder first
    for kind, cost in costs.items():
        assert cost.measured_batch == 4
        assert cost.inference_images_per_second > 0 and cost.epoch_seconds >= 0
        if kind == CLASSIFIER:  # fitted (tiny's mode): no steps; its selection timed per row
            assert cost.step_seconds == 0 and cost.cv_seconds_per_row > 0
            assert cost.fit_seconds_per_row > 0 and cost.fixed_seconds >= 0
        else:
            assert cost.step_seconds > 0 and cost.fixed_seconds > 0
            assert cost.cv_seconds_per_row == cost.fit_seconds_per_row == 0
    with pytest.raises(ValueError, match="measure PRETRAIN before CLASSIFIER"):
        estimate.measure_costs(config, (16, 16, 1), 3, [CLASSIFIER], fresh=False)


@pytest.mark.slow
def test_each_kind_is_measured_in_a_fresh_process(monkeypatch):
    """As kfp.local runs each task: a process's first model pays what later ones reuse."""
    pids = []
    real = estimate._measure_fresh
    monkeypatch.setattr(estimate, "_measure_fresh", lambda r: pids.append(r["kind"]) or real(r))
    config = resolve_config("tiny", batch_size=4)
    costs = estimate.measure_costs(config, (16, 16, 1), 3, [BASELINE])
    assert pids == [BASELINE] and costs[BASELINE].step_seconds > 0
    monkeypatch.setattr(estimate, "_measure_fresh", real)
    with pytest.raises(RuntimeError, match="measuring the baseline step failed: .*Error"):
        estimate._measure_fresh({"kind": BASELINE, "config": {"nope": 1}})


def test_a_slow_model_is_timed_at_a_smaller_batch_and_said_so(monkeypatch):
    import time

    class Encoder:
        def __init__(self, seconds):
            self.seconds = seconds

        def predict_on_batch(self, images):
            time.sleep(self.seconds)

    from contrastive import models

    config = resolve_config("quick", batch_size=64)  # 2 views: a step ~ 6 forward passes
    monkeypatch.setattr(models, "build_encoder", lambda *a, **k: Encoder(0.05))
    # a step of 64: 6 x 0.05 s / 8 x 64 = 2.4 s; 4 s of steps: 2 -> the least, 8
    assert estimate._measured_batch(config, (8, 8, 1)) == (64, estimate.MIN_STEPS)
    monkeypatch.setattr(models, "build_encoder", lambda *a, **k: Encoder(0.2))
    assert estimate._measured_batch(config, (8, 8, 1)) == (32, 8)  # 9.6 s: 5 s fit 33 images
    monkeypatch.setattr(models, "build_encoder", lambda *a, **k: Encoder(0.001))
    # a step of 64: 6 x 0.001 / 8 x 64 = 0.048 s -> 4 s / 0.048 = 84 steps, at most 32
    assert estimate._measured_batch(config, (8, 8, 1)) == (64, estimate.MAX_STEPS)
    costs = {kind: Costs(1.0, 1.0, 0.0, 10.0, 32) for kind in (BASELINE,)}
    text = estimate.describe(
        estimate.Estimate("resnet18", (8, 8, 1), 100, 64, "bfloat16", costs, {"baseline": 9}, 1)
    )
    assert "batch 64, bfloat16, timed at batch 32 and scaled (errs long);" in text
