"""A training step's durable state: checkpoints that outlive the pod, and the record of a
failure that no retry can fix.

On Kubeflow the v2 launcher gives a step a pod-local folder for its outputs and uploads it
only after success, so checkpoints written beside the outputs die with a preempted pod. The
step therefore trains with a local checkpoint folder and mirrors it, after every backed-up
epoch, to a folder keyed by the pipeline run and the step, which every retry of that step in
that run finds again:

    <root>/<job id>/<step>/epoch-000007/...   a complete copy of the local checkpoint folder
    <root>/<job id>/<step>/LATEST             names that copy; written last (atomic)
    <root>/<job id>/<step>/FAILED.json        a failure a retry cannot fix (type, message)

`root` is a local folder (a mounted volume) or a `gs://` prefix (`checkpoint_root`); without
one the folder is `checkpoints` beside the step's output artifact. A cluster step with no
folder it can write fails at start, naming `checkpoint_root` (`step_folder`,
`check_reachable`). The folder is removed once
the step's model is complete. A retry that finds `FAILED.json` fails at once with the recorded
message instead of spending its backoff and GPU time on the same failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator

from contrastive import storage

log = logging.getLogger(__name__)

LATEST = "LATEST"
FAILED = "FAILED.json"
PROBE = "PROBE"  # written and removed at start: the attempt can write its folder
_COPY = re.compile(r"^epoch-\d{6}$")


class RecordedFailureError(RuntimeError):
    """An earlier attempt of this step failed in a way no retry can fix."""


class DurableFolderError(ValueError):
    """A cluster step has no durable folder it can reach: checkpoints would die with its pod.
    The message names the pipeline parameter to set (`checkpoint_root`)."""

    exit_code = 2  # an input to fix, not a failure a retry can mend


# `checkpoint_root` value that turns durable checkpoints off (a retried step starts afresh).
NO_CHECKPOINTS = "none"
CHECKPOINTS_DIR = "checkpoints"  # beside the step's output artifact when no root is given


def step_folder(
    checkpoint_root: str, job_id: str, step: str, *, output_uri: str = ""
) -> str | None:
    """The step's durable folder, or None when it has none.

    `checkpoint_root` given: `<checkpoint_root>/<job id>/<step>`, so every attempt of the step
    in the run finds it (`job_id` is the run's id, resolved by the backend). Empty: the
    folder `checkpoints` beside the step's output artifact (`output_uri`), which KFP 2.17
    gives every attempt of a task alike (the driver provisions the output URIs once per task,
    `backend/src/v2/driver/driver.go` `provisionOutputs`; Argo retries only the executor
    pod); the KFP backend resolves no `{{$.pipeline_root}}`, so no placeholder is used.
    `"none"`, or no output at all (a library call): None.

    Raises:
        DurableFolderError: naming `checkpoint_root`, when the folder would be in a store this
            library cannot write (only local folders and gs://; e.g. KFP's default minio://),
            or `job_id` is an unresolved placeholder. A cluster step fails at start rather
            than train for hours with checkpoints that the next preemption loses.
    """
    if checkpoint_root == NO_CHECKPOINTS:
        return None
    if checkpoint_root:
        if "{{" in checkpoint_root or not _writable(checkpoint_root):
            raise DurableFolderError(
                "checkpoint_root must be a gs:// prefix or a folder every attempt of the step "
                f"mounts ('{NO_CHECKPOINTS}': no durable checkpoints). "
                f"Received: checkpoint_root={checkpoint_root!r}"
            )
        if not job_id or "{{" in job_id:
            raise DurableFolderError(
                "the step's checkpoint folder is keyed by the run's id, which the backend did "
                "not resolve: compile the pipeline for this backend (contrastive compile "
                f"--target ...). Received: job_id={job_id!r}, checkpoint_root={checkpoint_root!r}"
            )
        return storage.join(storage.strip_trailing_slash(checkpoint_root), job_id, step)
    if not output_uri:
        return None
    if _writable(output_uri):
        parent = storage.strip_trailing_slash(output_uri).rsplit("/", 1)[0]
        return storage.join(parent, CHECKPOINTS_DIR)
    raise DurableFolderError(
        "this step's checkpoints must outlive its pod (a retry resumes from them), but its "
        f"outputs are in {output_uri.split('://')[0]}://, which this library does not write: "
        "set the pipeline parameter checkpoint_root to a gs:// prefix or a folder every "
        f"attempt mounts, or to '{NO_CHECKPOINTS}' to train without (a retried step then "
        f"starts from epoch 0). Received: checkpoint_root='', output_uri={output_uri!r}"
    )


def _writable(uri: str) -> bool:
    return storage.is_gcs(uri) or storage.is_local(uri)


def check_reachable(folder: str | None) -> None:
    """Fails a step at start, not after its first epoch, when it cannot write `folder` (no
    credentials, a bucket that does not exist, a path under a file): in object storage it
    writes and removes a probe object; a local folder's nearest existing parent must be a
    folder it may write. Raises `DurableFolderError` naming `checkpoint_root`."""
    if folder is None:
        return
    try:
        if storage.is_local(folder):
            existing = os.path.abspath(folder)
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(f"{existing} is not a folder this process may write")
        else:
            probe = storage.join(folder, PROBE)
            storage.write_text(probe, "written by a starting attempt of this step\n")
            storage.remove(probe)
    except Exception as error:  # any store's own error: permission, missing bucket, ...
        raise DurableFolderError(
            f"cannot write the step's checkpoint folder {folder} ({type(error).__name__}: "
            f"{error}): give the step's identity write access there or set the pipeline "
            f"parameter checkpoint_root to another gs:// prefix or mounted folder "
            f"('{NO_CHECKPOINTS}': no durable checkpoints)"
        ) from None


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures that the same inputs reproduce: invalid configuration or data, a dataset the
    model does not fit, a damaged input model, an output that holds something else, a
    diverged loss (same seed, same data)."""
    from contrastive.config import ConfigError
    from contrastive.data.errors import DataError
    from contrastive.modeldir import DataMismatchError, ModelCorruptError
    from contrastive.reuse import OutputConflictError
    from contrastive.training.callbacks import TrainingDivergedError

    return (
        ConfigError,
        DataError,
        DataMismatchError,
        ModelCorruptError,
        OutputConflictError,
        TrainingDivergedError,
    )


@contextlib.contextmanager
def recording_failures(folder: str | None) -> Iterator[None]:
    """Fail at once if an earlier attempt recorded a permanent failure in `folder`; record
    one raised inside the block there. Other errors (preemption, transient I/O) pass as they
    are, so the retry runs. `folder` None: nothing recorded."""
    if folder is None:
        yield
        return
    raise_recorded_failure(folder)
    try:
        yield
    except permanent_errors() as error:
        storage.write_json(
            storage.join(folder, FAILED),
            {"type": type(error).__name__, "message": str(error)},
        )
        raise


def raise_recorded_failure(folder: str) -> None:
    """RecordedFailureError with the original message when `folder` holds a failure record."""
    path = storage.join(folder, FAILED)
    if not storage.exists(path):
        return
    record = storage.read_json(path)
    raise RecordedFailureError(
        f"{record.get('type')}: {record.get('message')} (recorded by an earlier attempt of this "
        f"step in {path}; a retry cannot fix it)"
    )


def restore(folder: str | None, local_dir: str | os.PathLike) -> int | None:
    """Copy the latest mirrored checkpoint into an empty `local_dir`; its epoch, or None when
    there is nothing to restore (or `local_dir` already holds a checkpoint)."""
    local_dir = os.fspath(local_dir)
    if folder is None or (os.path.isdir(local_dir) and os.listdir(local_dir)):
        return None
    pointer = storage.join(folder, LATEST)
    if not storage.exists(pointer):
        return None
    name = storage.read_text(pointer).strip()
    if not _COPY.match(name):
        raise ValueError(f"{pointer} must name an epoch-NNNNNN copy. Received: {name!r}")
    storage.copy_tree(storage.join(folder, name), local_dir)
    log.info("restored the checkpoint of epoch %d from %s", int(name[6:]), folder)
    return int(name[6:])


def mirror(local_dir: str | os.PathLike, folder: str, epoch: int) -> None:
    """Copy `local_dir` to `<folder>/epoch-NNNNNN`, point LATEST at it, drop older copies."""
    local_dir = os.fspath(local_dir)
    if not os.path.isdir(local_dir) or not os.listdir(local_dir):
        return
    name = f"epoch-{epoch:06d}"
    storage.copy_tree(local_dir, storage.join(folder, name))
    storage.write_text(storage.join(folder, LATEST), name)
    for old in _copies(folder):
        if old != name:
            _remove_folder(storage.join(folder, old))


def clear(folder: str | None) -> None:
    """Remove the step's durable folder (after its model is complete)."""
    if folder is not None:
        _remove_folder(folder)
        if storage.is_local(folder):  # the run's folder too, once its last step is done
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(folder))


def mirror_callback(local_dir: str | os.PathLike, folder: str):
    """A Keras callback that mirrors `local_dir` to `folder` after the checkpoint callbacks
    have written an epoch (at the start of the next one, and when training ends)."""
    import keras

    class MirrorCheckpoints(keras.callbacks.Callback):
        mirrored = None

        def on_epoch_begin(self, epoch, logs=None):
            self._mirror()

        def on_train_end(self, logs=None):
            self._mirror()

        def _mirror(self):
            from contrastive.training.callbacks import backed_up_epochs

            finished = backed_up_epochs(local_dir)
            if finished is not None and finished != self.mirrored:
                mirror(local_dir, folder, finished)
                self.mirrored = finished

    return MirrorCheckpoints()


def _copies(folder: str) -> list[str]:
    names = {relative.split("/", 1)[0] for relative in _files(folder)}
    return sorted(name for name in names if _COPY.match(name))


def _files(folder: str) -> list[str]:
    if storage.is_local(folder) and not os.path.isdir(folder):
        return []
    return storage.list_files(folder)


def _remove_folder(folder: str) -> None:
    if storage.is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    for relative in _files(folder):
        storage.remove(storage.join(folder, *relative.split("/")))
