"""Cron dialects: how a target's scheduler reads a cron expression, and the check of one.

Schedulers read cron differently: KFP's ScheduledWorkflow controller (robfig/cron) takes 6
fields with seconds first (`0 0 3 * * 1`), Vertex AI the 5 unix-cron fields with an optional
`TZ=Area/City ` or `CRON_TZ=Area/City ` prefix (`TZ=Europe/Paris 0 3 * * 1`). A target names
its `CronDialect`; `check_cron` checks an expression against it before any request.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass, field

UNIX_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")

_TZ_PREFIX = re.compile(r"^(CRON_TZ|TZ)=(\S*)\s*(.*)$")
_NAMES = re.compile(r"JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT")
_FIELD_CHARS = re.compile(r"^[0-9*/,?-]+$")


class ScheduleError(ValueError):
    """A schedule was refused before any request: the message says what is wrong."""


@dataclass(frozen=True)
class CronDialect:
    """What a scheduler accepts.

    Args:
        seconds: a seconds field comes first (6 fields), else the 5 unix-cron fields.
        time_zone: an optional `TZ=` / `CRON_TZ=` prefix naming an IANA zone is accepted;
            else `no_time_zone` says why not.
        question_mark: `?` is accepted in the day fields.
        no_time_zone: the reason a prefix is refused (the scheduler's own zone).
        count_hints: field count -> hint added when an expression has that many fields.
    """

    seconds: bool
    time_zone: bool
    question_mark: bool = False
    no_time_zone: str = ""
    count_hints: dict[int, str] = field(default_factory=dict)

    @property
    def fields(self) -> tuple[str, ...]:
        return (("second",) if self.seconds else ()) + UNIX_FIELDS


def check_cron(dialect: CronDialect, cron: str, *, target: str) -> str:
    """Checks `cron` in `dialect` (of the target named `target`, for messages) and returns it
    with single spaces.

    Raises:
        ScheduleError: the message contains "cron" and the field count, the bad field value,
            or the unknown time zone.
    """
    if not isinstance(cron, str) or not cron.strip():
        raise ScheduleError(f"cron expression is empty. Received: cron={cron!r}")
    text = " ".join(cron.split())
    body, zone_prefix = text, ""
    prefix = _TZ_PREFIX.match(text)
    if prefix:
        if not dialect.time_zone:
            raise ScheduleError(
                f"cron for {target} takes no time zone prefix ({dialect.no_time_zone}). "
                f"Received: cron={cron!r}"
            )
        zone, body = prefix.group(2), prefix.group(3)
        _check_zone(zone, cron)
        zone_prefix = f"{prefix.group(1)}={zone} "
    if body.startswith("@"):
        raise ScheduleError(
            "cron descriptors like @daily are not accepted; write the fields. "
            f"Received: cron={cron!r}"
        )
    names = dialect.fields
    fields = body.split()
    if len(fields) != len(names):
        hint = dialect.count_hints.get(len(fields), "")
        raise ScheduleError(
            f"cron for {target} needs exactly {len(names)} fields ({' '.join(names)}), got "
            f"{len(fields)}{'; ' + hint if hint else ''}. Received: cron={cron!r}"
        )
    for index, (name, value) in enumerate(zip(names, fields, strict=True)):
        _check_field(dialect, target, index, name, value, cron)
    _check_fires(dialect, " ".join(fields), cron)
    return zone_prefix + " ".join(fields)


def _check_zone(zone: str, cron: str) -> None:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise ScheduleError(
            f"cron time zone {zone!r} is unknown; use an IANA name like 'Europe/Paris' or "
            f"'America/New_York'. Received: cron={cron!r}"
        ) from None


def _check_field(dialect, target, index, name, value, cron) -> None:
    from croniter import CroniterError, croniter

    bad = f"cron field {name} has a bad value {value!r}"
    letters_removed = _NAMES.sub("", value.upper())
    if not letters_removed or not _FIELD_CHARS.match(letters_removed):
        raise ScheduleError(f"{bad} (digits, names, * , - / only). Received: cron={cron!r}")
    if "?" in value and not (dialect.question_mark and name.startswith("day")):
        where = "only for day fields" if dialect.question_mark else "not accepted"
        raise ScheduleError(f"{bad} ('?' is {where} on {target}). Received: cron={cron!r}")
    # Check the field alone, every other field '*', so the message can name it.
    alone = ["*"] * len(dialect.fields)
    alone[index] = value
    try:
        croniter(" ".join(alone), second_at_beginning=dialect.seconds)
    except (CroniterError, ValueError, KeyError) as err:
        raise ScheduleError(f"{bad} ({err}). Received: cron={cron!r}") from None


def _check_fires(dialect: CronDialect, fields: str, cron: str) -> None:
    from croniter import CroniterError, croniter

    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    try:
        croniter(fields, start, second_at_beginning=dialect.seconds).get_next()
    except (CroniterError, ValueError) as err:
        raise ScheduleError(f"cron never fires ({err}). Received: cron={cron!r}") from None
