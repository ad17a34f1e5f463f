"""runner="dataflow": the ingest step launches its Beam job with Beam's own DataflowRunner,
waits with a bound, and fails with Dataflow's error. Against a loopback Dataflow REST server
(`dataflow_fake.py`: the bodies checked against `dataflow_v1beta3.Job`) and the GCS emulator
(where the runner stages the pipeline); in `run` mode the fake runs the staged pipeline here,
so the committed dataset is checked byte for byte against the in-process ingest."""

import json
import re

import pytest
from google.cloud.dataflow_v1beta3 import Job, JobState
from google.protobuf import json_format

from contrastive import data
from contrastive.data.errors import IngestJobError
from tests.cloud.conftest import PROJECT, REGION
from tests.cloud.dataflow_fake import FAILURE
from tests.data_helpers import dataset_bytes, small_npz

pytestmark = pytest.mark.slow  # the DataflowRunner's job submission starts a Python process

pytest.importorskip("apache_beam")

IMAGE = "us-docker.pkg.dev/my-project/repo/contrastive:abc123"


@pytest.fixture(autouse=True)
def _beam_on_loopback(monkeypatch):
    """Two things Beam 2.78 does that a loopback test must steer round, both outside what is
    tested: its option validator refuses a --dataflow_endpoint with a port (netloc characters
    limited to letters, digits, '-' and '.': options/pipeline_options_validator.py
    validate_endpoint_url), and its GcsIO asks for Google credentials even with --no_auth
    (four retries, ~30 s): the credential cache starts as Beam leaves it when none are found.
    """
    from apache_beam.internal.gcp import auth
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

    original = PipelineOptionsValidator.validate_endpoint_url

    def with_port(self, endpoint_url):
        return original(self, re.sub(r"^(http://localhost):\d+", r"\1", endpoint_url))

    monkeypatch.setattr(PipelineOptionsValidator, "validate_endpoint_url", with_port)
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)


def _npz(tmp_path) -> str:
    return small_npz(tmp_path / "d.npz")


def _beam_options(dataflow_api, gcs) -> str:
    return (
        f"--project={PROJECT} --region={REGION} --temp_location={gcs.prefix}/beam-temp "
        f"--dataflow_endpoint={dataflow_api.endpoint.replace('127.0.0.1', 'localhost')} "
        f"--no_auth --sdk_container_image={IMAGE}"
    )


def test_dataflow_runs_the_job_and_the_step_commits_the_same_bytes(tmp_path, gcs, dataflow_api):
    source = _npz(tmp_path)
    data.ingest(source, str(tmp_path / "local"), progress=False, shard_size_bytes=700)
    manifest = data.ingest(
        source,
        str(tmp_path / "dataflow"),
        progress=False,
        shard_size_bytes=700,
        runner="dataflow",
        beam_options=_beam_options(dataflow_api, gcs),
        job_timeout=300,
    )
    assert dataset_bytes(tmp_path / "dataflow") == dataset_bytes(tmp_path / "local")
    assert manifest["writer"]["what"] == "ingest (Beam: dataflow)"
    [body] = dataflow_api.created()
    job = Job.pb()()
    json_format.ParseDict(body, job)  # enums arrive as numbers from the REST transport
    assert job.name.startswith("contrastive-ingest-")
    assert json_format.MessageToDict(job)["type"] == "JOB_TYPE_BATCH"
    options = json_format.MessageToDict(job.environment.sdk_pipeline_options)["options"]
    assert (options["project"], options["region"]) == (PROJECT, REGION)
    assert options["pipelineUrl"].startswith(f"{gcs.prefix}/beam-temp/")
    assert IMAGE in json.dumps(body["environment"])  # the workers run our image


def _failing_ingest(tmp_path, gcs, dataflow_api, **options) -> pytest.ExceptionInfo:
    with pytest.raises(IngestJobError) as raised:
        data.ingest(
            _npz(tmp_path),
            str(tmp_path / "out"),
            progress=False,
            runner="dataflow",
            beam_options=_beam_options(dataflow_api, gcs),
            **options,
        )
    return raised


def test_a_failed_dataflow_job_fails_the_ingest_with_dataflows_error(tmp_path, gcs, dataflow_api):
    dataflow_api.mode = "fail"
    raised = _failing_ingest(tmp_path, gcs, dataflow_api)
    assert FAILURE in str(raised.value)
    assert str(raised.value).startswith("the ingest's Beam job (dataflow) failed: ")
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob(".tmp-*"))  # staged units went too
    assert not (tmp_path / "out" / ".writer.json").exists()  # the lease was let go


def test_a_job_past_its_time_bound_is_cancelled(tmp_path, gcs, dataflow_api):
    dataflow_api.mode = "hang"
    raised = _failing_ingest(tmp_path, gcs, dataflow_api, job_timeout=1)
    assert "did not finish within job_timeout=1 s (state RUNNING" in str(raised.value)
    assert "it was cancelled" in str(raised.value)
    assert [JobState(update["requestedState"]) for update in dataflow_api.updates()] == [
        JobState.JOB_STATE_CANCELLED
    ]
    assert not (tmp_path / "out" / "manifest.json").exists()
