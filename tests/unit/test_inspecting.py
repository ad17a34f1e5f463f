"""The steps in the encoder's space (`contrastive.tasks.inspecting`) on a small separable set
with known flipped labels: explanations and suspects against an in-memory recomputation, and
the drift check's decisions through a real registry."""

import csv
import json

import numpy as np
import pytest

from contrastive import data, tasks
from contrastive.config import resolve_config
from contrastive.run_parameters import training_config
from contrastive.tasks import inspecting
from tests.conftest import separable_images

pytestmark = pytest.mark.slow  # `noisy` trains a baseline
# The explain step reads features through the model on each backend; the drift check's
# decisions and registry records are NumPy and files over those same features, so it runs on
# the TensorFlow pass only (17 s of the JAX pass).
TIE = 1e-6  # cosine similarities this close are a tie for a float32 search
FLIPPED = 8  # the first 8 training images of the source get the next class's label


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A separable set whose first `FLIPPED` training labels are wrong, ingested, with a
    baseline classifier trained on it and its evaluation."""
    root = tmp_path_factory.mktemp("noisy")
    x, y = separable_images(100, seed=1)
    x_test, y_test = separable_images(25, seed=2)
    y = y.copy()
    y[:FLIPPED] = (y[:FLIPPED] + 1) % 4
    np.savez(root / "noisy.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    dataset = str(root / "dataset")
    data.ingest(f"npz:{root / 'noisy.npz'}", dataset, validation_fraction=0.1, progress=False)
    config = resolve_config("tiny", overrides=["data.limit=null"], epochs=2, classifier_epochs=2)
    tasks.run_train_baseline(dataset, root / "model", config)
    evaluation = root / "evaluation.json"
    evaluation.write_text(json.dumps(tasks.run_evaluate(dataset, root / "model")))
    return {
        "root": root,
        "dataset": dataset,
        "candidates": {"baseline": (str(evaluation), str(root / "model"))},
        "flipped": {f"train/{i}" for i in range(FLIPPED)},
        "x_test": x_test,
        "y_test": y_test,
    }


def _explain(noisy, name, **settings):
    root = noisy["root"]
    return inspecting.run_explain_neighbours(
        noisy["dataset"],
        noisy["candidates"],
        output_path=root / f"{name}.json",
        suspects_path=root / f"{name}.csv",
        settings=inspecting.NeighbourSettings(**settings),
    )


@pytest.mark.backend
def test_suspects_are_the_flipped_training_labels(noisy):
    result = _explain(noisy, "explained")
    train_ids = {row_id for row_id in _ids(noisy["dataset"], "train")}
    flipped = noisy["flipped"] & train_ids
    with open(noisy["root"] / "explained.csv") as file:
        rows = list(csv.DictReader(file))
    assert {row["id"] for row in rows} == flipped
    assert result["suspects"]["count"] == len(flipped) and result["suspects"]["checked"] == 360
    for row in rows:  # the source names the npz entry, the suggested label is the true one
        position = int(row["id"].split("/")[1])
        assert row["source_path"].endswith(f"noisy.npz:x_train[{position}]")
        assert int(row["suggested"]) == (int(row["label"]) - 1) % 4
    assert len(result["suspects"]["top"]) == len(flipped)
    assert all(
        s["thumbnail"].startswith("data:image/png;base64,") for s in result["suspects"]["top"]
    )


@pytest.mark.backend
@pytest.mark.parametrize("neighbour_dim", [256, 6])  # the 128-d features themselves; 6 directions
def test_agreement_and_mistakes_match_an_in_memory_recomputation(noisy, neighbour_dim):
    from contrastive import training
    from contrastive.modeldir import load_model_dir
    from contrastive.models import find_encoder

    result = _explain(noisy, f"explained-{neighbour_dim}", neighbour_dim=neighbour_dim)
    model, _ = load_model_dir(noisy["candidates"]["baseline"][1])
    encoder = find_encoder(model)
    x_train, y_train = data.load_arrays(noisy["dataset"], "train")
    x_test, y_test = data.load_arrays(noisy["dataset"], "test")
    reference = training.embed(encoder, x_train).astype(np.float64)
    query = training.embed(encoder, x_test).astype(np.float64)
    assert result["reference"]["dim"] == reference.shape[1] == 128
    assert result["reference"]["neighbour_dim"] == min(neighbour_dim, 128)
    if neighbour_dim < reference.shape[1]:  # the leading right singular vectors (NumPy's SVD)
        directions = np.linalg.svd(reference, full_matrices=False)[2][:neighbour_dim].T
        reference, query = reference @ directions, query @ directions
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    similarity = query / np.linalg.norm(query, axis=1, keepdims=True) @ unit.T
    # The step searches in float32: a neighbour within TIE of the nearest may be the one it
    # finds (seen once, at XLA's optimisation level 0), so a test image whose near-ties
    # disagree on the label counts as agreeing at most, and as disagreeing at least.
    near = similarity >= similarity.max(axis=1, keepdims=True) - TIE
    same_label = y_train[None, :] == y_test[:, None]
    agree_all, agree_any = (same_label | ~near).all(axis=1), (same_label & near).any(axis=1)
    assert int((agree_all != agree_any).sum()) <= 3  # undecided images stay rare: a sharp check
    for c, value in enumerate(result["agreement"]["per_class"]):
        low, high = agree_all[y_test == c].mean(), agree_any[y_test == c].mean()
        assert low - 1e-9 <= value <= high + 1e-9, (c, value, low, high)
    assert agree_all.mean() - 1e-9 <= result["agreement"]["overall"] <= agree_any.mean() + 1e-9
    probabilities = training.predict_proba(model, x_test)
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != y_test)
    order = wrong[np.lexsort((wrong, -probabilities.max(axis=1)[wrong]))][:8]
    assert [m["position"] for m in result["mistakes"]] == order.tolist()
    for mistake in result["mistakes"]:
        assert len(mistake["neighbours"]) == 5
        labels = [n["label"] for n in mistake["neighbours"]]
        ids = {n["id"] for n in mistake["neighbours"]}
        assert all(n["thumbnail"] for n in mistake["neighbours"]) and len(ids) == 5
        assert all(0 <= label < 4 for label in labels)


@pytest.mark.backend
def test_the_reference_is_a_bounded_sample(noisy):
    result = _explain(noisy, "bounded", max_reference=100, mistakes=2, shown_suspects=1)
    assert result["reference"] == {"examples": 100, "seen": 360, "dim": 128, "neighbour_dim": 128}
    assert result["suspects"]["checked"] == 100 and len(result["suspects"]["top"]) <= 1
    assert len(result["mistakes"]) <= 2


def _ids(dataset, split):
    for _, _, ids in data.read_split(dataset, split, 512, with_ids=True).as_numpy_iterator():
        yield from (value.decode() for value in ids)


def _check(noisy, dataset, registry, run_id, policy, **shortcuts):
    return tasks.run_check_drift(
        dataset,
        registry=str(registry),
        retrain_when=policy,
        run_id=run_id,
        config=training_config("tiny", **shortcuts),
        methods=["baseline"],
        drift_path=noisy["root"] / f"{run_id}-drift.json",
    )


def test_drift_check_decides_and_records_through_the_registry(noisy):
    from contrastive.registry import ModelRegistry

    root, dataset = noisy["root"], noisy["dataset"]
    registry = root / "registry"
    first = _check(noisy, dataset, registry, "run-1", "changed")
    assert (
        first["decision"] == "train" and first["not_measured"] == "no champion yet in the registry"
    )
    tasks.run_compare_and_report(
        dataset,
        noisy["candidates"],
        report_path=root / "run-1" / "report.html",
        markdown_path=root / "run-1" / "report.md",
        results_path=root / "run-1" / "results.json",
        registry=str(registry),
        run_id="run-1",
        drift_path=root / "run-1-drift.json",
    )
    reference = inspecting.read_drift_reference(ModelRegistry(registry).champion_model_dir())
    assert reference["meta"]["fingerprints"] == first["fingerprints"]
    assert reference["features"].shape[0] == 360 == reference["labels"].shape[0]

    same = _check(noisy, dataset, registry, "run-2", "changed")
    assert same["decision"] == "skip" and same["drift_found"] is False
    assert same["test"]["sizes"] == [360, 360] and same["test"]["p_value"] > 0.5
    recorded = ModelRegistry(registry).decision("run-2")
    assert recorded["outcome"] == "skipped" and recorded["reason"] == same["reason"]
    assert "null" not in recorded["drift"]["test"]  # the record keeps figures, not arrays

    assert _check(noisy, dataset, registry, "run-3", "always")["decision"] == "train"
    changed = _check(noisy, dataset, registry, "run-4", "changed", epochs=3)
    assert changed["decision"] == "train" and "configuration changed" in changed["reason"]
    assert ModelRegistry(registry).decision("run-4") is None  # a run that trains: the gate's

    darker = root / "darker.npz"
    with np.load(root / "noisy.npz") as source:
        np.savez(darker, **{**source, "x_train": (source["x_train"] // 2).astype(np.uint8)})
    shifted = str(root / "darker")
    data.ingest(f"npz:{darker}", shifted, validation_fraction=0.1, progress=False)
    moved = _check(noisy, shifted, registry, "run-5", "drifted")
    assert moved["decision"] == "train" and moved["drift_found"] is True
    assert moved["test"]["p_value"] < 0.01 and "drift found" in moved["reason"]
    assert moved["fingerprints"]["data"] != first["fingerprints"]["data"]
