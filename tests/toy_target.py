"""A cloud target added from the test suite: what a new target takes is this one module (a
`Target` subclass with its `Connection`) plus one entry (`pipelines.targets.register`, or a
line in `pipelines.targets.TARGETS`).

The toy cloud names its accelerators `toy-<chip>`, resolves `{{$.pipeline_job_name}}` to a run
id, reads 5-field cron in UTC, and is reached at an `--endpoint`. Its `submit` and `schedule`
record what they were given instead of sending it.
"""

from dataclasses import dataclass

from pipelines.cron import CronDialect
from pipelines.targets.base import Connection, SubmitError, Target


@dataclass(frozen=True)
class ToyConnection(Connection):
    target = "toy"
    endpoint: str | None = None

    def check(self) -> None:
        if not self.endpoint:
            raise SubmitError("--endpoint is required for target toy")


class ToyTarget(Target):
    name = "toy"
    label = "Toy cloud"
    title = "a toy cloud of the test suite"
    accelerator_kind = "a toy accelerator name"
    accelerator_needs = "a name like 'toy-gpu'"
    accelerator_example = "toy-gpu"
    default_accelerator = "toy-gpu"
    Connection = ToyConnection
    connection_notes = {"pipeline_root": "optional", "service_account": "a toy identity"}
    cron = CronDialect(seconds=False, time_zone=False, no_time_zone="toy schedules run in UTC")
    cron_help = "5 fields, UTC"
    sent: list = []

    @classmethod
    def accelerator_error(cls, accelerator_type):
        return None if accelerator_type.startswith("toy-") else "toy accelerators start 'toy-'"

    @classmethod
    def add_connection_arguments(cls, parser):
        parser.add_argument("--endpoint", metavar="URL", help="toy: the toy cloud's API")
        return ["endpoint"]

    @classmethod
    def submit(cls, run, connection, *, run_name, enable_caching, run_record_timeout_s):
        cls.sent.append(("run", connection.endpoint, run.package.name, dict(run.params)))
        return {"run_id": "toy-run-1", "url": f"{connection.endpoint}/runs/toy-run-1"}

    @classmethod
    def schedule(cls, run, connection, *, cron, schedule_name, enable_caching, max_concurrency):
        cls.sent.append(("schedule", connection.endpoint, schedule_name, cron))
        return {"schedule_id": "toy-schedule-1", "url": f"{connection.endpoint}/schedules/1"}
