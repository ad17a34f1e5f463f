"""A finished output is reused only for what was asked: the recorded request (step, method,
mode, the settings that shape the model, the digests of its inputs) must equal the current
one, else the step refuses (exit 2) naming what differs, unless --overwrite. An output is
never one of the step's inputs. Damaged model directories are named as corrupt."""

import json
import shutil

import pytest

from contrastive import modeldir, reuse, tasks
from contrastive.config import resolve_config
from pipelines.cli import main

pytestmark = pytest.mark.slow

PROFILE = "tiny"


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A SupCon encoder and a linear classifier on it (tiny profile, 1 epoch each)."""
    root = tmp_path_factory.mktemp("trained")
    config = resolve_config(PROFILE)
    encoder, classifier = root / "encoder", root / "classifier"
    tasks.run_pretrain(tiny_dataset, encoder, config, method="supcon")
    tasks.run_train_classifier(tiny_dataset, encoder, classifier, config, mode="linear")
    return {"data": tiny_dataset, "encoder": encoder, "classifier": classifier, "root": root}


def _copy(source, destination):
    shutil.copytree(source, destination)
    return destination


def _cli(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err


def _evaluate(capsys, trained, *flags, model=None):
    model = model or trained["classifier"]
    return _cli(capsys, "evaluate", "--data", trained["data"], "--model", str(model), *flags)


def test_pretrain_with_another_method_into_a_finished_encoder_is_refused(trained, tmp_path, capsys):
    encoder = _copy(trained["encoder"], tmp_path / "encoder")
    before = (encoder / "model.keras").read_bytes()
    args = ["pretrain", "--data", trained["data"], "--output", str(encoder), "--profile", PROFILE]
    code, err = _cli(capsys, *args, "--method", "simclr")
    assert code == 2
    assert err.startswith(
        f"error: {encoder} holds a finished encoder (supcon) asked for something else: "
        "method: 'supcon' there, 'simclr' now; settings.train.method: 'supcon' there, "
        "'simclr' now. Pass --overwrite"
    )
    assert (encoder / "model.keras").read_bytes() == before  # untouched

    # The same request again: reused as it is (no training: the metrics come back as saved).
    code, _ = _cli(capsys, *args, "--method", "supcon")
    assert code == 0
    assert (encoder / "model.keras").read_bytes() == before
    # A setting that shapes the model differs: refused, naming it.
    code, err = _cli(capsys, *args, "--method", "supcon", "--temperature", "0.5")
    assert code == 2 and "settings.train.temperature: 0.1 there, 0.5 now" in err
    # One that does not (the classifier's epochs, for an encoder): reused.
    code, _ = _cli(capsys, *args, "--method", "supcon", "--classifier-epochs", "3")
    assert code == 0


def test_a_classifier_is_reused_only_for_the_same_encoder_and_data(trained, tmp_path, capsys):
    from contrastive import data

    classifier = _copy(trained["classifier"], tmp_path / "classifier")
    other_encoder = _copy(trained["encoder"], tmp_path / "other-encoder")
    info = json.loads((other_encoder / "info.json").read_text())
    info["files"]["model.keras"]["sha256"] = "0" * 64  # another encoder's file
    (other_encoder / "info.json").write_text(json.dumps(info))
    config = resolve_config(PROFILE)
    with pytest.raises(reuse.OutputConflictError) as raised:
        tasks.run_train_classifier(trained["data"], other_encoder, classifier, config)
    assert "inputs.encoder_model: sha256 " in str(raised.value)
    assert "there, sha256 000000000000 now" in str(raised.value)

    other_data = tmp_path / "other-data"
    manifest = data.read_manifest(trained["data"])
    data.copy_ingested(trained["data"], str(other_data))
    shards = json.loads((other_data / "manifest.json").read_text())
    shards["splits"]["test"]["shards"][0]["sha256"] = "f" * 64  # another dataset's content
    (other_data / "manifest.json").write_text(json.dumps(shards))
    assert data.dataset_digest(shards) != data.dataset_digest(manifest)
    with pytest.raises(reuse.OutputConflictError, match=r"inputs\.data: sha256 \w+ there"):
        tasks.run_train_classifier(str(other_data), trained["encoder"], classifier, config)


def test_an_output_is_never_one_of_the_steps_inputs(trained, tmp_path, capsys):
    encoder = _copy(trained["encoder"], tmp_path / "encoder")
    before = (encoder / "model.keras").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, err = _cli(
            capsys,
            "train",
            "--data",
            trained["data"],
            "--encoder-model",
            str(encoder),
            "--output",
            str(encoder),
            "--profile",
            PROFILE,
            *extra,
        )
        assert code == 2
        assert err == (
            f"error: --output {encoder} is the step's own input --encoder-model {encoder}; "
            "choose an --output outside it\n"
        )
    assert (encoder / "model.keras").read_bytes() == before
    inside = f"{trained['data']}/baseline"
    code, err = _cli(capsys, "train", "--data", trained["data"], "--baseline", "--output", inside)
    assert code == 2
    assert err.startswith(f"error: --output {inside} lies inside the step's own input --data ")


def test_overwrite_trains_afresh_and_replaces(trained, tmp_path, capsys):
    encoder = _copy(trained["encoder"], tmp_path / "encoder")
    first = json.loads((encoder / "info.json").read_text())
    args = ["pretrain", "--data", trained["data"], "--output", str(encoder), "--profile", PROFILE]
    code, _ = _cli(capsys, *args, "--method", "simclr", "--overwrite")
    assert code == 0
    info = json.loads((encoder / "info.json").read_text())
    assert (info["method"], info["request"]["method"]) == ("simclr", "simclr")
    assert info["files"]["model.keras"] != first["files"]["model.keras"]
    assert not (encoder / ".writer.json").exists()


def test_checkpoints_of_another_request_are_not_resumed(trained, tmp_path, capsys):
    output = tmp_path / "encoder"
    checkpoints = output / "checkpoints"
    checkpoints.mkdir(parents=True)
    supcon = json.loads((trained["encoder"] / "info.json").read_text())["request"]
    (checkpoints / "request.json").write_text(json.dumps(supcon))
    (checkpoints / "backup.weights.h5").write_bytes(b"an interrupted SupCon run")
    args = ["pretrain", "--data", trained["data"], "--output", str(output), "--profile", PROFILE]
    code, err = _cli(capsys, *args, "--method", "simclr")
    assert code == 2
    assert err.startswith(
        f"error: {checkpoints} holds the checkpoints of an unfinished step asked for something "
        "else: method: 'supcon' there, 'simclr' now;"
    )
    assert (checkpoints / "backup.weights.h5").exists()


def test_a_finished_output_without_a_recorded_request_is_not_reused(trained, tmp_path, capsys):
    encoder = _copy(trained["encoder"], tmp_path / "encoder")
    info = json.loads((encoder / "info.json").read_text())
    del info["request"]  # as written by an older contrastive
    (encoder / "info.json").write_text(json.dumps(info))
    with pytest.raises(reuse.OutputConflictError, match="request: none recorded there"):
        tasks.run_pretrain(trained["data"], encoder, resolve_config(PROFILE), method="supcon")


def test_a_truncated_or_damaged_model_is_corrupt_not_missing(trained, tmp_path, capsys):
    classifier = _copy(trained["classifier"], tmp_path / "classifier")
    model = classifier / "model.keras"
    size = model.stat().st_size
    model.write_bytes(model.read_bytes()[: size // 2])
    code, err = _evaluate(capsys, trained, model=classifier)
    assert code == 2
    assert err == (
        f"error: corrupt model directory {classifier}: model.keras is {size // 2} bytes, "
        f"info.json records {size} (truncated or replaced); train the step that wrote it again\n"
    )
    # A directory from before sizes were recorded: the archive itself is checked.
    info = json.loads((classifier / "info.json").read_text())
    del info["files"]
    (classifier / "info.json").write_text(json.dumps(info))
    with pytest.raises(modeldir.ModelCorruptError, match="model.keras is not a readable .keras"):
        modeldir.load_model_dir(classifier)
    (classifier / "info.json").write_text('{"kind": "classif')
    with pytest.raises(modeldir.ModelCorruptError) as raised:
        modeldir.load_model_dir(classifier)
    assert str(raised.value).startswith(f"corrupt file {classifier / 'info.json'}: not valid JSON")


def test_a_full_disk_during_evaluate_names_predictions_and_its_file(
    trained, tmp_path, capsys, monkeypatch
):
    import pyarrow.parquet as pq

    def disk_full(self, table, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    predictions = tmp_path / "out" / "predictions.parquet"
    code, err = _evaluate(capsys, trained, "--predictions", str(predictions))
    assert code == 2
    assert err == (
        f"error: cannot write the predictions file {predictions} (--predictions): [Errno 28] No "
        "space left on device; nothing was written there\n"
    )
    assert list(predictions.parent.iterdir()) == []  # no temporary file left behind


def test_a_full_disk_writing_the_evaluation_result_names_the_file(
    trained, tmp_path, capsys, monkeypatch
):
    import os

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    output = tmp_path / "result.json"
    monkeypatch.setattr(os, "fsync", disk_full)
    code, err = _evaluate(capsys, trained, "--output", str(output))
    assert code == 2
    assert err.startswith(f"error: OSError: [Errno 28] No space left on device: '{output}' (")
    assert f"--output={output}" in err
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_outputs_inside_its_inputs(trained, capsys):
    inside = trained["classifier"] / "model.keras"
    before = inside.read_bytes()
    for flag in ("--predictions", "--output"):
        code, err = _evaluate(capsys, trained, flag, str(inside))
        assert code == 2
        assert err == (
            f"error: {flag} {inside} lies inside the step's own input --model "
            f"{trained['classifier']}; choose an {flag} outside it\n"
        )
    assert inside.read_bytes() == before
