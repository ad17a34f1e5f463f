"""Fault injection: preemption mid-training, incomplete models, and bad parameters that must
fail fast with exit 2, name the value, and write nothing. The commands run in this process
(`pipelines.cli.main`, what the `contrastive` script calls): none needs a child process; a
SIGKILL of a whole run is tested end to end in tests/e2e/test_cached_resumed_run.py."""

import contextlib
import io
import json
import subprocess

import pytest

from pipelines.cli import main
from pipelines.local.logs import is_notice


def _cli(*args):
    """`contrastive <args>` in this process: a CompletedProcess (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _backed_up_epochs(checkpoints):
    from contrastive.training.callbacks import backed_up_epochs

    return backed_up_epochs(checkpoints) if checkpoints.is_dir() else None


@pytest.mark.slow
def test_pretrain_killed_after_epoch_two_resumes_to_six_epochs(
    tiny_dataset, tmp_path, preempt, caplog
):
    output = tmp_path / "encoder"
    command = ["pretrain", "--data", tiny_dataset, "--output", output, "--method", "supcon"]
    command += ["--profile", "tiny", "--epochs", "6", "--override", "data.limit=256"]
    with pytest.raises(preempt.at_epoch(3), match="end of epoch 3"):
        _cli(*command)
    assert not (output / "COMPLETE").exists()
    assert _backed_up_epochs(output / "checkpoints") == 2  # epoch 3 died before its backup

    with caplog.at_level("INFO", logger="contrastive.training"):
        result = _cli(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from epoch 2 of 6" in caplog.text
    history = json.loads((output / "history.json").read_text())["pretrain"]
    assert len(history["loss"]) == 6
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 6
    assert (output / "COMPLETE").is_file() and not (output / "checkpoints").exists()


def test_evaluate_refuses_a_model_without_completion_marker(tiny_dataset, tmp_path):
    model = tmp_path / "half-written"
    model.mkdir()
    (model / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    result = _cli("evaluate", "--data", tiny_dataset, "--model", str(model))
    assert result.returncode == 2
    assert "incomplete" in result.stderr and str(model) in result.stderr
    assert not any(map(is_notice, result.stderr.splitlines())), result.stderr  # as `run`


def test_evaluate_refuses_a_dataset_with_another_class_count(untrained_classifier, tmp_path):
    import numpy as np

    from contrastive import data

    # Train nothing: a complete 4-class classifier of 28x28x1 images and a 3-class dataset.
    classifier = untrained_classifier(4, (28, 28, 1), "clf")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(30, 28, 28, 1), dtype=np.uint8)
    y = np.arange(30) % 3
    npz = tmp_path / "three.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=x, y_test=y)
    three = tmp_path / "three"
    data.ingest(f"npz:{npz}", str(three), progress=False)
    result = _cli("evaluate", "--data", str(three), "--model", classifier)
    assert result.returncode == 2
    assert (
        f"class count mismatch: model {classifier} predicts 4 classes, "
        "the dataset has 3 (['0', '1', '2'])"
    ) in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--encoder", "vgg16"],
            "model.encoder must be one of ['small_cnn', 'simclr_cnn', 'resnet18', "
            "'resnet50v2']. Received: model.encoder='vgg16'",
        ),
        (
            ["--method", "moco"],
            "train.method must be one of ['supcon', 'simclr', 'npairs', 'random_init']. "
            "Received: train.method='moco'",
        ),
        (["--profile", "huge"], "unknown profile 'huge'; shipped profiles: ["),
        (["--epochs", "0"], "train.epochs must be >= 1. Received: train.epochs=0"),
        (["--epochs", "-3"], "train.epochs must be >= 1. Received: train.epochs=-3"),
        (["--batch-size", "1"], "train.batch_size must be >= 2. Received: train.batch_size=1"),
        (["--temperature", "0"], "train.temperature must be > 0. Received: train.temperature=0.0"),
        (
            ["--temperature", "-0.5"],
            "train.temperature must be > 0. Received: train.temperature=-0.5",
        ),
        (
            ["--override", "augment.strong.min_area=1.5"],
            "augment.strong.min_area must be in (0, 1]. Received: augment.strong.min_area=1.5",
        ),
    ],
)
def test_bad_pretrain_parameters_fail_fast_and_write_nothing(tiny_dataset, tmp_path, args, message):
    output = tmp_path / "out"
    result = _cli("pretrain", "--data", tiny_dataset, "--output", str(output), *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {message}" in result.stderr
    assert not output.exists()


def test_data_uri_without_manifest_is_refused(tmp_path):
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    output = tmp_path / "out"
    result = _cli("pretrain", "--data", str(empty), "--output", str(output), "--profile", "tiny")
    assert result.returncode == 2
    assert "dataset incomplete" in result.stderr and str(empty) in result.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--validation-fraction", "1.5"],
            "validation_fraction must be in [0, 1). Received: validation_fraction=1.5",
        ),
        (
            ["--validation-fraction", "-0.1"],
            "validation_fraction must be in [0, 1). Received: validation_fraction=-0.1",
        ),
        (
            ["--labeled-fraction", "2"],
            "labeled_fraction must be in (0, 1] or None. Received: labeled_fraction=2.0",
        ),
        (
            ["--source", "ftp://example/images"],
            "unknown source scheme 'ftp' in source='ftp://example/images'",
        ),
    ],
)
def test_bad_ingest_parameters_fail_fast_and_write_nothing(separable_npz, tmp_path, args, message):
    output = tmp_path / "dataset"
    base = ["ingest", "--source", f"npz:{separable_npz}", "--output", str(output)]
    if "--source" in args:
        base = ["ingest", "--output", str(output)]
    result = _cli(*base, *args)
    assert result.returncode == 2
    assert f"error: {message}" in result.stderr
    assert not output.exists()


def test_compile_refuses_the_wrong_accelerator_name(tmp_path):
    output = tmp_path / "pipeline.yaml"
    result = _cli(
        "compile",
        "--target",
        "vertex",
        "--accelerator-type",
        "nvidia.com/gpu",
        "--output",
        str(output),
    )
    assert result.returncode == 2 and "nvidia.com/gpu" in result.stderr
    assert not output.exists()


@pytest.mark.slow
def test_divergence_stops_training_with_a_hint(tiny_dataset, tmp_path):
    output = tmp_path / "diverged"
    result = _cli(
        "pretrain",
        "--data",
        tiny_dataset,
        "--output",
        str(output),
        "--profile",
        "tiny",
        "--override",
        "train.learning_rate=1e12",
        "--override",
        "train.optimizer=sgd",
        "--epochs",
        "3",
        "--override",
        "train.online_probe=false",
    )
    assert result.returncode == 2
    assert "error: training diverged: loss=" in result.stderr
    # Batch 1's loss is computed before the first update, so the first NaN is batch 2's.
    assert "at epoch 1, batch 2; lower the learning rate, raise the temperature" in result.stderr
    assert not output.exists()  # nothing half-written: no model, no checkpoints, no metrics
