"""Training callbacks: divergence guard, epoch backups that let a restarted run resume, and
machine-readable progress for a live view."""

import json
import logging
import math
import os
import tempfile
import time

import keras

from contrastive import storage, validation

log = logging.getLogger(__name__)

# File names written by `keras.callbacks.BackupAndRestore` (Keras 3.15).
_BACKUP_WEIGHTS = "latest.weights.h5"
_BACKUP_METADATA = "training_metadata.json"

_DIVERGENCE_HINT = (
    "lower the learning rate, raise the temperature, or disable mixed precision "
    "(train.mixed_precision=float32)"
)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and batch."""


@keras.saving.register_keras_serializable(package="contrastive")
class DivergenceGuard(keras.callbacks.Callback):
    """Stops training and raises `TrainingDivergedError` when a batch's loss is NaN or Inf.

    Keras' `TerminateOnNaN` only stops; a diverged run must fail loudly instead of handing
    a NaN model to the next pipeline step. Checked after every batch, so the error names
    the first bad batch (epochs and batches are 1-based in the message).

    Args:
        monitor: key of the batch logs to check. Defaults to `"loss"`.
    """

    def __init__(self, monitor="loss"):
        super().__init__()
        self.monitor = monitor
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        if not math.isfinite(value):
            self.model.stop_training = True
            raise TrainingDivergedError(
                f"training diverged: {self.monitor}={value} at epoch {self._epoch + 1}, "
                f"batch {batch + 1}; {_DIVERGENCE_HINT}"
            )

    def get_config(self):
        return {"monitor": self.monitor}


@keras.saving.register_keras_serializable(package="contrastive")
class EpochBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that saves every `every` epochs and after the last one, and keeps
    its backup when training ends.

    The backup (model weights, optimizer state included, and the count of finished epochs)
    lets a restarted `fit` with the same model, data and `epochs` continue where the last
    backup left off. It is kept after a successful `fit` (`delete_checkpoint=False`): a crash
    between the end of `fit` and the caller saving the final model would otherwise lose the
    whole run. The caller deletes `backup_dir` once the final model is committed; a rerun
    that finds a finished backup trains zero epochs and returns the restored model.

    Local backups appear by atomic rename (weights, then the epoch count), so a process killed
    while saving leaves the previous backup readable. With several processes only the one
    with `write=True` (process 0) saves; every process restores.

    Args:
        backup_dir: directory used only by this callback.
        every: save after every `every`-th epoch (and the last), >= 1.
        write: save backups (False: only restore). Defaults to True.
    """

    def __init__(self, backup_dir, every=1, write=True):
        validation.check_int("every", every)
        super().__init__(os.fspath(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.every = every
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        finished = epoch + 1
        if finished % self.every == 0 or finished == self.params.get("epochs"):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        if not self.write:
            # Saving runs collectives under a multi-process distribution: every process
            # saves, the others into a folder that is thrown away.
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save_weights(os.path.join(scratch, _BACKUP_WEIGHTS))
            return
        if "://" in self.backup_dir:
            super()._save_model()
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        staging = os.path.join(self.backup_dir, f".staging-{os.getpid()}.weights.h5")
        self.model.save_weights(staging, overwrite=True)
        os.replace(staging, os.path.join(self.backup_dir, _BACKUP_WEIGHTS))
        storage.write_json(
            os.path.join(self.backup_dir, _BACKUP_METADATA),
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
        )

    def get_config(self):
        return {"backup_dir": self.backup_dir, "every": self.every, "write": self.write}


def backed_up_epochs(backup_dir):
    """Epochs finished by the run backed up in `backup_dir`, or None when it holds no backup.

    Reads the metadata `BackupAndRestore` writes; remote (`scheme://`) paths are not read and
    give None (the callback still restores from them).
    """
    backup_dir = os.fspath(backup_dir)
    if "://" in backup_dir:
        return None
    weights = os.path.join(backup_dir, _BACKUP_WEIGHTS)
    metadata = os.path.join(backup_dir, _BACKUP_METADATA)
    if not (os.path.isfile(weights) and os.path.isfile(metadata)):
        return None
    with open(metadata) as file:
        return int(json.load(file)["epoch"])


HISTORY_FILE = "history.json"


class HistoryBackup(keras.callbacks.Callback):
    """Keeps the per-epoch logs of every run in `backup_dir/history.json`, so a resumed run
    returns the whole history, not only the epochs it ran itself.

    Put it before the `EpochBackup` in the callback list: the history is then written before
    the weights, and `previous_history` trims it to the epochs the weights have.

    Args:
        backup_dir: the checkpoint directory shared with `EpochBackup`.
        previous: the history of the epochs already done (from `previous_history`).
        write: write the file (False on every process but process 0: it only keeps the
            history in memory). Defaults to True.
    """

    def __init__(self, backup_dir, previous=None, write=True):
        super().__init__()
        self.path = os.path.join(os.fspath(backup_dir), HISTORY_FILE)
        self.history = {key: list(values) for key, values in (previous or {}).items()}
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.write:
            storage.write_json(self.path, self.history)


def previous_history(backup_dir, finished_epochs):
    """The history saved by `HistoryBackup`, trimmed to `finished_epochs` epochs."""
    path = os.path.join(os.fspath(backup_dir), HISTORY_FILE)
    if not finished_epochs or not os.path.isfile(path):
        return {}
    with open(path) as file:
        saved = json.load(file)
    return {key: values[:finished_epochs] for key, values in saved.items()}


def tensorboard_callback(log_dir):
    """A `keras.callbacks.TensorBoard` writing each epoch's metrics (train and validation)."""
    return keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, update_freq="epoch")


class ProgressLog(keras.callbacks.Callback):
    """Appends one JSON line per finished epoch to a local file, for a live view of the run.

    Each line: `{"epoch": k, "epochs": n, "seconds": s, "logs": {...}}`, `k` 1-based and
    counted over the whole training (a resumed run continues from its backup's epoch), `s` the
    epoch's wall time, `logs` the epoch's metrics (`loss`, `val_accuracy`, ...) as floats. A
    file that cannot be written costs a warning, never the training.

    Args:
        path: local file, appended to (created with its folders).
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self._started = None
        self._broken = False

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._broken:
            return
        seconds = time.perf_counter() - self._started if self._started is not None else None
        record = {
            "epoch": epoch + 1,
            "epochs": self.params.get("epochs"),
            "seconds": seconds,
            "logs": {
                key: float(value)
                for key, value in (logs or {}).items()
                if validation.is_number(value)
            },
        }
        try:
            storage.append_line(self.path, json.dumps(record, sort_keys=True))
        except OSError as error:
            self._broken = True
            log.warning("no progress written to %s: %s", self.path, error)
