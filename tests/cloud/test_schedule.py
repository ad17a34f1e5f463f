"""`pipelines.remote.schedule` and the targets' cron dialects: cron checks per target and what
reaches the scheduler APIs."""

import json

import pytest

from pipelines.remote import ScheduleError, SubmitError, schedule, validate_cron
from pipelines.targets import connection

from .conftest import PROJECT, REGION, caching_flags

CONNECTION_FIELDS = ("target", "host", "namespace", "project", "region", "pipeline_root")
CONNECTION_FIELDS += ("service_account", "experiment", "tensorboard", "credentials")
CONNECTION_FIELDS += ("api_endpoint",)


def _schedule(package, **arguments):
    """`schedule` with connection fields and schedule options given side by side."""
    settings = {key: arguments.pop(key) for key in CONNECTION_FIELDS if key in arguments}
    try:  # as `contrastive schedule` reports a connection it refuses
        reached = connection(**settings)
    except SubmitError as err:
        raise ScheduleError(str(err)) from None
    return schedule(package, reached, **arguments)


@pytest.mark.parametrize(
    ("target", "cron", "expected"),
    [
        ("kubeflow", "0 0 3 * * 1", "0 0 3 * * 1"),
        ("kubeflow", "0  */15 * * * ?", "0 */15 * * * ?"),
        ("kubeflow", "0 0 9 ? * MON-FRI", "0 0 9 ? * MON-FRI"),
        ("vertex", "0 3 * * 1", "0 3 * * 1"),
        ("vertex", "TZ=Europe/Paris 0 3 * * 1", "TZ=Europe/Paris 0 3 * * 1"),
        (
            "vertex",
            "CRON_TZ=America/New_York  30 2 1 JAN,JUL *",
            "CRON_TZ=America/New_York 30 2 1 JAN,JUL *",
        ),
    ],
)
def test_schedule_valid_cron_is_normalized(target, cron, expected):
    assert validate_cron(target, cron) == expected


@pytest.mark.parametrize(
    ("target", "cron", "message"),
    [
        (
            "kubeflow",
            "0 3 * * 1",
            r"cron for kubeflow needs exactly 6 fields .* got 5; Kubeflow cron starts with seconds",
        ),
        ("kubeflow", "0 0 0 3 * * 1", "needs exactly 6 fields"),
        (
            "vertex",
            "0 0 3 * * 1",
            r"cron for vertex needs exactly 5 fields .* got 6; Vertex AI cron has no seconds",
        ),
        ("vertex", "3 * *", "needs exactly 5 fields"),
        ("kubeflow", "61 0 3 * * 1", "cron field second has a bad value '61'"),
        ("kubeflow", "0 0 3 * * 8", "cron field day-of-week has a bad value '8'"),
        ("vertex", "0 25 * * *", "cron field hour has a bad value '25'"),
        ("vertex", "0 3 * 13 *", "cron field month has a bad value '13'"),
        ("vertex", "0 3 * * FOO", "cron field day-of-week has a bad value 'FOO'"),
        ("vertex", "*/0 3 * * *", "cron field minute has a bad value '\\*/0'"),
        ("vertex", "0 3 L * *", "cron field day-of-month has a bad value 'L'"),
        ("vertex", "0 3 * * 1#2", "cron field day-of-week has a bad value '1#2'"),
        ("vertex", "0 3 H * *", "cron field day-of-month has a bad value 'H'"),
        ("vertex", "0 3 ? * 1", r"cron field day-of-month has a bad value '\?'"),
        ("kubeflow", "? 0 3 * * 1", r"cron field second has a bad value '\?'"),
        (
            "vertex",
            "TZ=Mars/Olympus_Mons 0 3 * * 1",
            "cron time zone 'Mars/Olympus_Mons' is unknown",
        ),
        ("vertex", "CRON_TZ= 0 3 * * 1", "cron time zone '' is unknown"),
        ("kubeflow", "TZ=Europe/Paris 0 0 3 * * 1", "cron for kubeflow takes no time zone prefix"),
        ("vertex", "@daily", "cron descriptors like @daily are not accepted"),
        ("vertex", "0 0 30 2 *", "cron never fires"),
        ("vertex", "   ", "cron expression is empty"),
        ("argo", "0 3 * * 1", "target must be one of kubeflow, vertex"),
    ],
)
def test_schedule_bad_cron_is_refused_with_reason(target, cron, message):
    with pytest.raises(ScheduleError, match=message):
        validate_cron(target, cron)


def test_schedule_kubeflow_recurring_run_on_the_wire(kfp_api, packages):
    result = _schedule(
        packages["kubeflow"],
        target="kubeflow",
        cron="0 0 3 * * 1",
        schedule_name="weekly-train",
        host=kfp_api.url,
        experiment="contrastive",
        params={"x": 2, "data_snapshot": "latest"},
        pipeline_root="minio://mlpipeline/root",
        service_account="pipeline-runner",
    )

    assert result == {
        "schedule_id": "rr-456",
        "url": f"{kfp_api.url}/#/recurringrun/details/rr-456",
        "cron": "0 0 3 * * 1",
    }
    assert kfp_api.bodies("POST", r"/experiments$")[0]["display_name"] == "contrastive"
    (body,) = kfp_api.bodies("POST", r"/recurringruns$")
    assert body["display_name"] == "weekly-train"
    assert body["experiment_id"] == "exp-1"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["service_account"] == "pipeline-runner"
    assert body["runtime_config"] == {
        "parameters": {"x": 2, "data_snapshot": "latest"},
        "pipeline_root": "minio://mlpipeline/root",
    }
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-pipeline"


def test_schedule_vertex_schedule_on_the_wire(vertex_api, packages):
    from google.cloud import aiplatform_v1

    result = schedule(
        packages["vertex"],
        vertex_api.connection(service_account="trainer@my-project.iam.gserviceaccount.com"),
        cron="TZ=Europe/Paris 0 3 * * 1",
        schedule_name="weekly-train",
        params={"x": 4},
    )

    assert vertex_api.calls() == [("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/schedules")]
    assert result == {
        "schedule_id": "789",
        "url": f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/"
        f"schedules/789?project={PROJECT}",
        "cron": "TZ=Europe/Paris 0 3 * * 1",
    }
    (body,) = vertex_api.bodies("POST", r"/schedules$")
    sent = aiplatform_v1.Schedule.from_json(json.dumps(body))
    assert sent.display_name == "weekly-train"
    assert sent.cron == "TZ=Europe/Paris 0 3 * * 1"
    assert sent.max_concurrent_run_count == 1
    assert sent.allow_queueing is False
    create = sent.create_pipeline_job_request
    assert create.parent == f"projects/{PROJECT}/locations/{REGION}"
    job = create.pipeline_job
    assert job.service_account == "trainer@my-project.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/pipeline-root"
    assert dict(job.runtime_config.parameter_values) == {"x": 4}
    assert job.pipeline_spec["pipelineInfo"]["name"] == "tiny-pipeline"


def test_schedule_disables_cache_so_each_run_ingests_fresh_data(kfp_api, vertex_api, packages):
    """Two scheduled runs over changed data must both ingest: the schedule carries the same
    inputs every time, so only a disabled cache (on every task, nested ones included)
    keeps the second run from reusing the first run's ingest output."""
    _schedule(
        packages["cpu"],
        target="kubeflow",
        cron="0 0 3 * * *",
        schedule_name="daily",
        host=kfp_api.url,
    )
    schedule(packages["cpu"], vertex_api.connection(), cron="0 3 * * *", schedule_name="daily")

    (kubeflow,) = kfp_api.bodies("POST", r"/recurringruns$")
    (vertex,) = vertex_api.bodies("POST", r"/schedules$")
    for spec in (
        kubeflow["pipeline_spec"],
        vertex["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"],
    ):
        assert caching_flags(spec) == {
            "root/ingest": False,
            "root/inner": False,
            "comp-inner/train": False,
        }


def test_schedule_enable_caching_keeps_the_cache(vertex_api, packages):
    schedule(
        packages["cpu"],
        vertex_api.connection(),
        cron="0 3 * * *",
        schedule_name="daily",
        enable_caching=True,
    )
    (body,) = vertex_api.bodies("POST", r"/schedules$")
    spec = body["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]
    assert set(caching_flags(spec).values()) == {True}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(target="kubeflow", cron="0 3 * * 1"), "needs exactly 6 fields"),
        (dict(target="vertex", cron="0 0 3 * * 1"), "needs exactly 5 fields"),
        (dict(target="vertex", cron="TZ=Nowhere/City 0 3 * * 1"), "time zone 'Nowhere/City'"),
        (dict(target="vertex", project=None), "--project is required"),
        (dict(target="vertex", region=None), "--region is required"),
        (dict(target="kubeflow", package_key="vertex"), "is a Vertex AI name"),
        (dict(target="vertex", package_key="kubeflow"), "is a Kubernetes resource name"),
        (
            dict(target="kubeflow", params="/nonexistent/params.yaml"),
            "params file '/nonexistent/params.yaml' is not readable",
        ),
        (dict(target="kubeflow", schedule_name=" "), "--schedule-name is required"),
        (dict(target="kubeflow", max_concurrency=0), "max_concurrency must be >= 1"),
        (dict(target="lambda"), "target must be one of"),
        (
            dict(target="vertex", experiment="sweep"),
            "--experiment is for `submit` on vertex: a Vertex AI schedule cannot file its runs "
            "under an Experiment. Received: experiment='sweep'",
        ),
        (dict(target="vertex", package_key="placeholder"), "was compiled without --image"),
    ],
)
def test_schedule_refuses_bad_input_before_any_request(
    overrides, message, kfp_api, vertex_api, packages, anonymous
):
    target = overrides["target"]
    vertex = dict(project=PROJECT, region=REGION, api_endpoint=vertex_api.server.url)
    arguments = dict(
        target=target,
        cron="0 0 3 * * 1" if target == "kubeflow" else "0 3 * * 1",
        schedule_name="weekly",
        pipeline_root="gs://bucket/root",
        credentials=anonymous if target == "vertex" else None,
        **(vertex if target == "vertex" else dict(host=kfp_api.url)),
    )
    arguments.update(overrides)
    package = packages[arguments.pop("package_key", "cpu")]

    with pytest.raises(ScheduleError, match=message) as caught:
        _schedule(package, **arguments)

    assert isinstance(caught.value, ValueError)
    assert kfp_api.requests == []
    assert vertex_api.requests == []
