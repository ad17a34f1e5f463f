"""`contrastive.durable` on a local folder and on gs:// (gcp-storage-emulator): checkpoints
mirrored per epoch come back into an empty folder, a failure record survives, and success
clears the step's folder."""

import json

import pytest

from contrastive import durable, storage


def _checkpoint(folder, epoch: int, weights: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.weights.h5").write_bytes(weights)
    (folder / "training_metadata.json").write_text(json.dumps({"epoch": epoch}))
    (folder / "history.json").write_text(json.dumps({"loss": [1.0] * epoch}))


def test_step_folder_is_keyed_by_run_and_step(root):
    assert durable.step_folder("", root, "job-7", "pretrain-supcon") == storage.join(
        root, "checkpoints", "job-7", "pretrain-supcon"
    )
    assert durable.step_folder(root + "/", "gs://other", "job-7", "x") == storage.join(
        root, "job-7", "x"
    )
    # Unresolved placeholders and stores this library cannot write: no durable folder.
    assert durable.step_folder("", "{{$.pipeline_root}}", "job-7", "x") is None
    assert durable.step_folder("", "minio://mlpipeline/v2/artifacts", "job-7", "x") is None
    assert durable.step_folder("", root, "{{$.pipeline_job_uuid}}", "x") is None


def test_mirror_then_restore_into_a_wiped_folder(root, tmp_path):
    step = storage.join(root, "run-1", "pretrain-supcon")
    local = tmp_path / "pod-1" / "checkpoints"
    _checkpoint(local, 1, b"w1")
    durable.mirror(local, step, 1)
    _checkpoint(local, 2, b"w2")
    durable.mirror(local, step, 2)

    assert storage.read_text(storage.join(step, durable.LATEST)) == "epoch-000002"
    assert sorted({name.split("/")[0] for name in storage.list_files(step)}) == [
        "LATEST",
        "epoch-000002",
    ]  # the older copy is dropped once the newer one is named

    fresh = tmp_path / "pod-2" / "checkpoints"  # the retry's pod: nothing local
    assert durable.restore(step, fresh) == 2
    assert (fresh / "latest.weights.h5").read_bytes() == b"w2"
    assert json.loads((fresh / "training_metadata.json").read_text()) == {"epoch": 2}
    assert durable.restore(step, fresh) is None  # a local checkpoint wins

    durable.clear(step)
    assert not storage.exists(step)
    assert durable.restore(step, tmp_path / "pod-3") is None


def test_failure_record_fails_the_retry_with_the_original_message(root):
    from contrastive.config import ConfigError

    step = storage.join(root, "run-1", "train-baseline")
    with pytest.raises(ConfigError):
        with durable.recording_failures(step):
            raise ConfigError("train.epochs must be >= 1. Received: train.epochs=-1")
    with pytest.raises(durable.RecordedFailureError) as caught:
        with durable.recording_failures(step):
            pytest.fail("a recorded failure must stop the retry before its body")
    assert str(caught.value).startswith(
        "ConfigError: train.epochs must be >= 1. Received: train.epochs=-1 (recorded by an "
        f"earlier attempt of this step in {storage.join(step, durable.FAILED)}"
    )

    other = storage.join(root, "run-1", "pretrain-simclr")
    with pytest.raises(TimeoutError):
        with durable.recording_failures(other):
            raise TimeoutError("read timed out")  # transient: the retry must run
    assert not storage.exists(storage.join(other, durable.FAILED))


def test_a_latest_pointer_that_names_no_copy_is_refused(root, tmp_path):
    step = storage.join(root, "run-1", "pretrain-supcon")
    storage.write_text(storage.join(step, durable.LATEST), "../../elsewhere")
    pointer = storage.join(step, durable.LATEST)
    message = f"{pointer} must name an epoch-NNNNNN copy. Received: '../../elsewhere'"
    with pytest.raises(ValueError) as raised:
        durable.restore(step, tmp_path / "pod" / "checkpoints")
    assert str(raised.value) == message
    assert not (tmp_path / "pod").exists()
