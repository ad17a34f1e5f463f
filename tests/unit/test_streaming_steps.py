"""Every pipeline step streams its splits: none loads a whole split into memory.

The steps run in this process with the in-memory loaders replaced by ones that fail on a
whole split, and with every `read_split` call recorded: a step that loaded a split into
NumPy (or cached one in memory) fails here. `bench/bench_memory.py` measures the result:
peak RSS of a pretraining epoch flat in the dataset size (docs/BENCHMARKS.md).
"""

import json

import pytest

from contrastive import data, tasks, training
from contrastive.modeldir import load_model_dir
from tests.streaming_guard import whole_split_guard

# The steps feed tf.data to Keras: on the JAX backend too (Keras' tf.data adapter).
pytestmark = pytest.mark.backend


@pytest.fixture
def guarded(tiny_dataset):
    """Forbid whole-split loads; return the list of `read_split` calls `(split, options)`."""
    with whole_split_guard(tiny_dataset) as calls:
        yield calls


def test_no_step_loads_a_whole_split(trained_models, guarded, tiny_dataset, tmp_path):
    """`trained_models` pretrained, fitted the classifier and trained the baseline inside the
    guard (tests/conftest.py); the other steps run inside it here."""
    config = trained_models.config
    encoder, classifier, baseline = (
        trained_models[name] for name in ("encoder", "classifier", "baseline")
    )
    # the kNN figure is the saved encoder's on the bounded sample (16 train, 16 validation)
    sample = data.knn_sample(tiny_dataset, 16)
    expected = training.sample_knn_accuracy(
        load_model_dir(encoder)[0],
        sample,
        k=config.train.knn_k,
        temperature=config.train.knn_temperature,
    )
    assert trained_models.pretrained["knn_accuracy"] == expected and len(sample[3]) == 16
    train_reads = [options for split, _, options in trained_models.reads if split == "train"]
    assert train_reads and train_reads[0]["shuffle"] is True
    assert train_reads[0]["shuffle_buffer"] == config.data.shuffle_buffer
    results = {}
    for name, model in (("supcon", classifier), ("baseline", baseline)):
        result = tasks.run_evaluate(
            tiny_dataset, model, predictions_path=tmp_path / f"{name}.parquet", batch_size=32
        )
        assert result["num_examples"] == 100
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(result))
        results[name] = (str(path), str(model))
    registry = tmp_path / "registry"
    summaries = []
    neighbours = tmp_path / "neighbours.json"
    tasks.run_explain_neighbours(
        tiny_dataset, results, output_path=neighbours, suspects_path=tmp_path / "suspects.csv"
    )
    for run_id in ("first", "second"):  # the second run re-evaluates the champion
        drift = tasks.run_check_drift(  # the second compares with the first's drift reference
            tiny_dataset,
            registry=str(registry),
            retrain_when="always",
            run_id=run_id,
            config=config,
            drift_path=tmp_path / f"{run_id}-drift.json",
        )
        summary = tasks.run_compare_and_report(
            tiny_dataset,
            results,
            report_path=tmp_path / run_id / "report.html",
            markdown_path=tmp_path / run_id / "report.md",
            results_path=tmp_path / run_id / "results.json",
            registry=str(registry),
            run_id=run_id,
            neighbours_path=neighbours,
            drift_path=tmp_path / f"{run_id}-drift.json",
        )
        summaries.append(summary["decision"])
    # the champion (the first run's promoted model) re-evaluated on the test split, streamed
    assert summaries[0]["promoted"] and summaries[0]["champion_accuracy"] is None
    assert summaries[1]["champion_accuracy"] == summaries[0]["candidate_accuracy"]
    assert drift["test"] is not None and summary["drift"]["test"]["p_value"] > 0
    read = {split for split, _, _ in (*trained_models.reads, *guarded)}
    assert read >= {"train", "validation", "test"}


def test_the_guard_catches_a_whole_split_load(guarded, tiny_dataset):
    with pytest.raises(AssertionError, match="load_arrays on the whole test split"):
        data.load_arrays(tiny_dataset, "test")
    with pytest.raises(AssertionError, match="load_training_data loads whole splits"):
        data.load_training_data(tiny_dataset)


def test_evaluation_streams_batch_by_batch_to_the_same_result(
    tiny_dataset, trained_models, tmp_path
):
    """Streamed evaluation (padded last batch, per-batch confusion and Parquet row groups)
    equals the whole-split computation."""
    import numpy as np
    import pyarrow.parquet as pq

    from contrastive import evaluation

    baseline = trained_models["baseline"]
    result = tasks.run_evaluate(
        tiny_dataset, baseline, predictions_path=tmp_path / "p.parquet", batch_size=32
    )
    model, _ = load_model_dir(baseline)
    x, y = data.load_arrays(tiny_dataset, "test")
    probabilities = training.predict_proba(model, x, batch_size=32)
    expected = evaluation.classification_metrics(y, probabilities.argmax(axis=1), 4)
    assert result["confusion_matrix"] == expected["confusion_matrix"]
    table = pq.read_table(tmp_path / "p.parquet").to_pydict()
    assert table["index"] == list(range(100)) and table["label"] == y.tolist()
    np.testing.assert_allclose(np.array(table["probabilities"]), probabilities, atol=1e-5)
