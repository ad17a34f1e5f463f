"""Data-parallel training over every device of every process, with the loss on the global batch.

`train.distribution=data_parallel` runs on the JAX backend through Keras' own distribution API:
`keras.distribution.DataParallel` replicates the variables on a one-axis device mesh and
shards each batch over it. The train step is one program over global arrays, so the
contrastive loss, its negatives and the BatchNorm statistics see the *global* batch; XLA
inserts the collectives, no all-gather is written here (tests/distributed checks the loss and
its gradients against one device).

Several processes (nodes): `initialize_processes` calls `keras.distribution.initialize` with
the coordinator, process count and process id that `contrastive.environment.process_group`
reads from the launcher's environment or from explicit settings. Each process then feeds its
own slice of the examples (`process_slice`) in batches of `per_process_batch`; Keras
assembles the global batch from them
(`jax.make_array_from_process_local_data`).

The TensorFlow backend refuses `data_parallel`: Keras 3 on TensorFlow runs `train_step` once
per replica under `tf.distribute`, so `compute_loss` would see the replica's batch only (the
mean of per-replica losses, not the global-batch loss); making it global takes a
`tf.distribute` all-gather inside model code, which uses `keras.ops` only. See README
"Scale out".

Nothing here reads environment variables (`contrastive.environment` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math

import keras
import numpy as np

# `contrastive.environment` reads the process group; its errors are this module's.
from contrastive.environment import DistributionError, ProcessGroup  # noqa: F401

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# processes


def initialize_processes(group):
    """Joins the job: `keras.distribution.initialize` for `group` (JAX backend only).

    Call once per process, before any JAX computation. CPU collectives go through gloo (the
    CPU client has none otherwise); GPUs use NCCL whatever this setting.

    Raises:
        DistributionError: not on the JAX backend.
    """
    _require_jax("several processes")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info(
        "joining %d processes as process %d (coordinator %s, from %s)",
        group.num_processes,
        group.process_id,
        group.coordinator,
        group.source,
    )
    keras.distribution.initialize(group.coordinator, group.num_processes, group.process_id)


def join_processes(group, train_cfg):
    """Joins the multi-process job `group` describes, if any.

    The start-up of every training entry (CLI, KFP components), after
    `contrastive.environment.process_group` read the settings or the launcher's environment:
    `initialize_processes` when `group` has more than one process.

    Args:
        group: a `ProcessGroup`, or None (one process).
        train_cfg: `TrainConfig`; several processes need `distribution="data_parallel"`.

    Returns:
        The `ProcessGroup` joined, or None (one process).

    Raises:
        DistributionError: several processes without `data_parallel` (each would train its
            own model), before any training.
    """
    if group is None or group.num_processes == 1:
        return None
    if train_cfg.distribution != "data_parallel":
        raise DistributionError(
            f"{group.num_processes} processes ({group.source}) need "
            "train.distribution=data_parallel, else each would train its own model. "
            f"Received: train.distribution={train_cfg.distribution!r}"
        )
    initialize_processes(group)
    return group


def _require_jax(what):
    backend = keras.backend.backend()
    if backend != "jax":
        raise DistributionError(
            f"{what} (train.distribution=data_parallel) runs on the JAX backend only: set "
            "KERAS_BACKEND=jax. On TensorFlow, Keras computes the loss per replica, so the "
            "contrastive loss would not see the global batch. "
            f"Received: backend={backend!r}"
        )


# --------------------------------------------------------------------------------------------
# layout


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a training step spreads over processes and devices.

    Attributes:
        distribution: `train.distribution`.
        processes: processes in the job; `process_index` is this one.
        devices: devices over all processes; `local_devices` those of this process.
        global_batch: `train.batch_size`, the batch the loss sees.
        per_process_batch: what this process feeds per step (`global_batch / processes`).
        per_device_batch: `global_batch / devices`.
    """

    distribution: str
    processes: int
    process_index: int
    devices: int
    local_devices: int
    global_batch: int
    per_process_batch: int
    per_device_batch: int

    @property
    def is_chief(self):
        """Process 0 writes checkpoints, logs and the model directory."""
        return self.process_index == 0

    def to_dict(self):
        return dataclasses.asdict(self)


def plan_layout(train_cfg):
    """The `Layout` of `train_cfg` on this machine's devices.

    Raises:
        DistributionError: `data_parallel` off the JAX backend, or a global batch that does
            not divide by the device count.
    """
    batch = int(train_cfg.batch_size)
    if train_cfg.distribution == "none":
        return Layout("none", 1, 0, 1, 1, batch, batch, batch)
    if train_cfg.distribution != "data_parallel":
        raise DistributionError(
            "train.distribution must be 'none' or 'data_parallel'. "
            f"Received: train.distribution={train_cfg.distribution!r}"
        )
    _require_jax("data-parallel training")
    import jax

    devices, local = jax.device_count(), jax.local_device_count()
    processes = jax.process_count()
    if batch % devices or devices != local * processes:
        raise DistributionError(
            f"the global batch must divide evenly over the {devices} devices of "
            f"{processes} process(es) ({local} here): use a multiple of {devices}. "
            f"Received: train.batch_size={batch}"
        )
    return Layout(
        "data_parallel",
        processes,
        jax.process_index(),
        devices,
        local,
        batch,
        batch // processes,
        batch // devices,
    )


@contextlib.contextmanager
def distribution_scope(layout):
    """Builds and trains the models created inside on `layout`'s devices.

    `none`: nothing changes. `data_parallel`: a `keras.distribution.DataParallel` over every
    device (variables replicated, batches sharded); each process already holds its own slice
    of the data, so Keras does not shard the input again (`auto_shard_dataset=False`).
    """
    if layout.distribution == "none":
        yield
        return
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    with distribution.scope():
        yield


def process_slice(x, y, layout):
    """This process's share of `(x, y)`: every `processes`-th example from `process_index`.

    Every process gets the same number of examples, a multiple of `per_process_batch`
    (the remainder is dropped, so every step's batch splits evenly over the devices and all
    processes run the same number of steps). With one process and a global batch that
    divides the example count, this is `(x, y)` unchanged.

    Raises:
        DistributionError: fewer examples than one global batch.
    """
    count = len(x) // layout.processes
    count -= count % layout.per_process_batch
    if count == 0:
        raise DistributionError(
            f"{len(x)} examples are fewer than one global batch of {layout.global_batch}. "
            f"Received: train.batch_size={layout.global_batch}"
        )
    index = np.arange(layout.process_index, len(x), layout.processes)[:count]
    if count * layout.processes < len(x):
        log.info(
            "data-parallel: using %d of %d examples (whole global batches of %d)",
            count * layout.processes,
            len(x),
            layout.global_batch,
        )
    return x[index], y[index]


def scaled_learning_rate(learning_rate, train_cfg):
    """`learning_rate` for the global batch `train_cfg.batch_size` under `train.lr_scaling`.

    `linear`: `lr * B / B_ref`; `sqrt`: `lr * sqrt(B / B_ref)`; `none`: `lr`
    (`B_ref = train.lr_reference_batch`).
    """
    ratio = train_cfg.batch_size / train_cfg.lr_reference_batch
    if train_cfg.lr_scaling == "linear":
        return learning_rate * ratio
    if train_cfg.lr_scaling == "sqrt":
        return learning_rate * math.sqrt(ratio)
    if train_cfg.lr_scaling == "none":
        return learning_rate
    raise DistributionError(
        "train.lr_scaling must be 'none', 'linear' or 'sqrt'. "
        f"Received: train.lr_scaling={train_cfg.lr_scaling!r}"
    )


def describe(layout):
    """One log line: processes, devices, per-device and global batch."""
    return (
        f"training on {layout.devices} device(s) in {layout.processes} process(es) "
        f"({layout.local_devices} local, process {layout.process_index}); "
        f"global batch {layout.global_batch} = {layout.per_device_batch} per device "
        f"({layout.per_process_batch} per process); distribution={layout.distribution}"
    )


def save_discarded(model, filename="model.keras"):
    """Save `model` into a folder that is then deleted: under a multi-process distribution
    saving runs collectives, so every process saves when process 0 does."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        model.save(Path(scratch) / filename)
