"""The loopback KFP and Vertex AI fakes refuse what the real services refuse.

Each fake parses a request body into the service's own schema (`aiplatform_v1` proto messages,
`kfp_server_api` models) before answering. These tests send bodies the services would refuse,
through the official clients where a client can be made to send one, and check the answer.
"""

import json
import urllib.error
import urllib.request

import pytest

from pipelines.remote import schedule, submit
from pipelines.targets import connection

from .conftest import PROJECT, REGION, _kfp_type_errors


def _post(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---------------------------------------------------------------- Vertex AI


def _with_extra_field(monkeypatch, base, name: str, value) -> None:
    """Makes the SDK's REST transport add `name: value` to the body of the `base` method."""
    real = base._get_request_body_json

    def body_json(transcoded_request):
        body = json.loads(real(transcoded_request))
        body[name] = value
        return json.dumps(body)

    monkeypatch.setattr(base, "_get_request_body_json", staticmethod(body_json))


def test_fake_vertex_refuses_an_unknown_pipeline_job_field_like_vertex(
    vertex_api, packages, monkeypatch
):
    import google.api_core.exceptions as api
    from google.cloud.aiplatform_v1.services.pipeline_service.transports import rest_base

    base = rest_base._BasePipelineServiceRestTransport._BaseCreatePipelineJob
    _with_extra_field(monkeypatch, base, "pipelineRot", "gs://bucket/typo")

    with pytest.raises(api.BadRequest, match='no field named "pipelineRot"') as caught:
        submit(packages["cpu"], vertex_api.connection())

    assert caught.value.code == 400
    assert "Invalid JSON payload received" in caught.value.message
    # One create reached the fake and was refused there; the SDK did not go on to poll a job.
    (refused,) = [r for r in vertex_api.requests if r.path.endswith("/pipelineJobs")]
    assert refused.body["pipelineRot"] == "gs://bucket/typo"
    assert not [r for r in vertex_api.requests if "/pipelineJobs/" in r.path]


def test_fake_vertex_refuses_a_wrongly_typed_schedule_field(vertex_api, packages, monkeypatch):
    import google.api_core.exceptions as api
    from google.cloud.aiplatform_v1.services.schedule_service.transports import rest_base

    base = rest_base._BaseScheduleServiceRestTransport._BaseCreateSchedule
    _with_extra_field(monkeypatch, base, "maxConcurrentRunCount", "two")

    with pytest.raises(api.BadRequest, match="maxConcurrentRunCount"):
        schedule(
            packages["cpu"],
            vertex_api.connection(),
            cron="0 3 * * *",
            schedule_name="nightly",
        )


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("pipelineJobs?pipelineJobId=j", b"{not json", "Invalid JSON payload received."),
        ("pipelineJobs?pipelineJobId=j", b'{"displayName": 3}', "displayName"),
        ("schedules", b'{"cron": "0 3 * * *", "createPipelineJobRequest": {"x": 1}}', '"x"'),
        ("models:upload", b'{"model": {"displayName": "m", "artifactUri": 1}}', "artifactUri"),
        ("models:upload", b'{"model": {"displayName": "m"}, "modelID": "m"}', '"modelID"'),
    ],
)
def test_fake_vertex_answers_a_malformed_body_with_invalid_argument(
    vertex_api, route, body, message
):
    url = f"{vertex_api.server.url}/v1/projects/{PROJECT}/locations/{REGION}/{route}"

    status, answer = _post(url, body)

    assert status == 400
    error = answer["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith("Invalid JSON payload received.")
    assert message in error["message"]
    (detail,) = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"] == [{"description": error["message"]}]
    # The answer is a google.rpc.Status the SDK's error parser reads as such.
    import google.api_core.exceptions as api
    import requests

    response = requests.Response()
    response.status_code, response._content = status, json.dumps(answer).encode()
    response.request = requests.Request("POST", url).prepare()
    parsed = api.from_http_response(response)
    assert isinstance(parsed, api.BadRequest)
    assert parsed.message.endswith(error["message"])


def test_fake_vertex_accepts_a_well_formed_body(vertex_api):
    url = f"{vertex_api.server.url}/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"

    status, answer = _post(url + "?pipelineJobId=j1", b'{"displayName": "d", "labels": {"a": "b"}}')

    assert status == 200
    assert answer["name"] == f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/j1"


# ---------------------------------------------------------------- Kubeflow Pipelines


def _kfp(kfp_api):
    return connection(target="kubeflow", host=kfp_api.url)


def test_fake_kfp_refuses_an_unknown_run_field_like_the_api_server(kfp_api, packages, monkeypatch):
    import kfp_server_api

    real = kfp_server_api.ApiClient.sanitize_for_serialization

    def with_typo(self, obj):
        body = real(self, obj)
        if isinstance(obj, kfp_server_api.V2beta1Run):
            body["runtime_confg"] = body.pop("runtime_config")
        return body

    monkeypatch.setattr(kfp_server_api.ApiClient, "sanitize_for_serialization", with_typo)

    with pytest.raises(kfp_server_api.ApiException) as caught:
        submit(packages["cpu"], _kfp(kfp_api))

    assert caught.value.status == 400
    message = 'V2beta1Run: unknown field "runtime_confg"'
    assert json.loads(caught.value.body) == {
        "error": message,
        "code": 3,
        "message": message,
        "details": [],
    }


def test_fake_kfp_refuses_a_bad_recurring_run_mode(kfp_api, packages, monkeypatch):
    import kfp_server_api

    real = kfp_server_api.ApiClient.sanitize_for_serialization

    def bad_mode(self, obj):
        body = real(self, obj)
        if isinstance(obj, kfp_server_api.V2beta1RecurringRun):
            body["mode"] = "ENABLED"
        return body

    monkeypatch.setattr(kfp_server_api.ApiClient, "sanitize_for_serialization", bad_mode)

    with pytest.raises(kfp_server_api.ApiException, match="invalid value 'ENABLED'") as caught:
        schedule(packages["cpu"], _kfp(kfp_api), cron="0 0 3 * * *", schedule_name="nightly")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("runs", b"[]", "request body is not a JSON object"),
        (
            "runs",
            b'{"display_name": "r", "runtime_config": {"params": {}}}',
            'unknown field "params"',
        ),
        ("runs", b'{"display_name": ["r"]}', "V2beta1Run.display_name: expected str, got list"),
        ("experiments", b'{"name": "e"}', 'V2beta1Experiment: unknown field "name"'),
        ("experiments", b"{}", "experiment display_name is empty"),
        (
            "recurringruns",
            b'{"display_name": "s", "trigger": {"cron_schedule": {"cron": "x", "start": 1}}}',
            'V2beta1RecurringRun.trigger.cron_schedule: unknown field "start"',
        ),
        ("recurringruns", b'{"display_name": "s", "no_catchup": "yes"}', "expected bool"),
        ("recurringruns", b'{"display_name": 7}', ".display_name: expected str, got int"),
        ("recurringruns", b'{"max_concurrency": "two"}', "expected int64, got 'two'"),
        (
            "runs",
            b'{"display_name": "r", "created_at": "yesterday"}',
            "V2beta1Run: Failed to parse `yesterday` as datetime object",
        ),
    ],
)
def test_fake_kfp_answers_a_malformed_body_with_invalid_argument(kfp_api, route, body, message):
    status, answer = _post(f"{kfp_api.url}/apis/v2beta1/{route}", body)

    assert status == 400
    assert message in answer["message"]
    assert answer == {
        "error": answer["message"],
        "code": 3,
        "message": answer["message"],
        "details": [],
    }
    # The status part is the API's own google.rpc Status model.
    status_part = {k: v for k, v in answer.items() if k != "error"}
    assert _kfp_type_errors(status_part, "GoogleRpcStatus", "GoogleRpcStatus") == []


def test_fake_kfp_accepts_what_kfp_client_sends(kfp_api, packages):
    submit(packages["cpu"], _kfp(kfp_api), params={"x": 3})
    schedule(packages["cpu"], _kfp(kfp_api), cron="0 0 3 * * *", schedule_name="nightly")

    posted = [(r.path, r.raw) for r in kfp_api.requests if r.method == "POST"]
    assert [path for path, _ in posted] == [
        "/apis/v2beta1/experiments",
        "/apis/v2beta1/runs",
        "/apis/v2beta1/experiments",
        "/apis/v2beta1/recurringruns",
    ]
    models = ["V2beta1Experiment", "V2beta1Run", "V2beta1Experiment", "V2beta1RecurringRun"]
    for (_, raw), model in zip(posted, models, strict=True):
        assert _kfp_type_errors(json.loads(raw), model, model) == []
