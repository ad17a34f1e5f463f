"""One writer per output folder: a lease file claimed by compare-and-swap, kept alive by a
heartbeat.

Every step that writes a dataset or a model directory holds `<output>/.writer.json` while it
writes. The file is created with `storage.write_if_generation_match(..., 0)` (GCS: an
`ifGenerationMatch=0` upload; locally an `O_EXCL`-guarded check), so of two writers exactly
one gets it; the other fails at once with `OutputBusyError` naming the holder (what it is,
its pid, host and start time), instead of both writing and the later commit silently
replacing the earlier one.

A writer that died leaves its file behind. It is taken over (again by compare-and-swap on
the file's generation, so two late-comers cannot both take it):

- at once when the holder ran on this host and its process is gone;
- otherwise when the file has not been renewed for `stale_seconds`: the holder renews it
  every `stale_seconds / 4` from a daemon thread, so a live holder is seen renewing within a
  bounded wait and a dead one is not.

A holder whose file was taken over (it stalled for longer than `stale_seconds`) learns it at
its next renewal; `Lease.check()` then raises before it commits anything. The commits
themselves also compare-and-swap (the dataset's manifest, the model's `COMPLETE`), so even
then exactly one commit wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

from contrastive import storage

log = logging.getLogger(__name__)

LEASE_NAME = ".writer.json"
STALE_SECONDS = 60.0
_ATTEMPTS = 20


class OutputBusyError(RuntimeError):
    """Another live writer holds the output (or took it over from this one)."""


def writer_record(what: str) -> dict:
    """Who writes: `what` (e.g. "ingest"), host, pid, process start, start time, a token."""
    return {
        "what": what,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def describe(record: dict | None) -> str:
    """`ingest (pid 123 on host-a, started 2025-01-01T00:00:00+00:00)`, for messages."""
    if not isinstance(record, dict):
        return "an unknown writer"
    return (
        f"{record.get('what', 'a writer')} (pid {record.get('pid', '?')} on "
        f"{record.get('host', '?')}, started {record.get('started_at', '?')})"
    )


class Lease:
    """A held lease: renewed on a daemon thread until `release`."""

    def __init__(self, path: str, record: dict, generation: int, stale_seconds: float):
        self.path = path
        self.folder = path[: -len(LEASE_NAME) - 1]
        self.record = record
        self._generation = generation
        self._renewals = 0
        self._lost_to: dict | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._renew_every,
            args=(stale_seconds / 4,),
            name=f"lease {path}",
            daemon=True,
        )
        self._thread.start()

    def check(self) -> None:
        """Raise `OutputBusyError` when another writer took the output over."""
        with self._lock:
            lost_to = self._lost_to
        if lost_to is not None:
            raise OutputBusyError(
                f"{self.folder} was taken over by {describe(lost_to)} while this "
                f"{self.record['what']} was writing it (this writer stalled for longer than "
                "its lease lasts); nothing of this writer was committed"
            )

    def release(self) -> None:
        """Stop renewing and remove the lease file if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            if self._lost_to is not None:
                return
            data, generation = storage.read_with_generation(self.path)
            if data is not None and generation == self._generation:
                storage.remove(self.path)

    def _renew_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                if self._lost_to is not None:
                    return
                self._renewals += 1
                renewed = {**self.record, "renewals": self._renewals}
                try:
                    self._generation = storage.write_if_generation_match(
                        self.path, _encode(renewed), self._generation
                    )
                except storage.PreconditionFailedError:
                    data, _ = storage.read_with_generation(self.path)
                    holder = _decode(data) if data is not None else {}
                    if holder.get("token") == self.record["token"]:
                        continue  # still ours (a claim was checking it): renew next time
                    self._lost_to = holder
                    log.error("lease %s lost to %s", self.path, describe(holder))
                    return
                except Exception as error:  # a transient store error: the next renewal retries
                    log.warning("could not renew the lease %s: %s", self.path, error)


def acquire(
    folder: str,
    what: str,
    *,
    stale_seconds: float = STALE_SECONDS,
    poll_seconds: float = 1.0,
) -> Lease:
    """Claim `folder` for one writer (see the module docstring).

    Args:
        folder: the output folder (local or `gs://`); created locally when missing.
        what: the writer, as messages name it (`"ingest"`, `"pretrain supcon"`).
        stale_seconds: a lease not renewed for this long belongs to a dead writer.
        poll_seconds: how often a lease held on another host is re-read while waiting.

    Raises:
        OutputBusyError: a live writer holds `folder`, named in the message.
    """
    path = storage.join(storage.strip_trailing_slash(str(folder)), LEASE_NAME)
    record = writer_record(what)
    for _ in range(_ATTEMPTS):
        try:
            generation = storage.write_if_generation_match(path, _encode(record), 0)
            return Lease(path, record, generation, stale_seconds)
        except storage.PreconditionFailedError:
            pass
        data, generation = storage.read_with_generation(path)
        if data is None:  # released, or another claim is half-way: try again
            time.sleep(0.05)
            continue
        holder = _decode(data)
        if holder.get("host") == record["host"]:
            if _alive(holder):
                raise _busy(folder, holder)
        else:
            seen = _watch(path, generation, stale_seconds, poll_seconds)
            if seen == "released":
                continue
            if seen == "renewed":
                raise _busy(folder, holder)
        try:  # the holder is dead: take over, unless another late-comer did first
            generation = storage.write_if_generation_match(path, _encode(record), generation)
        except storage.PreconditionFailedError:
            continue
        log.warning("%s: took over the lease of %s, which no longer runs", folder, describe(holder))
        return Lease(path, record, generation, stale_seconds)
    raise OutputBusyError(f"{folder}: could not claim {LEASE_NAME} in {_ATTEMPTS} attempts")


@contextlib.contextmanager
def holding(folder: str, what: str, **options) -> Iterator[Lease]:
    """`acquire` ... `release`, the lease released whatever happens in the block; a local
    folder the claim created is removed again when nothing else was written in it."""
    created = storage.is_local(folder) and not os.path.exists(folder)
    lease = acquire(folder, what, **options)
    try:
        yield lease
    finally:
        lease.release()
        if created:
            with contextlib.suppress(OSError):  # not empty: the writer wrote there
                os.rmdir(folder)


def _busy(folder: str, holder: dict) -> OutputBusyError:
    return OutputBusyError(
        f"{folder} is being written by {describe(holder)}; two writers cannot share an output. "
        f"Wait for it to finish, or choose another output (if no such writer runs, remove "
        f"{storage.join(str(folder), LEASE_NAME)})"
    )


def _watch(path: str, generation: int, stale_seconds: float, poll_seconds: float) -> str:
    """How the lease at `path`, now at `generation`, changes within `stale_seconds`:
    "renewed" (its holder lives), "released", or "stale" (unchanged: its holder is dead)."""
    deadline = time.monotonic() + stale_seconds
    log.info("%s is held on another host: watching it for up to %.0f s", path, stale_seconds)
    while time.monotonic() < deadline:
        time.sleep(min(poll_seconds, max(deadline - time.monotonic(), 0)))
        data, current = storage.read_with_generation(path)
        if data is None:
            return "released"
        if current != generation:
            return "renewed"
    return "stale"


def _alive(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True  # cannot tell: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = holder.get("process_start")
    return start is None or _process_start(pid) in (None, start)  # a reused pid is not it


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _encode(record: dict) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")


def _decode(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
