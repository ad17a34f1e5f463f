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


def test_step_folder_is_keyed_by_run_and_step_or_sits_beside_the_output(root):
    assert durable.step_folder(root + "/", "job-7", "x") == storage.join(root, "job-7", "x")
    # No checkpoint_root: beside the step's output artifact. KFP 2.17 provisions a task's
    # output URIs once in its driver (<pipeline root>/<task>/<uuid>/<output>,
    # kubeflow/pipelines 2.17.0 backend/src/v2/driver/driver.go provisionOutputs) and Argo
    # retries only the executor pod (argocompiler/container.go), so every attempt finds it.
    output = storage.join(root, "pretrain-encoder", "5f0c", "encoder_model")
    assert durable.step_folder("", "job-7", "x", output_uri=output) == storage.join(
        root, "pretrain-encoder", "5f0c", "checkpoints"
    )
    assert durable.step_folder("none", "job-7", "x", output_uri=output) is None
    assert durable.step_folder("", "job-7", "x") is None  # a library call without outputs


def test_unreachable_durable_folder_is_refused_naming_checkpoint_root():
    # KFP's default pipeline root is minio://, which this library does not write: the step
    # must not train for hours with checkpoints the next preemption loses.
    with pytest.raises(durable.DurableFolderError) as caught:
        durable.step_folder("", "job-7", "x", output_uri="minio://mlpipeline/v2/a/t/u/model")
    assert "set the pipeline parameter checkpoint_root to a gs:// prefix" in str(caught.value)
    assert "Received: checkpoint_root='', output_uri='minio://mlpipeline" in str(caught.value)
    # The literal placeholder that KFP 2.17 leaves unresolved, and other unwritable roots.
    for bad in ("{{$.pipeline_root}}/checkpoints", "minio://mlpipeline/ckpt", "s3://b/c"):
        with pytest.raises(durable.DurableFolderError, match="checkpoint_root must be a gs://"):
            durable.step_folder(bad, "job-7", "x")
    with pytest.raises(durable.DurableFolderError, match="job_id='{{\\$.pipeline_job_uuid}}'"):
        durable.step_folder("gs://b/c", "{{$.pipeline_job_uuid}}", "x")


def test_a_folder_the_step_cannot_write_fails_it_at_start(tmp_path, gcs):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(durable.DurableFolderError, match="cannot write the step's checkpoint"):
        durable.check_reachable(str(blocked / "job-7" / "x"))
    with pytest.raises(durable.DurableFolderError, match="NotFound"):  # no such bucket
        durable.check_reachable("gs://no-such-bucket-here/checkpoints/job-7/x")
    durable.check_reachable(str(tmp_path / "ok" / "x"))
    durable.check_reachable(f"{gcs.prefix}/job-7/x")
    assert not (tmp_path / "ok").exists()  # nothing left behind
    assert storage.list_files(f"{gcs.prefix}/job-7") == []


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
