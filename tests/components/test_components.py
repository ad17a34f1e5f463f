"""Each component's logic through `python_func`, artifacts in a temp dir, chained as the DAG
chains them (no KFP runtime): ingest -> pretrain -> classifier -> evaluate -> compare."""

import json
import os

import pytest
from kfp import dsl

import components

C = components.build("contrastive:test")
PROFILE = "tiny"


def _artifact(kind, path):
    return kind(uri=str(path))


@pytest.fixture(scope="module")
def chain(separable_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    out = {"root": root}
    dataset = _artifact(dsl.Dataset, root / "dataset")
    out["num_classes"] = C.ingest_data.python_func(
        dataset=dataset,
        source=f"npz:{separable_npz}",
        validation_fraction=0.1,
        data_snapshot="2026-11-22",
    )
    out["dataset"] = dataset
    encoder = _artifact(dsl.Model, root / "encoder")
    out["pretrain_metrics"] = _artifact(dsl.Metrics, root / "pretrain_metrics")
    C.pretrain_encoder.python_func(
        dataset=dataset,
        encoder_model=encoder,
        metrics=out["pretrain_metrics"],
        method="supcon",
        profile=PROFILE,
        epochs=2,
    )
    out["encoder"] = encoder
    model = _artifact(dsl.Model, root / "classifier")
    out["classifier_metrics"] = _artifact(dsl.Metrics, root / "classifier_metrics")
    C.train_classifier.python_func(
        dataset=dataset,
        encoder_model=encoder,
        model=model,
        metrics=out["classifier_metrics"],
        mode="linear",
        profile=PROFILE,
        classifier_epochs=4,
        tensorboard_root=str(root / "tensorboard"),
        tensorboard_name="classifier-supcon",
    )
    out["model"] = model
    baseline = _artifact(dsl.Model, root / "baseline")
    # What Vertex sets for a step that has a TensorBoard: it wins over tensorboard_root.
    os.environ["AIP_TENSORBOARD_LOG_DIR"] = str(root / "aip-tensorboard")
    try:
        C.train_baseline.python_func(
            dataset=dataset,
            model=baseline,
            metrics=_artifact(dsl.Metrics, root / "bm"),
            profile=PROFILE,
            epochs=2,
            classifier_epochs=2,
            tensorboard_root=str(root / "tensorboard"),
        )
    finally:
        del os.environ["AIP_TENSORBOARD_LOG_DIR"]
    out["baseline"] = baseline
    for name, trained in (("supcon", model), ("baseline", baseline)):
        evaluation = _artifact(dsl.Artifact, root / f"{name}_evaluation.json")
        metrics = _artifact(dsl.Metrics, root / f"{name}_eval_metrics")
        confusion = _artifact(dsl.ClassificationMetrics, root / f"{name}_confusion")
        out[f"{name}_accuracy"] = C.evaluate_classifier.python_func(
            dataset=dataset,
            model=trained,
            metrics=metrics,
            classification_metrics=confusion,
            predictions=_artifact(dsl.Dataset, root / f"{name}_predictions.parquet"),
            evaluation=evaluation,
        )
        out[f"{name}_evaluation"], out[f"{name}_eval_metrics"] = evaluation, metrics
        out[f"{name}_confusion"] = confusion
    return out


@pytest.mark.slow
def test_ingest_component_writes_a_committed_dataset(chain):
    dataset = chain["dataset"]
    manifest = json.loads((chain["root"] / "dataset" / "manifest.json").read_text())
    assert chain["num_classes"] == 4 == manifest["num_classes"]
    assert dataset.metadata["splits"] == {"train": 360, "validation": 40, "test": 100}
    assert dataset.metadata["data_snapshot"] == "2026-11-22"


@pytest.mark.slow
def test_pretrain_component_writes_a_complete_encoder_and_metrics(chain):
    encoder_dir = chain["root"] / "encoder"
    assert (encoder_dir / "COMPLETE").is_file() and (encoder_dir / "model.keras").is_file()
    assert not (encoder_dir / "checkpoints").exists()
    metrics = chain["pretrain_metrics"].metadata
    assert metrics["epochs"] == 2
    # kNN on the separable set (chance 0.25): 1.00 measured; a collapsed encoder scores ~0.25.
    assert metrics["knn_accuracy"] >= 0.9, metrics
    # the last epoch's loss, as the encoder's history holds it
    history = json.loads((encoder_dir / "history.json").read_text())["pretrain"]
    assert len(history["loss"]) == 2 and metrics["final_loss"] == history["loss"][-1] > 0
    assert chain["encoder"].metadata["method"] == "supcon"


def _epoch_scalars(log_dir, tag):
    """Per-epoch values of a scalar that keras.callbacks.TensorBoard wrote under `log_dir`."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_dir", "log_dir", "history_key"),
    [
        ("encoder", "encoder/tensorboard", "pretrain"),  # default: inside the step's output
        ("classifier", "tensorboard/classifier-supcon", "classifier"),  # tensorboard_root
        ("baseline", "aip-tensorboard", "classifier"),  # AIP_TENSORBOARD_LOG_DIR
    ],
)
def test_training_components_write_tensorboard_logs(chain, model_dir, log_dir, history_key):
    history = json.loads((chain["root"] / model_dir / "history.json").read_text())[history_key]
    logged = _epoch_scalars(chain["root"] / log_dir / "train", "epoch_loss")
    assert logged == pytest.approx(history["loss"], rel=1e-6)
    if "val_loss" in history:
        validation = _epoch_scalars(chain["root"] / log_dir / "validation", "epoch_loss")
        assert validation == pytest.approx(history["val_loss"], rel=1e-6)
    # The classifier's logs went to the root, the baseline's to AIP_TENSORBOARD_LOG_DIR only.
    assert not (chain["root"] / "tensorboard" / "train-baseline").exists()
    assert not (chain["root"] / "baseline" / "tensorboard").exists()


@pytest.mark.slow
def test_evaluate_component_logs_accuracy_and_confusion_matrix(chain):
    accuracy = chain["supcon_accuracy"]
    assert accuracy == pytest.approx(chain["supcon_eval_metrics"].metadata["accuracy"])
    # 4 separable classes, chance 0.25; measured with seeds 0, 1, 2 (the components' `seed`):
    # supcon 1.00 / 1.00 / 1.00, baseline 1.00 / 1.00 / 1.00.
    assert accuracy >= 0.7 and chain["baseline_accuracy"] >= 0.9
    matrix = chain["supcon_confusion"].metadata["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["0", "1", "2", "3"]
    rows = [row["row"] for row in matrix["rows"]]
    assert sum(map(sum, rows)) == 100
    assert accuracy == pytest.approx(sum(rows[i][i] for i in range(4)) / 100)
    result = json.loads((chain["root"] / "supcon_evaluation.json").read_text())
    assert result["num_examples"] == 100 and len(result["embedding_2d"]["x"]) == 100
    import pyarrow.parquet as pq

    predictions = pq.read_table(chain["root"] / "supcon_predictions.parquet")
    assert predictions.num_rows == 100
    assert set(predictions.column_names) >= {"label", "predicted", "probabilities"}
    labels, predicted = predictions["label"].to_pylist(), predictions["predicted"].to_pylist()
    assert accuracy == pytest.approx(sum(map(int.__eq__, labels, predicted)) / 100)


@pytest.mark.slow
def test_compare_component_picks_the_best_and_gates_against_the_registry(chain, tmp_path):
    report = _artifact(dsl.HTML, tmp_path / "report.html")
    summary = _artifact(dsl.Markdown, tmp_path / "summary.md")
    results = _artifact(dsl.Artifact, tmp_path / "results.json")
    decision = _artifact(dsl.Metrics, tmp_path / "decision")
    registry = tmp_path / "registry"
    # Written for the two methods this chain trained: their inputs, no others.
    written = components.build("contrastive:test", ["supcon", "baseline"])
    drift = _artifact(dsl.Artifact, tmp_path / "drift.json")
    drift_metrics = _artifact(dsl.Metrics, tmp_path / "drift_metrics")
    checked = C.check_drift.python_func(
        dataset=chain["dataset"],
        drift=drift,
        metrics=drift_metrics,
        registry=str(registry),
        retrain_when="changed",
        run_id="run-1",
        methods="baseline,supcon",
        profile=PROFILE,
    )
    assert checked == "train" and drift_metrics.metadata == {"retrained": 1.0}
    neighbours = _artifact(dsl.Artifact, tmp_path / "neighbours.json")
    suspects = _artifact(dsl.Dataset, tmp_path / "suspect_labels")
    count = written.explain_neighbours.python_func(
        dataset=chain["dataset"],
        neighbours=neighbours,
        suspect_labels=suspects,
        supcon_evaluation=chain["supcon_evaluation"],
        supcon_model=chain["model"],
        baseline_evaluation=chain["baseline_evaluation"],
        baseline_model=chain["baseline"],
    )
    lines = (tmp_path / "suspect_labels").read_text().splitlines()
    assert len(lines) == 1 + count and suspects.metadata["count"] == count
    compare = written.compare_and_report
    branch_inputs = [name for name in compare.component_spec.inputs if "_" in name][:4]
    assert branch_inputs == [
        "supcon_evaluation",
        "supcon_model",
        "baseline_evaluation",
        "baseline_model",
    ]
    assert not any(name.startswith(("simclr", "npairs")) for name in compare.component_spec.inputs)
    explain_inputs = written.explain_neighbours.component_spec.inputs
    assert [name for name in explain_inputs if name != "dataset"] == branch_inputs
    best = compare.python_func(
        dataset=chain["dataset"],
        report=report,
        summary=summary,
        results=results,
        decision=decision,
        supcon_evaluation=chain["supcon_evaluation"],
        supcon_model=chain["model"],
        baseline_evaluation=chain["baseline_evaluation"],
        baseline_model=chain["baseline"],
        neighbours=neighbours,
        drift=drift,
        registry=str(registry),
        run_id="run-1",
    )
    top = max(chain["supcon_accuracy"], chain["baseline_accuracy"])
    assert best in {m for m in ("supcon", "baseline") if chain[f"{m}_accuracy"] == top}
    html = (tmp_path / "report.html").read_text()
    assert "supcon" in html and "baseline" in html and "<table" in html
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["best"] == best and saved["decision"]["promoted"] is True
    assert decision.metadata["promoted"] == 1.0
    assert saved["profile"] == PROFILE  # the config comes from the evaluated models
    champion = json.loads((registry / "champion.json").read_text())
    assert champion["run_id"] == "run-1"
    version = registry / "versions" / "run-1"
    assert (version / "COMPLETE").is_file() and (version / "model.keras").is_file()
    assert (version / "saved_model" / "saved_model.pb").is_file()  # serving export
    assert (version / "drift_reference.npz").is_file()
    assert saved["neighbours"]["method"] == best and saved["drift"]["decision"] == "train"
    assert decision.metadata["suspect_labels"] == count and "retrained" in decision.metadata
    for section in ("explanations", "suspect-labels", "drift"):
        assert f'<section id="{section}">' in html
    again = C.check_drift.python_func(  # the same data and code against the new champion
        dataset=chain["dataset"],
        drift=_artifact(dsl.Artifact, tmp_path / "drift2.json"),
        metrics=_artifact(dsl.Metrics, tmp_path / "drift2_metrics"),
        registry=str(registry),
        retrain_when="changed",
        run_id="run-2",
        methods="baseline,supcon",
        profile=PROFILE,
    )
    assert again == "skip"
    assert json.loads((registry / "decisions" / "run-2.json").read_text())["outcome"] == "skipped"


@pytest.mark.slow
def test_components_refuse_an_incomplete_model(chain, tmp_path):
    from contrastive.modeldir import ModelIncompleteError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"partial")
    with pytest.raises(ModelIncompleteError, match="incomplete"):
        C.evaluate_classifier.python_func(
            dataset=chain["dataset"],
            model=_artifact(dsl.Model, broken),
            metrics=_artifact(dsl.Metrics, tmp_path / "m"),
            classification_metrics=_artifact(dsl.ClassificationMetrics, tmp_path / "c"),
            predictions=_artifact(dsl.Dataset, tmp_path / "p.parquet"),
            evaluation=_artifact(dsl.Artifact, tmp_path / "e.json"),
        )


def test_component_bodies_are_thin():
    import inspect

    for function in (*components.FUNCTIONS, *components.BRANCH_TEMPLATES):
        lines = inspect.getsource(function).splitlines()
        body = [line for line in lines if line.strip() and not line.strip().startswith("#")]
        signature_end = next(i for i, line in enumerate(body) if line.rstrip().endswith(":"))
        assert len(body) - signature_end - 1 <= 30, function.__name__
        assert "import contrastive" in inspect.getsource(function) or (
            "from contrastive" in inspect.getsource(function)
        )


@pytest.mark.slow
def test_ingest_component_uses_an_ingested_dataset_as_it_is(chain, tmp_path):
    copy = _artifact(dsl.Dataset, tmp_path / "copy")
    source = chain["dataset"].path
    num_classes = C.ingest_data.python_func(dataset=copy, source=source, profile=PROFILE)
    assert num_classes == chain["num_classes"]
    manifest = json.loads(open(os.path.join(source, "manifest.json")).read())
    copied = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    # The same dataset, committed by the copy (its own writer, its origin recorded).
    assert copied.pop("copied_from") == source and copied.pop("writer") != manifest.pop("writer")
    assert copied == manifest
    assert copy.metadata["image_shape"] == manifest["image_shape"]
    assert copy.metadata["class_names"] == manifest["class_names"]


def test_ingest_component_takes_the_image_size_from_the_profile_overrides(tmp_path):
    from PIL import Image

    for label, colour in enumerate(("red", "blue")):
        for i, size in enumerate(((30, 20), (50, 40), (20, 60))):
            path = tmp_path / "photos" / f"c{label}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, colour).save(path)
    dataset = _artifact(dsl.Dataset, tmp_path / "dataset")
    C.ingest_data.python_func(
        dataset=dataset,
        source=str(tmp_path / "photos"),
        profile=PROFILE,
        overrides='{"train.epochs": 2, "data.image_size": [12, 16]}',
        validation_fraction=0.0,
        test_fraction=0.0,
    )
    assert dataset.metadata["image_shape"] == [12, 16, 3]
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    assert manifest["resize"]["chosen"] == "given" and manifest["resize"]["resized"] == 6
    # the pipeline parameter wins over the profile
    C.ingest_data.python_func(
        dataset=_artifact(dsl.Dataset, tmp_path / "d2"),
        source=str(tmp_path / "photos"),
        profile=PROFILE,
        overrides='{"data.image_size": [12, 16]}',
        image_size="8,8",
        validation_fraction=0.0,
        test_fraction=0.0,
    )
    assert json.loads((tmp_path / "d2" / "manifest.json").read_text())["image_shape"] == [8, 8, 3]
