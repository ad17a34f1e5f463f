"""Which engine runs an ingest: in-process (the default) or an Apache Beam runner.

`RUNNERS` is the one list of names (`contrastive ingest --runner`, the pipeline's
`ingest_runner`): `inprocess` (threads in this process), `direct` (Beam's DirectRunner here,
`num_workers` processes), `dataflow` (Google Cloud Dataflow, launched and waited for from the
ingest step), `flink` and `spark` (a portable job server on the cluster, `--job_endpoint`).
`check_engine` validates a request before any work and names what is missing; it needs no
Beam import, so the in-process path never loads apache_beam. `beam_pipeline` runs the job.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from contrastive import storage
from contrastive.data.errors import DataError

# Runner name -> Beam's runner class name (None: no Beam).
RUNNERS = {
    "inprocess": None,
    "direct": "DirectRunner",
    "dataflow": "DataflowRunner",
    "flink": "FlinkRunner",
    "spark": "SparkRunner",
}
DEFAULT_RUNNER = "inprocess"
# Longest a launcher waits for its Beam job before cancelling it (10**7 photos on Dataflow
# take ~2 h at the workers BENCHMARKS.md reasons about; a day leaves room for quotas).
DEFAULT_JOB_TIMEOUT = 24 * 3600.0
# Flags each remote runner cannot do without, named in the error when absent.
_REQUIRED = {
    "dataflow": ("project", "region", "temp_location"),
    "flink": ("job_endpoint",),
    "spark": ("job_endpoint",),
}
# Flags the engine sets itself.
_OWN = ("runner", "direct_num_workers", "direct_running_mode")


@dataclass(frozen=True)
class Engine:
    """A checked request: the runner, the Beam flags to pass it, the wait bound."""

    runner: str  # a key of RUNNERS
    options: tuple[str, ...] = ()  # Beam pipeline flags, `--name=value`
    timeout: float = DEFAULT_JOB_TIMEOUT  # seconds the launcher waits for the job
    num_workers: int | None = None  # DirectRunner worker processes (None: cpu_count)

    @property
    def in_process(self) -> bool:
        return RUNNERS[self.runner] is None

    def flag(self, name: str) -> str | None:
        """The value of `--name` among `options` (the last one given), None when absent."""
        return _flags(self.options).get(name)


def parse_beam_options(beam_options: str | Sequence[str] | None) -> tuple[str, ...]:
    """`"--a=1 --b 2"` (shell words) or `["--a=1", "--b", "2"]` -> `("--a=1", "--b=2")`.

    Raises:
        DataError: a word that is not a `--flag`, or a value without its flag.
    """
    if not beam_options:
        return ()
    words = shlex.split(beam_options) if isinstance(beam_options, str) else list(beam_options)
    flags, position = [], 0
    while position < len(words):
        word = str(words[position])
        if not word.startswith("--") or len(word) < 3:
            raise DataError(
                f"beam_options must be Beam pipeline flags (--name=value). Received: {word!r} in "
                f"beam_options={beam_options!r}"
            )
        if (
            "=" not in word
            and position + 1 < len(words)
            and not words[position + 1].startswith("--")
        ):
            word = f"{word}={words[position + 1]}"
            position += 1
        flags.append(word)
        position += 1
    return tuple(flags)


def check_engine(
    runner: str | None,
    beam_options: str | Sequence[str] | None = (),
    *,
    job_timeout: float = DEFAULT_JOB_TIMEOUT,
    num_workers: int | None = None,
    output: str = "",
) -> Engine:
    """Validate an ingest's engine request before any work.

    Raises:
        DataError: an unknown runner; Beam flags for the in-process engine; a flag the runner
            needs (Dataflow: `--project`, `--region`, `--temp_location` on gs://; Flink and
            Spark: `--job_endpoint`) missing; a flag the engine sets itself; on Dataflow, an
            output that its workers cannot reach (not `gs://`); a job_timeout <= 0.
    """
    runner = (runner or DEFAULT_RUNNER).strip().lower()
    if runner not in RUNNERS:
        raise DataError(f"runner must be one of {list(RUNNERS)}. Received: runner={runner!r}")
    options = parse_beam_options(beam_options)
    if not (isinstance(job_timeout, (int, float)) and job_timeout > 0):
        raise DataError(f"job_timeout must be seconds > 0. Received: job_timeout={job_timeout!r}")
    engine = Engine(runner, options, float(job_timeout), num_workers)
    if engine.in_process:
        if options:
            raise DataError(
                f"beam_options apply to a Beam runner ({', '.join(list(RUNNERS)[1:])}); the "
                f"in-process ingest takes none. Received: beam_options={list(options)}"
            )
        return engine
    given = _flags(options)
    own = [name for name in _OWN if name in given]
    if own:
        raise DataError(
            f"--{own[0]} is set by the ingest (runner={runner!r}, num_workers); leave it out of "
            f"beam_options. Received: beam_options={list(options)}"
        )
    missing = [name for name in _REQUIRED.get(runner, ()) if not given.get(name)]
    if missing:
        raise DataError(
            f"runner={runner!r} needs " + ", ".join(f"--{name}" for name in missing) + " in "
            f"beam_options ({_HINTS[runner]}). Received: beam_options={list(options)}"
        )
    if runner == "dataflow" and not _loopback(given.get("dataflow_endpoint", "")):
        for name, where in (("temp_location", given["temp_location"]), ("output", output)):
            if where and not storage.is_gcs(where):
                raise DataError(
                    f"runner='dataflow': {name} {where} must be a gs:// location, which Dataflow's "
                    "workers can reach"
                )
    return engine


_HINTS = {
    "dataflow": "e.g. --project=my-project --region=us-central1 "
    "--temp_location=gs://my-bucket/beam-temp",
    "flink": "the Flink job server's gRPC address, e.g. --job_endpoint=flink-jobserver:8099",
    "spark": "the Spark job server's gRPC address, e.g. --job_endpoint=spark-jobserver:8099",
}


def runner_flags(engine: Engine, job_name: str) -> list[str]:
    """Every flag of the Beam pipeline: the engine's own, then the user's `options`."""
    flags = [f"--runner={RUNNERS[engine.runner]}"]
    if engine.runner == "direct":
        workers = engine.num_workers or os.cpu_count() or 1
        mode = "multi_processing" if workers > 1 else "in_memory"
        flags += [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"]
    elif engine.runner == "dataflow":
        given = _flags(engine.options)
        if "job_name" not in given:
            flags.append(f"--job_name={job_name}")
        if given.get("sdk_container_image") and "sdk_location" not in given:
            flags.append("--sdk_location=container")  # the image holds Beam and this package
    return flags + list(engine.options)


def _flags(options: Sequence[str]) -> dict[str, str]:
    values = {}
    for option in options:
        name, _, value = option[2:].partition("=")
        values[name.replace("-", "_")] = value
    return values


def _loopback(endpoint: str) -> bool:
    """A Dataflow endpoint on this machine (a test's loopback fake): its "workers" share the
    launcher's file system, as Beam's own client treats `localhost` endpoints specially."""
    return bool(re.match(r"^(https?://)?(localhost|127\.0\.0\.1)(:\d+)?/?$", endpoint.strip()))
