"""A loopback Dataflow v1b3 REST server for Beam's own DataflowRunner.

Beam 2.78's runner talks to Dataflow through `google-cloud-dataflow-client`
(`dataflow.JobsV1Beta3Client` / `MessagesV1Beta3Client`), over REST when `--dataflow_endpoint`
names `localhost` (apache_beam/runners/dataflow/internal/apiclient.py). The routes are that
client's (`jobs_v1_beta3/transports/rest_base.py`): create (POST .../jobs), get (GET
.../jobs/{id}), update (PUT .../jobs/{id}: cancel), messages (GET .../jobs/{id}/messages).
Every create and update body is parsed into `google.cloud.dataflow_v1beta3.Job` with unknown
fields refused (400 INVALID_ARGUMENT, as Google's front end answers), so a body the service
would refuse fails the test.

`mode` says what the "service" does with a created job:
- `run`: runs it. The runner staged the portable pipeline (`pipeline.pb`, named by the job's
  `pipelineUrl` option) in Cloud Storage (the GCS emulator); the fake reads it, points its
  environments at this process (embedded Python instead of the job's container image) and
  runs it with Beam's FnApiRunner: JOB_STATE_RUNNING, then DONE, or FAILED with the error as
  a JOB_MESSAGE_ERROR, as Dataflow reports a failed work item.
- `fail`: JOB_STATE_FAILED at once, with Dataflow's error message.
- `hang`: JOB_STATE_RUNNING until cancelled (JOB_STATE_CANCELLED once a cancel arrives).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

FAILURE = (
    "Workflow failed. Causes: S05:write shards failed., The job failed because a work item "
    "has failed 4 times. Root cause: OSError: gs://bucket/out/.tmp-1/train: permission denied"
)


@dataclass
class DataflowFake:
    server: object
    mode: str = "run"
    jobs: dict = field(default_factory=dict)  # id -> {"body", "state", "messages"}

    @property
    def endpoint(self) -> str:
        return self.server.url

    def created(self) -> list[dict]:
        return [job["body"] for job in self.jobs.values()]

    def updates(self) -> list:
        return self.server.bodies("PUT", r"/jobs/[^/]+$")


def _invalid(text: str) -> tuple[int, dict]:
    return 400, {"error": {"code": 400, "message": text, "status": "INVALID_ARGUMENT"}}


def _parse_job(raw: bytes):
    from google.cloud import dataflow_v1beta3
    from google.protobuf import json_format

    job = dataflow_v1beta3.Job.pb()()
    json_format.Parse(raw or b"{}", job, ignore_unknown_fields=False)
    return job


def routes(fake: DataflowFake) -> list:
    base = r"/v1b3/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/jobs"

    def create(recorded, match):
        try:
            job = _parse_job(recorded.raw)
        except Exception as error:  # json_format.ParseError
            return _invalid(f"Invalid JSON payload received. {error}")
        job_id = f"2026-01-01_00_00_00-{uuid.uuid4().int % 10**18}"
        entry = {"body": recorded.body, "state": "JOB_STATE_PENDING", "messages": []}
        fake.jobs[job_id] = entry
        if fake.mode == "fail":
            entry["state"] = "JOB_STATE_FAILED"
            entry["messages"].append(_message(FAILURE))
        elif fake.mode == "run":
            entry["state"] = "JOB_STATE_RUNNING"
            threading.Thread(target=_execute, args=(job, entry), daemon=True).start()
        else:
            entry["state"] = "JOB_STATE_RUNNING"
        # As Dataflow, the created job is reported pending; its state shows on the next get.
        answer = {**recorded.body, "id": job_id, "currentState": "JOB_STATE_PENDING"}
        answer["projectId"], answer["location"] = match["project"], match["location"]
        return 200, answer

    def get(recorded, match):
        entry = fake.jobs.get(match["job"])
        if entry is None:
            return 404, {"error": {"code": 404, "message": "job not found", "status": "NOT_FOUND"}}
        return 200, {
            "id": match["job"],
            "projectId": match["project"],
            "location": match["location"],
            "name": entry["body"].get("name", ""),
            "currentState": entry["state"],
            "currentStateTime": "2026-01-01T00:00:00Z",
        }

    def update(recorded, match):
        try:
            job = _parse_job(recorded.raw)
        except Exception as error:
            return _invalid(f"Invalid JSON payload received. {error}")
        entry = fake.jobs[match["job"]]
        from google.cloud import dataflow_v1beta3

        if job.requested_state == dataflow_v1beta3.JobState.JOB_STATE_CANCELLED:
            entry["state"] = "JOB_STATE_CANCELLED"
        return 200, {"id": match["job"], "currentState": entry["state"]}

    def messages(recorded, match):
        entry = fake.jobs.get(match["job"], {"messages": []})
        return 200, {"jobMessages": entry["messages"]}

    return [
        ("POST", base, create),
        ("GET", base + r"/(?P<job>[^/]+)", get),
        ("PUT", base + r"/(?P<job>[^/]+)", update),
        ("GET", base + r"/(?P<job>[^/]+)/messages", messages),
    ]


def _message(text: str) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "time": "2026-01-01T00:00:01Z",
        "messageText": text,
        "messageImportance": "JOB_MESSAGE_ERROR",
    }


def _execute(job, entry: dict) -> None:
    """Run the staged portable pipeline here, as Dataflow's workers would run it."""
    try:
        _run_staged(job)
        entry["state"] = "JOB_STATE_DONE"
    except Exception as error:
        entry["messages"].append(_message(f"Error processing pipeline: {error!r}"))
        entry["state"] = "JOB_STATE_FAILED"


def _run_staged(job) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability import python_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from google.cloud import storage
    from google.protobuf import json_format

    options = json_format.MessageToDict(job.environment.sdk_pipeline_options)["options"]
    bucket, _, name = options["pipelineUrl"][len("gs://") :].partition("/")
    blob = storage.Client.create_anonymous_client().bucket(bucket).blob(name)
    pipeline = beam_runner_api_pb2.Pipeline.FromString(blob.download_as_bytes())
    for environment in pipeline.components.environments.values():
        environment.urn = python_urns.EMBEDDED_PYTHON  # this process stands in for workers
        environment.payload = b""
    result = fn_runner.FnApiRunner().run_via_runner_api(pipeline, PipelineOptions([]))
    result.wait_until_finish()
