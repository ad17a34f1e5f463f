"""Recovery as on a cluster: a training step killed mid-training resumes from its last epoch
after its output folder is wiped (what the Kubeflow v2 launcher does to a preempted pod), and
a failure no retry can fix is recorded so the retry fails at once with the original message.
The component bodies run in this process (`python_func`); a SIGKILL of a whole kfp.local run
is tested end to end in tests/e2e/test_cached_resumed_run.py.
"""

import json
import shutil
from pathlib import Path

import pytest
from kfp import dsl

import components
from contrastive import durable, training
from contrastive.durable import RecordedFailureError
from contrastive.training.callbacks import TrainingDivergedError

C = components.build("contrastive:test")


@pytest.mark.slow
def test_killed_step_resumes_from_its_last_epoch_after_the_output_folder_is_wiped(
    tiny_dataset, tmp_path, preempt, caplog
):
    """The pretraining component's body as a retried pod runs it: killed at the end of epoch 3
    (before that epoch's checkpoint), its output folder wiped, run again in the same pipeline
    run (same job id): it restores epoch 2 from the durable folder."""
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset, epochs=4)
    with pytest.raises(preempt.at_epoch(3), match="end of epoch 3"):
        C.pretrain_encoder.python_func(**kwargs)
    step = tmp_path / "checkpoints" / "run-1" / "pretrain-supcon"
    assert (step / durable.LATEST).read_text() == "epoch-000002"
    assert not (step / durable.FAILED).exists()  # a preemption is not a permanent failure
    shutil.rmtree(tmp_path / "encoder")  # the pod and its output folder are gone

    with caplog.at_level("INFO", logger="contrastive"):
        C.pretrain_encoder.python_func(**kwargs)

    assert "restored the checkpoint of epoch 2 from" in caplog.text
    assert "resumed from epoch 2 of 4" in caplog.text
    metrics = json.loads((tmp_path / "encoder" / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    history = json.loads((tmp_path / "encoder" / "history.json").read_text())["pretrain"]
    assert len(history["loss"]) == 4
    assert not step.exists()  # removed once the model is complete


def _pretrain_kwargs(tmp_path: Path, dataset: str, **extra) -> dict:
    return dict(
        dataset=dsl.Dataset(uri=dataset),
        encoder_model=dsl.Model(uri=str(tmp_path / "encoder")),
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        profile="tiny",
        checkpoint_root=str(tmp_path / "checkpoints"),
        job_id="run-1",
        tensorboard_name="pretrain-supcon",
        **extra,
    )


def test_diverged_step_fails_once_and_its_retry_fails_at_once(tiny_dataset, tmp_path, monkeypatch):
    calls = []
    message = "training diverged: loss=nan at epoch 1, batch 3; lower the learning rate"

    def diverge(*args, **kwargs):
        calls.append(1)
        raise TrainingDivergedError(message)

    monkeypatch.setattr(training, "pretrain", diverge)
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset)
    with pytest.raises(TrainingDivergedError):
        C.pretrain_encoder.python_func(**kwargs)
    for _ in range(3):  # the pipeline's three retries
        with pytest.raises(RecordedFailureError) as caught:
            C.pretrain_encoder.python_func(**kwargs)

    record = tmp_path / "checkpoints" / "run-1" / "pretrain-supcon" / durable.FAILED
    assert str(caught.value) == (
        f"TrainingDivergedError: {message} (recorded by an earlier attempt of this step in "
        f"{record}; a retry cannot fix it)"
    )
    assert calls == [1]  # trained once, not four times


def test_invalid_configuration_is_recorded_before_any_training(tiny_dataset, tmp_path):
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset, overrides='{"train.epochs": -1}')
    with pytest.raises(ValueError, match="train.epochs must be >= 1. Received: train.epochs=-1"):
        C.pretrain_encoder.python_func(**kwargs)
    with pytest.raises(RecordedFailureError, match="ConfigError: train.epochs must be >= 1"):
        C.pretrain_encoder.python_func(**kwargs)


def test_transient_failures_still_retry(tiny_dataset, tmp_path, monkeypatch):
    calls = []

    def preempted(*args, **kwargs):
        calls.append(1)
        raise OSError("connection reset by peer")

    monkeypatch.setattr(training, "pretrain", preempted)
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset)
    for _ in range(2):
        with pytest.raises(OSError, match="connection reset"):
            C.pretrain_encoder.python_func(**kwargs)
    assert calls == [1, 1]
    assert not (tmp_path / "checkpoints" / "run-1" / "pretrain-supcon" / durable.FAILED).exists()


@pytest.mark.slow
def test_override_with_a_comma_reaches_the_training_task(tiny_dataset, tmp_path):
    """`contrastive run` passes its overrides as a JSON mapping; the task reads it back whole
    (a comma-joined string split `data.image_size=[28, 28]` into two broken overrides)."""
    import yaml

    from contrastive.config import encode_overrides

    overrides = encode_overrides(["data.image_size=[28, 28]", "train.learning_rate=0.002"])
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset, overrides=overrides, epochs=1)
    C.pretrain_encoder.python_func(**kwargs)

    saved = yaml.safe_load((tmp_path / "encoder" / "config.yaml").read_text())
    assert saved["data"]["image_size"] == [28, 28]
    assert saved["train"]["learning_rate"] == 0.002
    assert not (tmp_path / "checkpoints" / "run-1").exists()  # cleared after success


def test_cluster_step_whose_checkpoints_would_not_survive_fails_at_start(
    tiny_dataset, tmp_path, monkeypatch
):
    # Issue 24 item 1: on KFP 2.17 `{{$.pipeline_root}}` reached the step unresolved, the step
    # warned and trained without durable checkpoints. Now the step's output in KFP's default
    # minio:// store and no checkpoint_root stop it before any training, naming the parameter.
    calls = []
    monkeypatch.setattr(training, "pretrain", lambda *args, **kwargs: calls.append(1))
    kwargs = _pretrain_kwargs(tmp_path, tiny_dataset)
    kwargs.update(
        checkpoint_root="",
        job_id="6f1d0e1c-0000-4000-8000-000000000000",
        encoder_model=dsl.Model(uri="minio://mlpipeline/v2/artifacts/pretrain/5f0c/encoder_model"),
    )
    with pytest.raises(durable.DurableFolderError) as caught:
        C.pretrain_encoder.python_func(**kwargs)
    assert "set the pipeline parameter checkpoint_root" in str(caught.value)
    assert calls == []
