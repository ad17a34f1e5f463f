"""Training steps that write their model directory to an object store and read their inputs
there: gs:// (gcp-storage-emulator, through google-cloud-storage) and ram:// (a `tf.io.gfile`
filesystem, the path any other scheme takes). What a TrainJob's pods do with the pipeline's
artifact URIs."""

import json

import pytest

from contrastive import modeldir, storage, tasks
from contrastive.config import resolve_config

PROFILE = "tiny"


@pytest.mark.slow
def test_pretrain_and_classifier_write_to_gs_and_read_the_encoder_back(gcs, tiny_dataset, capsys):
    from pipelines.cli import main

    encoder = f"{gcs.prefix}/pretrain/encoder_model"
    durable = f"{gcs.prefix}/checkpoints/run-1/pretrain-supcon"
    command = ["pretrain", "--data", tiny_dataset, "--output", encoder, "--profile", PROFILE]
    command += ["--method", "supcon", "--epochs", "2", "--durable-dir", durable]
    assert main(command) == 0
    printed = json.loads(capsys.readouterr().out)
    files = storage.list_files(encoder)
    assert {"COMPLETE", "model.keras", "metrics.json", "info.json", "config.yaml"} <= set(files)
    assert any(name.startswith("tensorboard/train/") for name in files)
    assert not any(name.startswith("checkpoints/") for name in files)
    assert storage.read_json(f"{encoder}/metrics.json") == printed
    assert printed["epochs"] == 2
    assert not storage.exists(durable)  # cleared once the model is complete

    config = resolve_config(PROFILE, classifier_epochs=2)
    classifier = f"{gcs.prefix}/classifier/model"
    result = tasks.run_train_classifier(tiny_dataset, encoder, classifier, config, mode="linear")
    assert modeldir.is_complete(classifier)
    # The encoder's pretraining figures came from gs:// into the classifier's metrics.
    assert result["knn_accuracy"] == printed["knn_accuracy"]
    assert result["pretrain_final_loss"] == printed["final_loss"]
    model, info = modeldir.load_model_dir(classifier)
    assert (info["kind"], info["encoder_dir"], info["num_classes"]) == ("classifier", encoder, 4)
    assert model.output_shape == (None, 4)
    evaluation = tasks.run_evaluate(tiny_dataset, classifier, split="test")
    assert evaluation["num_examples"] == 100
    # The model directory's own files, read from gs:// (they once came back empty).
    assert evaluation["train_metrics"] == result
    assert evaluation["config"]["model"]["encoder"] == config.model.encoder
    # A retried step finds its complete output at the URI and reuses it.
    again = tasks.run_train_classifier(tiny_dataset, encoder, classifier, config, mode="linear")
    assert again == result


@pytest.mark.slow
def test_baseline_reads_its_dataset_and_writes_its_model_on_a_gfile_filesystem(tiny_dataset):
    data = "ram://remote-outputs/dataset"
    storage.copy_tree(tiny_dataset, data)
    output = "ram://remote-outputs/baseline"
    config = resolve_config(PROFILE, epochs=1, classifier_epochs=1)
    result = tasks.run_train_baseline(data, output, config)
    assert storage.read_text(f"{output}/COMPLETE").startswith("20")
    assert storage.read_json(f"{output}/metrics.json") == pytest.approx(result)
    _, info = modeldir.load_model_dir(output)
    assert (info["data_uri"], info["method"]) == (data, "baseline")


def test_an_incomplete_model_directory_is_neither_published_nor_loaded(gcs, tmp_path):
    local = tmp_path / "model"
    local.mkdir()
    (local / "metrics.json").write_text("{}")
    with pytest.raises(modeldir.ModelIncompleteError, match="incomplete; not publishing it"):
        modeldir.publish(local, f"{gcs.prefix}/model")
    assert not storage.exists(f"{gcs.prefix}/model")
    # A copy cut short (no COMPLETE) at the URI: readers refuse it, naming it.
    storage.write_json(f"{gcs.prefix}/partial/metrics.json", {"epochs": 1})
    assert not modeldir.is_complete(f"{gcs.prefix}/partial")
    with pytest.raises(modeldir.ModelIncompleteError) as raised:
        modeldir.load_model_dir(f"{gcs.prefix}/partial")
    assert str(raised.value).startswith(
        f"model directory {gcs.prefix}/partial is incomplete (no COMPLETE marker)"
    )
