"""`contrastive submit` / `contrastive schedule` as registered by `pipelines.cli.cloud`."""

import argparse
import dataclasses
import re

import pytest

from pipelines.cli import cloud as cloud_cli
from tests.pipeline.compiled import flat_tasks

from .conftest import PROJECT, REGION


def _parser():
    parser = argparse.ArgumentParser(prog="contrastive")
    cloud_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


COMMON_FLAGS = [
    "--target",
    "--package",
    "--host",
    "--namespace",
    "--experiment",
    "--params",
    "--pipeline-root",
    "--project",
    "--region",
    "--service-account",
    "--tensorboard",
    "--vertex-model",
]


def test_submit_cli_help_documents_every_flag(capsys):
    text = _help("submit", capsys)
    for flag in [*COMMON_FLAGS, "--run-name", "--enable-caching", "--disable-caching"]:
        # Each flag has a line of help text, not just a usage mention.
        assert re.search(rf"^\s+{flag}\b.*\S.*$", text, re.MULTILINE), flag
    assert "{kubeflow,vertex}" in text
    assert "contrastive submit --target vertex" in text


def test_schedule_cli_help_documents_every_flag(capsys):
    text = _help("schedule", capsys)
    for flag in [*COMMON_FLAGS, "--cron", "--schedule-name", "--enable-caching"]:
        assert re.search(rf"^\s+{flag}\b.*\S.*$", text, re.MULTILINE), flag
    assert "6 fields" in text and "5 fields" in text


def test_submit_cli_prints_run_id_and_url(kfp_api, packages, capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("x: 3\n")
    args = _parser().parse_args(
        [
            "submit",
            "--target",
            "kubeflow",
            "--package",
            packages["cpu"],
            "--host",
            kfp_api.url,
            "--params",
            str(params),
            "--disable-caching",
        ]
    )

    assert args.func(args) == 0

    out = capsys.readouterr().out
    assert "run id: run-123" in out
    assert f"url: {kfp_api.url}/#/runs/details/run-123" in out
    assert kfp_api.bodies("POST", r"/runs$")[0]["runtime_config"]["parameters"] == {"x": 3}


def test_submit_cli_bad_input_prints_error_and_returns_2(kfp_api, vertex_api, packages, capsys):
    args = _parser().parse_args(
        ["submit", "--target", "vertex", "--package", packages["cpu"], "--region", REGION]
    )

    assert args.func(args) == 2

    captured = capsys.readouterr()
    assert captured.err.startswith("error: --project is required for target vertex")
    assert captured.out == ""
    assert vertex_api.requests == [] and kfp_api.requests == []


def test_submit_cli_service_failure_returns_1(recording_server, packages, capsys):
    healthy = ("GET", r"/apis/v2beta1/healthz", lambda r, m: (200, {"multi_user": False}))
    broken = recording_server([healthy])  # every other path answers 404
    args = _parser().parse_args(
        ["submit", "--target", "kubeflow", "--package", packages["cpu"], "--host", broken.url]
    )

    assert args.func(args) == 1
    assert capsys.readouterr().err == (
        "error: kubeflow API answered 404 Not Found: no route for /apis/v2beta1/experiments\n"
    )


def _vertex_args(command, vertex_api, packages, *extra):
    return _parser().parse_args(
        [
            command,
            "--target",
            "vertex",
            "--package",
            packages["cpu"],
            "--project",
            PROJECT,
            "--region",
            REGION,
            "--pipeline-root",
            "gs://bucket/root",
            *extra,
        ]
    )


@pytest.fixture
def cli_reaches(vertex_api, monkeypatch):
    """The CLI's connection, pointed at a loopback server with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    def reach(url):
        real = cloud_cli.connection_from_args

        def to_loopback(args):
            return dataclasses.replace(
                real(args), credentials=AnonymousCredentials(), api_endpoint=url
            )

        monkeypatch.setattr(cloud_cli, "connection_from_args", to_loopback)

    return reach


def test_schedule_cli_prints_schedule_and_returns_0(vertex_api, cli_reaches, packages, capsys):
    cli_reaches(vertex_api.server.url)
    args = _vertex_args(
        "schedule",
        vertex_api,
        packages,
        "--cron",
        "TZ=Etc/UTC 0 3 * * 1",
        "--schedule-name",
        "weekly",
    )

    assert args.func(args) == 0

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "schedule id: 789",
        "cron: TZ=Etc/UTC 0 3 * * 1",
        f"url: https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/"
        f"schedules/789?project={PROJECT}",
    ]
    (body,) = vertex_api.bodies("POST", r"/schedules$")
    assert body["cron"] == "TZ=Etc/UTC 0 3 * * 1"


def test_submit_cli_vertex_prints_run_id_and_console_url(vertex_api, cli_reaches, packages, capsys):
    cli_reaches(vertex_api.server.url)
    args = _vertex_args("submit", vertex_api, packages, "--run-name", "first-run")

    assert args.func(args) == 0

    (request,) = [r for r in vertex_api.requests if r.path.endswith("/pipelineJobs")]
    (job_id,) = request.query["pipelineJobId"]
    assert capsys.readouterr().out.splitlines() == [
        f"run id: {job_id}",
        f"url: https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/"
        f"{job_id}?project={PROJECT}",
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            403,
            "error: vertex API answered 403: Permission 'aiplatform.pipelineJobs.create' denied "
            "(your credentials need roles/aiplatform.user on the project, and "
            "roles/iam.serviceAccountUser on --service-account)",
        ),
        (
            500,
            "error: vertex API answered 500: Internal error encountered. "
            "(a failure of the service, not of the input: try again later)",
        ),
        (
            503,
            "error: vertex API answered 503: The service is currently unavailable. "
            "(a failure of the service, not of the input: try again later)",
        ),
    ],
)
def test_submit_cli_vertex_refusal_prints_what_to_do_and_returns_1(
    status, expected, vertex_api, cli_reaches, recording_server, packages, capsys, monkeypatch
):
    message = expected.split(f"{status}: ")[1].split(" (")[0]
    failing = recording_server(
        [
            ("GET", r"/storage/v1/b/bucket", lambda r, m: (200, {"projectNumber": "123456"})),
            (
                "POST",
                r".*/pipelineJobs",
                lambda r, m: (status, {"error": {"code": status, "message": message}}),
            ),
        ]
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", failing.url)
    cli_reaches(failing.url)
    args = _vertex_args("submit", vertex_api, packages)

    assert args.func(args) == 1

    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == expected
    assert captured.out == ""


def test_schedule_cli_bad_cron_prints_error_and_returns_2(kfp_api, packages, capsys):
    args = _parser().parse_args(
        [
            "schedule",
            "--target",
            "kubeflow",
            "--package",
            packages["cpu"],
            "--host",
            kfp_api.url,
            "--cron",
            "0 3 * * 1",
            "--schedule-name",
            "weekly",
        ]
    )

    assert args.func(args) == 2
    assert "error: cron for kubeflow needs exactly 6 fields" in capsys.readouterr().err
    assert kfp_api.requests == []


def test_schedule_cli_requires_cron(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["schedule", "--target", "kubeflow", "--package", "p.yaml"])
    assert stop.value.code == 2
    assert "--cron" in capsys.readouterr().err


@pytest.fixture(scope="module")
def contrastive_vertex_package(tmp_path_factory):
    from kfp import compiler

    from pipelines.dag import build_pipeline

    path = tmp_path_factory.mktemp("contrastive") / "pipeline-vertex.yaml"
    pipeline = build_pipeline(image="us-docker.pkg.dev/p/ml/contrastive:abc", target="vertex")
    compiler.Compiler().compile(pipeline, str(path))
    return str(path)


def test_submit_cli_vertex_model_reaches_the_champion_gate_parameters(
    vertex_api, cli_reaches, contrastive_vertex_package, tmp_path, capsys
):
    params = tmp_path / "params.yaml"
    params.write_text("registry: gs://bucket/registry\nprofile: full\n")
    cli_reaches(vertex_api.server.url)
    args = _parser().parse_args(
        ["submit", "--target", "vertex", "--package", contrastive_vertex_package]
        + ["--project", PROJECT, "--region", REGION, "--pipeline-root", "gs://bucket/root"]
        + ["--params", str(params), "--vertex-model", "contrastive-fmnist"]
    )

    assert args.func(args) == 0, capsys.readouterr().err

    (job,) = vertex_api.bodies("POST", "pipelineJobs$")
    assert job["runtimeConfig"]["parameterValues"] == {
        "registry": "gs://bucket/registry",
        "profile": "full",
        "vertex_model": "contrastive-fmnist",
        "vertex_project": PROJECT,
        "vertex_region": REGION,
    }
    # What reaches the compare-and-report task (issue 24 item 3: the root inputs were set but
    # no task consumed them): its inputs, resolved as the backend resolves a task's
    # componentInputParameter from the run's parameter values.
    values = job["runtimeConfig"]["parameterValues"]
    # The task sits in the retrain_when condition's sub-DAG: flat_tasks follows the
    # pipelinechannel inputs out to the root's componentInputParameter, as the driver does.
    task = flat_tasks(job["pipelineSpec"])["compare-and-report"]
    resolved = {
        name: values.get(spec["componentInputParameter"])
        for name, spec in task["inputs"]["parameters"].items()
        if "componentInputParameter" in spec
    }
    assert {key: resolved[key] for key in ("vertex_model", "vertex_project", "vertex_region")} == {
        "vertex_model": "contrastive-fmnist",
        "vertex_project": PROJECT,
        "vertex_region": REGION,
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--target", "kubeflow", "--host", "http://127.0.0.1:9"],
            "error: --vertex-model is for target vertex. Received: target='kubeflow', "
            "vertex_model='contrastive'",
        ),
        (
            ["--target", "vertex", "--project", PROJECT, "--region", REGION]
            + ["--pipeline-root", "gs://bucket/root"],
            "error: --vertex-model needs the champion registry on Cloud Storage: set the "
            "pipeline parameter registry to a gs:// prefix in --params. Received: registry=''",
        ),
    ],
)
def test_submit_cli_vertex_model_refused_before_any_request(
    extra, message, vertex_api, contrastive_vertex_package, capsys
):
    args = _parser().parse_args(
        ["submit", "--package", contrastive_vertex_package, "--vertex-model", "contrastive"] + extra
    )

    assert args.func(args) == 2
    assert capsys.readouterr().err.strip() == message
    assert vertex_api.requests == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            '{"error": {"code": 403, "message": "Permission denied on bucket"}}',
            "Permission denied on bucket",
        ),
        # the KFP API gateway's shape (grpc-gateway): error and message are strings
        (
            '{"error": "run name is empty", "code": 3, "message": "run name is empty", '
            '"details": []}',
            "run name is empty",
        ),
        ('{"error": "only the error text", "code": 3}', "only the error text"),
        ("<html>bad gateway</html>", "<html>bad gateway</html>"),
    ],
)
def test_kfp_api_errors_show_the_message_of_either_body_shape(body, detail):
    import kfp_server_api

    error = kfp_server_api.ApiException(status=400, reason="Bad Request")
    error.body = body
    assert cloud_cli._other_error_message("Kubeflow", error) == (
        f"Kubeflow API answered 400 Bad Request: {detail}"
    )
