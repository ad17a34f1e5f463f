"""The environment a pipeline step reads: every variable the library looks at, in one place.

Nothing else in the library reads an environment variable. A step's entry point (a KFP
component, the CLI) passes `os.environ` in, and these functions read it:

- `CLUSTER_SPEC`: set by Vertex AI in each replica of a CustomJob (the replicas of
  `workerpool0`/`workerpool1`, this one's pool and index); `process_group`.
- `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`: set by Kubeflow Trainer's
  `jax-distributed` runtime in each node; `process_group`.
- `AIP_TENSORBOARD_LOG_DIR`: set by Vertex AI in a step run with a TensorBoard instance;
  `tensorboard_dir`.
- `CONTRASTIVE_PROGRESS_DIR`: set by `contrastive run` for its kfp.local tasks (the live
  view's progress files); `progress_dir`.
- `CONTRASTIVE_LAUNCHER`: set by the compiled pipeline on a training step that its target
  runs elsewhere (Kubeflow: a TrainJob of several nodes); `launcher`.
- `CONTRASTIVE_PUBLISHER`: set by the compiled pipeline on the gate of a target with a model
  registry (Vertex AI); `publisher`.

The last two name a function of the pipeline's target (`Hook`: `"module:function"` and its
settings, JSON); the library calls it without knowing what it does. A target sets them at
compile time (`hook_value`), so a package's tasks say which code hands a step over.

No Keras here: the CLI and the components read it before any model code loads.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

CLUSTER_SPEC = "CLUSTER_SPEC"
# Vertex AI CustomJob worker pools that run the training program (pools 2 and 3 are for
# parameter or reduction servers, which data-parallel JAX does not use).
CLUSTER_SPEC_TRAINING_POOLS = ("workerpool0", "workerpool1")
JAX_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
TENSORBOARD_VARIABLE = "AIP_TENSORBOARD_LOG_DIR"
PROGRESS_DIR_VARIABLE = "CONTRASTIVE_PROGRESS_DIR"
LAUNCHER_VARIABLE = "CONTRASTIVE_LAUNCHER"
PUBLISHER_VARIABLE = "CONTRASTIVE_PUBLISHER"


class DistributionError(ValueError):
    """A distribution setting is invalid or unsupported; the message names the value."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where process 0 listens and who this process is.

    Attributes:
        coordinator: `host:port` of process 0's coordination service.
        num_processes: processes in the job, >= 1.
        process_id: this process, in `[0, num_processes)`.
        source: where the settings came from (named in logs and errors).
    """

    coordinator: str
    num_processes: int
    process_id: int
    source: str


def process_group(environ, *, coordinator=None, num_processes=None, process_id=None):
    """The process group from explicit settings, else from the launcher's environment.

    Order: explicit settings (all three, when any is given), `CLUSTER_SPEC`, the `JAX_*`
    variables. None when none of them is present (one process).

    Args:
        environ: a mapping of environment variables (`os.environ`).
        coordinator: `host:port` of process 0, or None.
        num_processes: int or None.
        process_id: int or None.

    Returns:
        `ProcessGroup` or None.

    Raises:
        DistributionError: partial or malformed settings, naming the value.
    """
    explicit = {
        "coordinator": coordinator,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if any(value is not None for value in explicit.values()):
        missing = [name for name, value in explicit.items() if value is None]
        if missing:
            raise DistributionError(
                "--coordinator, --num-processes and --process-id go together; missing "
                f"{', '.join('--' + name.replace('_', '-') for name in missing)}. "
                f"Received: {_received(explicit)}"
            )
        return _checked_group(coordinator, num_processes, process_id, source="flags")
    if environ.get(CLUSTER_SPEC):
        return _cluster_spec_group(environ[CLUSTER_SPEC])
    present = {name: environ.get(name) for name in JAX_VARIABLES}
    if any(value is not None for value in present.values()):
        missing = [name for name, value in present.items() if value is None]
        if missing:
            raise DistributionError(
                f"Kubeflow Trainer JAX settings are partial: {', '.join(missing)} not set. "
                f"Received: {_received(present)}"
            )
        return _checked_group(
            present["JAX_COORDINATOR_ADDRESS"],
            _as_int("JAX_NUM_PROCESSES", present["JAX_NUM_PROCESSES"]),
            _as_int("JAX_PROCESS_ID", present["JAX_PROCESS_ID"]),
            source="kubeflow-trainer",
        )
    return None


def _cluster_spec_group(text):
    """`CLUSTER_SPEC` (Vertex AI CustomJob) -> `ProcessGroup`.

    Processes are numbered over `workerpool0` then `workerpool1`, in list order; the
    coordinator is the first replica of `workerpool0` at its given port.
    """
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        pools = {name: list(cluster.get(name) or []) for name in CLUSTER_SPEC_TRAINING_POOLS}
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise DistributionError(
            "CLUSTER_SPEC must be JSON with cluster.workerpool0 and task.type/index "
            f"({error}). Received: CLUSTER_SPEC={text!r}"
        ) from None
    if not pools["workerpool0"]:
        raise DistributionError(f"CLUSTER_SPEC has no workerpool0. Received: CLUSTER_SPEC={text!r}")
    if task_type not in CLUSTER_SPEC_TRAINING_POOLS:
        raise DistributionError(
            f"this replica's pool does not train (only {', '.join(CLUSTER_SPEC_TRAINING_POOLS)} "
            f"do). Received: task.type={task_type!r}"
        )
    offset = 0 if task_type == "workerpool0" else len(pools["workerpool0"])
    return _checked_group(
        pools["workerpool0"][0],
        len(pools["workerpool0"]) + len(pools["workerpool1"]),
        offset + task_index,
        source="CLUSTER_SPEC",
    )


def _checked_group(coordinator, num_processes, process_id, *, source):
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributionError(
            f"the coordinator must be host:port ({source}). Received: coordinator={coordinator!r}"
        )
    if not isinstance(num_processes, int) or num_processes < 1:
        raise DistributionError(
            f"the process count must be an int >= 1 ({source}). "
            f"Received: num_processes={num_processes!r}"
        )
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise DistributionError(
            f"the process id must be in [0, {num_processes}) ({source}). "
            f"Received: process_id={process_id!r}"
        )
    return ProcessGroup(str(coordinator), num_processes, process_id, source)


def _as_int(name, value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DistributionError(f"{name} must be an integer. Received: {name}={value!r}") from None


def _received(values):
    return ", ".join(f"{name}={value!r}" for name, value in values.items())


def tensorboard_dir(environ: Mapping[str, str]) -> str | None:
    """The folder the platform gives the step's TensorBoard logs, or None."""
    return environ.get(TENSORBOARD_VARIABLE) or None


def progress_dir(environ: Mapping[str, str]) -> str | None:
    """The folder of `contrastive run`'s progress files, or None."""
    return environ.get(PROGRESS_DIR_VARIABLE) or None


@dataclasses.dataclass(frozen=True)
class Hook:
    """A function of the pipeline's target that a step calls: `call` is `"module:function"`,
    `settings` its compile-time keyword arguments."""

    call: str
    settings: dict = dataclasses.field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        """The function (imported now: it may need what only the task's image has)."""
        module, _, name = self.call.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(
                f"the step's environment names a function that cannot be imported ({error}). "
                f"Received: call={self.call!r}"
            ) from None

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **self.settings, **kwargs)


def hook_value(call: str, **settings) -> str:
    """The value of `LAUNCHER_VARIABLE` or `PUBLISHER_VARIABLE` naming `call` with `settings`
    (JSON, keys sorted: the same package compiles to the same text)."""
    module, colon, name = call.partition(":")
    if not (module and colon and name.isidentifier()):
        raise ValueError(f"a hook is 'module:function'. Received: call={call!r}")
    return json.dumps({"call": call, "settings": settings}, sort_keys=True)


def launcher(environ: Mapping[str, str]) -> Hook | None:
    """The function that runs a training step elsewhere, or None (the step trains here)."""
    return _hook(environ, LAUNCHER_VARIABLE)


def publisher(environ: Mapping[str, str]) -> Hook | None:
    """The function that publishes a promoted champion, or None (no model registry)."""
    return _hook(environ, PUBLISHER_VARIABLE)


def _hook(environ: Mapping[str, str], variable: str) -> Hook | None:
    text = environ.get(variable)
    if not text:
        return None
    try:
        value = json.loads(text)
        hook = Hook(str(value["call"]), dict(value.get("settings") or {}))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f'{variable} must be JSON {{"call": "module:function", "settings": {{...}}}} '
            f"({error}). Received: {variable}={text!r}"
        ) from None
    return hook
