"""`contrastive submit` / `contrastive schedule` as registered by `pipelines.cloud_cli`."""

import argparse
import re

import pytest

from pipelines import cloud_cli

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
    "--run-name",
]


def test_submit_cli_help_documents_every_flag(capsys):
    text = _help("submit", capsys)
    for flag in [*COMMON_FLAGS, "--enable-caching", "--disable-caching"]:
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
    assert capsys.readouterr().err.startswith("error: submission to kubeflow failed")


def test_schedule_cli_prints_schedule_and_returns_0(vertex_api, packages, capsys, monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    from pipelines import schedule as schedule_module

    real = schedule_module.schedule

    def with_test_endpoint(*args, **kwargs):
        return real(
            *args, credentials=AnonymousCredentials(), api_endpoint=vertex_api.url, **kwargs
        )

    monkeypatch.setattr(cloud_cli, "schedule", with_test_endpoint)
    args = _parser().parse_args(
        [
            "schedule",
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
            "--cron",
            "TZ=Etc/UTC 0 3 * * 1",
            "--schedule-name",
            "weekly",
        ]
    )

    assert args.func(args) == 0

    out = capsys.readouterr().out
    assert "schedule id: 789" in out and "cron: TZ=Etc/UTC 0 3 * * 1" in out
    (body,) = vertex_api.bodies("POST", r"/schedules$")
    assert body["cron"] == "TZ=Etc/UTC 0 3 * * 1"


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
