"""Run a compiled pipeline on a cron schedule, on Kubeflow Pipelines or Vertex AI Pipelines.

The two schedulers read cron differently: KFP's ScheduledWorkflow controller (robfig/cron)
takes 6 fields with seconds first (`0 0 3 * * 1`), Vertex AI takes the 5 unix-cron fields
with an optional `TZ=Area/City ` or `CRON_TZ=Area/City ` prefix (`TZ=Europe/Paris 0 3 * * 1`).
`validate_cron` checks the form for the target before any request.

Scheduled runs must see new data. With caching on, every scheduled run would reuse the
first run's ingest output (same inputs, same cache key) and retrain on last week's data, so
schedules disable caching for every task unless `enable_caching=True` is asked for.
"""

from __future__ import annotations

import datetime
import os
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from pipelines.connection import Connection, SubmitError
from pipelines.submit import package_file, prepare, vertex_pipeline_job
from pipelines.targets import KUBEFLOW, TARGETS, VERTEX

KUBEFLOW_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
VERTEX_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")

_TZ_PREFIX = re.compile(r"^(CRON_TZ|TZ)=(\S*)\s*(.*)$")
_NAMES = re.compile(r"JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT")
_FIELD_CHARS = re.compile(r"^[0-9*/,?-]+$")


class ScheduleError(ValueError):
    """A schedule was refused before any request: the message says what is wrong."""


def validate_cron(target: str, cron: str) -> str:
    """Checks `cron` for `target` and returns it with single spaces.

    Kubeflow: exactly 6 fields (second minute hour day-of-month month day-of-week), no time
    zone prefix (the controller uses the cluster's zone, usually UTC). Vertex: exactly 5
    fields after an optional `TZ=` / `CRON_TZ=` prefix naming an IANA time zone.

    Raises:
        ScheduleError: the message contains "cron" and the field count, the bad field value,
            or the unknown time zone.
    """
    if target not in TARGETS:
        raise ScheduleError(
            f"target must be one of {', '.join(TARGETS)}. Received: target={target!r}"
        )
    if not isinstance(cron, str) or not cron.strip():
        raise ScheduleError(f"cron expression is empty. Received: cron={cron!r}")
    text = " ".join(cron.split())
    body, zone_prefix = text, ""
    prefix = _TZ_PREFIX.match(text)
    if prefix:
        if target == KUBEFLOW:
            raise ScheduleError(
                "cron for kubeflow takes no time zone prefix (the scheduler uses the cluster's "
                f"time zone, usually UTC); shift the hour instead. Received: cron={cron!r}"
            )
        zone, body = prefix.group(2), prefix.group(3)
        _check_zone(zone, cron)
        zone_prefix = f"{prefix.group(1)}={zone} "
    if body.startswith("@"):
        raise ScheduleError(
            "cron descriptors like @daily are not accepted; write the fields. "
            f"Received: cron={cron!r}"
        )
    names = KUBEFLOW_FIELDS if target == KUBEFLOW else VERTEX_FIELDS
    fields = body.split()
    if len(fields) != len(names):
        raise ScheduleError(
            f"cron for {target} needs exactly {len(names)} fields ({' '.join(names)}), got "
            f"{len(fields)}{_count_hint(target, len(fields))}. Received: cron={cron!r}"
        )
    for index, (name, value) in enumerate(zip(names, fields, strict=True)):
        _check_field(target, index, name, value, cron)
    _check_fires(target, " ".join(fields), cron)
    return zone_prefix + " ".join(fields)


def _count_hint(target: str, count: int) -> str:
    if target == KUBEFLOW and count == 5:
        return "; Kubeflow cron starts with seconds, e.g. '0 0 3 * * 1' for 03:00 on Mondays"
    if target == VERTEX and count == 6:
        return "; Vertex AI cron has no seconds field, e.g. '0 3 * * 1' for 03:00 on Mondays"
    return ""


def _check_zone(zone: str, cron: str) -> None:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise ScheduleError(
            f"cron time zone {zone!r} is unknown; use an IANA name like 'Europe/Paris' or "
            f"'America/New_York'. Received: cron={cron!r}"
        ) from None


def _check_field(target: str, index: int, name: str, value: str, cron: str) -> None:
    from croniter import CroniterError, croniter

    bad = f"cron field {name} has a bad value {value!r}"
    letters_removed = _NAMES.sub("", value.upper())
    if not letters_removed or not _FIELD_CHARS.match(letters_removed):
        raise ScheduleError(f"{bad} (digits, names, * , - / only). Received: cron={cron!r}")
    if "?" in value and (target == VERTEX or not name.startswith("day")):
        raise ScheduleError(
            f"{bad} ('?' is only for day fields on kubeflow). Received: cron={cron!r}"
        )
    # Check the field alone, every other field '*', so the message can name it.
    alone = ["*"] * (6 if target == KUBEFLOW else 5)
    alone[index] = value
    try:
        croniter(" ".join(alone), second_at_beginning=target == KUBEFLOW)
    except (CroniterError, ValueError, KeyError) as err:
        raise ScheduleError(f"{bad} ({err}). Received: cron={cron!r}") from None


def _check_fires(target: str, fields: str, cron: str) -> None:
    from croniter import CroniterError, croniter

    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    try:
        croniter(fields, start, second_at_beginning=target == KUBEFLOW).get_next()
    except (CroniterError, ValueError) as err:
        raise ScheduleError(f"cron never fires ({err}). Received: cron={cron!r}") from None


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
    """Creates a recurring run (Kubeflow) or a schedule (Vertex AI) of a compiled pipeline.

    Args:
        package_path, connection, params: as for `pipelines.submit.submit`.
        cron: 6 fields with seconds for kubeflow, 5 fields (optional `TZ=` prefix) for vertex.
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
    target = connection.target
    if target not in TARGETS:
        raise ScheduleError(
            f"target must be one of {', '.join(TARGETS)}. Received: target={target!r}"
        )
    cron = validate_cron(target, cron)
    if not schedule_name or not schedule_name.strip():
        raise ScheduleError("--schedule-name is required (the schedule's display name)")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ScheduleError(f"max_concurrency must be an int. Received: {max_concurrency!r}")
    if max_concurrency < 1:
        raise ScheduleError(f"max_concurrency must be >= 1. Received: {max_concurrency}")
    if target == VERTEX and connection.experiment:
        raise ScheduleError(
            "--experiment is for `submit` on vertex: a Vertex AI schedule cannot file its runs "
            f"under an Experiment. Received: experiment={connection.experiment!r}"
        )
    try:
        run = prepare(package_path, connection, params)
    except SubmitError as err:
        raise ScheduleError(str(err)) from None

    if target == KUBEFLOW:
        client = connection.kfp_client()
        experiment_id = client.create_experiment(
            name=connection.experiment or "Default", namespace=connection.namespace
        ).experiment_id
        with package_file(run.package, enable_caching) as path:
            created = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=schedule_name,
                cron_expression=cron,
                max_concurrency=max_concurrency,
                no_catchup=True,
                params=run.params,
                pipeline_package_path=path,
                pipeline_root=connection.pipeline_root,
                enable_caching=enable_caching,
                service_account=connection.service_account,
            )
        schedule_id = created.recurring_run_id
        url = connection.kubeflow_url("recurringrun", schedule_id)
        return {"schedule_id": schedule_id, "url": url, "cron": cron}

    with package_file(run.package, enable_caching) as path:
        job = vertex_pipeline_job(connection, run, template_path=path, display_name=schedule_name)
        # No catch-up: a schedule that fell behind starts the next run, not the missed ones.
        created = job.create_schedule(
            cron=cron,
            display_name=schedule_name,
            max_concurrent_run_count=max_concurrency,
            allow_queueing=False,
            service_account=connection.service_account,
        )
    schedule_id = created.resource_name.rsplit("/", 1)[-1]
    return {
        "schedule_id": schedule_id,
        "url": connection.vertex_url("schedules", schedule_id),
        "cron": cron,
    }


__all__ = ["KUBEFLOW", "VERTEX", "ScheduleError", "schedule", "validate_cron"]
