"""Run a compiled pipeline on a cluster target: `submit` (one run) and `schedule` (a cron).

The sequence is the same for every target: every local check (`pipelines.package.prepare`),
then one request through the target's official client (`Target.submit`, `Target.schedule`:
`kfp.Client` for Kubeflow, `google.cloud.aiplatform` for Vertex AI). The connection says
where (`pipelines.targets.connection`).

Scheduled runs must see new data. With caching on, every scheduled run would reuse the
first run's ingest output (same inputs, same cache key) and retrain on last week's data, so
schedules disable caching for every task unless `enable_caching=True` is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipelines import targets
from pipelines.cron import ScheduleError, check_cron
from pipelines.package import SubmitError, prepare
from pipelines.targets.base import Connection

# How long `submit --experiment` waits for Vertex to create a run's metadata record (it
# usually takes seconds; a queued project can take longer).
RUN_RECORD_TIMEOUT_S = 300.0


def submit(
    package_path: str | os.PathLike,
    connection: Connection,
    *,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    run_name: str | None = None,
    enable_caching: bool | None = None,
    run_record_timeout_s: float = RUN_RECORD_TIMEOUT_S,
) -> dict[str, str]:
    """Starts one run of a compiled pipeline.

    Args:
        package_path: compiled pipeline YAML (`make compile`).
        connection: where to run it and as whom (`pipelines.targets.connection`).
        params: pipeline arguments, a mapping or a YAML/JSON file path.
        run_name: display name of the run.
        enable_caching: None keeps the compile-time caching of each task; True/False
            overrides it for every task of this run (nested DAGs included).
        run_record_timeout_s: vertex with an experiment: how long to wait for Vertex to
            create the run's record before filing it under the experiment.

    Returns:
        `{"run_id": ..., "url": ...}` (the target's page of the run).

    Raises:
        SubmitError: before any request, when a setting, the package or a parameter is wrong.
    """
    target = targets.get_cluster(connection.target)
    run = prepare(package_path, connection, params, target=target)
    return target.submit(
        run,
        connection,
        run_name=run_name,
        enable_caching=enable_caching,
        run_record_timeout_s=run_record_timeout_s,
    )


def validate_cron(target: str, cron: str) -> str:
    """`cron` checked in the dialect of the cluster target named `target`
    (`Target.cron`), with single spaces; `ScheduleError` otherwise."""
    dialect = targets.get_cluster(target, ScheduleError).cron
    return check_cron(dialect, cron, target=target)


def schedule(
    package_path: str | os.PathLike,
    connection: Connection,
    *,
    cron: str,
    schedule_name: str,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    enable_caching: bool = False,
    max_concurrency: int = 1,
) -> dict[str, str]:
    """Creates a recurring run of a compiled pipeline (Kubeflow: a recurring run; Vertex AI:
    a schedule).

    Args:
        package_path, connection, params: as for `submit`.
        cron: in the target's dialect (`Target.cron`: 6 fields with seconds for kubeflow, 5
            fields with an optional `TZ=` prefix for vertex).
        schedule_name: display name of the schedule (and of the runs it starts).
        enable_caching: False (default) turns task caching off in every scheduled run, so
            each run ingests the data as it is at that time.
        max_concurrency: most runs of this schedule at once; 1 keeps a slow run from
            overlapping the next.

    Returns:
        `{"schedule_id": ..., "url": ..., "cron": ...}`.

    Raises:
        ScheduleError: before any request, for a bad cron, setting, package or parameter.
    """
    target = targets.get_cluster(connection.target, ScheduleError)
    cron = validate_cron(target.name, cron)
    if not schedule_name or not schedule_name.strip():
        raise ScheduleError("--schedule-name is required (the schedule's display name)")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ScheduleError(f"max_concurrency must be an int. Received: {max_concurrency!r}")
    if max_concurrency < 1:
        raise ScheduleError(f"max_concurrency must be >= 1. Received: {max_concurrency}")
    target.check_schedule(connection)
    try:
        run = prepare(package_path, connection, params, target=target)
    except SubmitError as err:
        raise ScheduleError(str(err)) from None
    created = target.schedule(
        run,
        connection,
        cron=cron,
        schedule_name=schedule_name,
        enable_caching=enable_caching,
        max_concurrency=max_concurrency,
    )
    return {**created, "cron": cron}


__all__ = ["ScheduleError", "SubmitError", "schedule", "submit", "validate_cron"]
