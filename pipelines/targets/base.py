"""`Target`: what differs between the places a compiled pipeline runs, behind one interface.

A target is a subclass registered in `pipelines.targets.TARGETS`. What holds for every package
of it is on the class: its name, the accelerator names it understands, the placeholders its
backend resolves to the run's id, its compile-time settings, and, for a cluster, how to
connect, submit and schedule (its `Connection`, `submit`, `schedule`, `cron`). An instance is
one compile (`Target(options, settings)`): it checks what it can honour and places each task
of the DAG (`ingest`, `training`, `accelerated`, `light`, `gate`, `retried`): resources,
retries, scale-out. `pipelines.dag` asks the target; it never branches on a target's name.

The defaults here are a cluster's: CPU and memory limits, the accelerators asked for, retries.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

from kfp import dsl

from pipelines.cron import CronDialect, ScheduleError
from pipelines.options import CompileOptions
from pipelines.package import SubmitError

__all__ = ["Connection", "NoSettings", "ScheduleError", "SubmitError", "Target"]

# What the ingest step asks for on a cluster (it decodes and writes; no accelerator).
INGEST_CPU, INGEST_MEMORY = "4", "16G"


@dataclass(frozen=True)
class NoSettings:
    """A target without settings of its own."""


@dataclass(frozen=True)
class Connection:
    """How to reach a cluster target; each target's subclass adds its own fields.

    Args:
        pipeline_root: where run artifacts go.
        service_account: the identity runs execute as.
        experiment: the experiment runs are filed under (created if missing).
        credentials: the client library's credentials (default: the environment's).
    """

    target: ClassVar[str] = ""
    pipeline_root: str | None = None
    service_account: str | None = None
    experiment: str | None = None
    credentials: Any = None

    def check(self) -> None:
        """Refuses missing or malformed settings; sends nothing (`SubmitError`)."""


class Target:
    """One place a pipeline runs. Subclasses set the class attributes and override what
    differs; see the module's docstring."""

    name: ClassVar[str] = ""
    # How messages name it ("Vertex AI"), and what `--target` help says it is.
    label: ClassVar[str] = ""
    title: ClassVar[str] = ""
    # What an accelerator name is here ("a Kubernetes resource name"), what a name must be
    # (for the refusal of another target's), one such name (for help); the check itself is
    # `accelerator_error`.
    accelerator_kind: ClassVar[str] = ""
    accelerator_needs: ClassVar[str] = ""
    accelerator_example: ClassVar[str] = ""
    # What a step asks for when no accelerator type is given at compile time.
    default_accelerator: ClassVar[str] = ""
    # The registry's run id (it names a promoted version's folder): a value the backend
    # resolves to letters, digits, '.', '_' and '-' (`registry._check_run_id`).
    run_id: ClassVar[str] = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    # The durable checkpoint key of a run (`durable.step_folder`): the same in every retry of
    # a task, different between runs.
    job_id: ClassVar[str] = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    # Runs a training step on more than one node (`replicas > 1`; `training_components`,
    # `training` say how).
    scales_out: ClassVar[bool] = False
    # Its own compile-time settings (a frozen dataclass; `build_pipeline(**settings)`), and
    # what they are, for the refusal of one given for another target.
    Settings: ClassVar[type] = NoSettings
    settings_title: ClassVar[str] = ""
    # A cluster: its `Connection` subclass and cron dialect; None: nothing to submit to. The
    # notes say what it makes of the connection flags every cluster reads, `cron_help` its
    # dialect (`contrastive submit/schedule --help`).
    Connection: ClassVar[type[Connection] | None] = None
    connection_notes: ClassVar[dict[str, str]] = {}
    cron: ClassVar[CronDialect | None] = None
    cron_help: ClassVar[str] = ""

    # ------------------------------------------------------------------------ compile time

    def __init__(self, options: CompileOptions, settings=None):
        self.options = options
        self.settings = self.Settings() if settings is None else settings
        if options.replicas > 1 and not self.scales_out:
            from pipelines import targets

            able = [name for name, target in targets.TARGETS.items() if target.scales_out]
            raise ValueError(
                "replicas > 1 needs a target that runs a step on several nodes "
                f"({', '.join(able)}). Received: target={self.name!r}"
            )
        self.accelerator_type = options.accelerator_type or self.default_accelerator
        if self.Connection is not None:  # a cluster asks for accelerators
            self.check_accelerator(self.accelerator_type)

    @classmethod
    def check_accelerator(cls, accelerator_type: str) -> str:
        """`accelerator_type` if this target understands it, else `ValueError` naming the
        expected form, or the target whose name it is (a package compiled for one target
        fails on another only at run time, after the queue wait)."""
        from pipelines import targets

        received = f"Received: accelerator_type={accelerator_type!r}"
        if not isinstance(accelerator_type, str) or not accelerator_type:
            raise ValueError(f"accelerator type must be a non-empty string. {received}")
        error = cls.accelerator_error(accelerator_type)
        if error is None:
            return accelerator_type
        spellings = {accelerator_type, accelerator_type.upper(), accelerator_type.lower()}
        for other in targets.clusters().values():
            if other is not cls and any(
                other.accelerator_error(spelling) is None for spelling in spellings
            ):
                raise ValueError(
                    f"accelerator type {accelerator_type!r} is {other.accelerator_kind}; "
                    f"{cls.label} needs {cls.accelerator_needs}. {received}"
                )
        raise ValueError(f"{error}. {received}")

    @classmethod
    def accelerator_error(cls, accelerator_type: str) -> str | None:
        """Why `accelerator_type` (a non-empty string) is no accelerator name here; None:
        it is one."""
        return None

    def training_components(self, built: SimpleNamespace) -> SimpleNamespace:
        """The components the training steps are made from (scale-out may wrap them)."""
        return built

    def training_inputs(self) -> dict:
        """Inputs every training step gets besides the DAG's (a wrapper's own)."""
        return {}

    def ingest(self, task):
        """The ingest step: decoding and writing, no accelerator."""
        return task.set_cpu_limit(INGEST_CPU).set_memory_limit(INGEST_MEMORY)

    def worker_image(self) -> str:
        """The image a remote ingest runner's workers are derived from (a Dataflow job's:
        `tasks.dataflow_worker_image`): the package's image; "" where no registry holds it."""
        return self.options.image

    def training(self, task):
        """A training step (pretrain, classifier, baseline): as `accelerated` unless the
        target runs it elsewhere (scale-out)."""
        return self.accelerated(task)

    def accelerated(self, task):
        """A step that trains or evaluates: the Keras backend, the accelerators asked for."""
        if self.options.backend == "jax":
            task.set_env_variable("KERAS_BACKEND", "jax")
        task.set_cpu_limit(self.options.cpu_limit).set_memory_limit(self.options.memory_limit)
        if self.options.accelerator_count > 0:
            task.set_accelerator_type(self.accelerator_type)
            task.set_accelerator_limit(self.options.accelerator_count)
        return task

    def light(self, task):
        """A small step (collect a fraction, compare and report)."""
        return task

    def untrained(self, task):
        """A step that builds a model and trains nothing (the random-init control's encoder):
        no accelerator, no retries, the training steps' Keras backend."""
        if self.options.backend == "jax":
            task.set_env_variable("KERAS_BACKEND", "jax")
        return self.light(task)

    def gate(self, task):
        """The compare-and-report step, which promotes a champion."""
        return self.light(task)

    def retried(self, task):
        """A training step's retries: spot GPUs get preempted, and the retry resumes from
        the step's durable checkpoints."""
        return task.set_retry(
            num_retries=self.options.retries, backoff_duration="60s", backoff_factor=2.0
        )

    # --------------------------------------------------------------------- the command line

    @classmethod
    def add_compile_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds the flags of `Settings` to `contrastive compile` (a group of their own)."""

    @classmethod
    def settings_from_args(cls, args: argparse.Namespace):
        """The `Settings` the flags of `add_compile_arguments` describe."""
        return cls.Settings()

    @classmethod
    def add_connection_arguments(cls, parser: argparse.ArgumentParser) -> list[str]:
        """Adds the flags of this target's `Connection` fields to `submit` and `schedule`;
        returns their destinations (a flag of another target is refused by `connection`)."""
        return []

    @classmethod
    def add_commands(cls, subparsers) -> None:
        """Adds subcommands of this target's own to the CLI (Kubeflow: `trainjob`)."""

    # ---------------------------------------------------------------- submit and schedule

    @classmethod
    def run_values(cls, values: Mapping[str, Any], connection: Connection) -> dict:
        """The run's parameter values with what `connection` adds (Vertex: the model to
        publish a champion to)."""
        return dict(values)

    @classmethod
    def submit(
        cls, run, connection, *, run_name, enable_caching, run_record_timeout_s
    ) -> dict[str, str]:
        """Starts one run of a checked package (`pipelines.package.PreparedRun`);
        `{"run_id": ..., "url": ...}`."""
        raise NotImplementedError

    @classmethod
    def check_schedule(cls, connection: Connection) -> None:
        """Refuses a connection setting a schedule cannot use (`ScheduleError`)."""

    @classmethod
    def schedule(
        cls, run, connection, *, cron, schedule_name, enable_caching, max_concurrency
    ) -> dict[str, str]:
        """Creates a recurring run of a checked package; `{"schedule_id": ..., "url": ...}`."""
        raise NotImplementedError


def fields_of(value) -> dict:
    """A settings dataclass as keyword arguments (nested values kept as they are)."""
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
