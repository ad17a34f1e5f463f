"""`pipelines.remote.submit`: what reaches the KFP and Vertex AI APIs, and what is refused
before."""

import json

import pytest
import yaml

from pipelines.package import load_package
from pipelines.remote import SubmitError, submit
from pipelines.targets import connection
from pipelines.targets.vertex import vertex_job_id

from .conftest import PROJECT, REGION, caching_flags

RUN_OPTIONS = ("params", "run_name", "enable_caching")


def _submit(package, **settings):
    """`submit` with connection fields and run options given side by side."""
    options = {key: settings.pop(key) for key in RUN_OPTIONS if key in settings}
    return submit(package, connection(**settings), **options)


def _spec(path):
    with open(path) as stream:
        return yaml.safe_load(stream)


def test_submit_kubeflow_sends_spec_params_root_and_service_account(kfp_api, packages):
    result = _submit(
        packages["kubeflow"],
        target="kubeflow",
        host=kfp_api.url,
        experiment="contrastive",
        params={"x": 5, "data_snapshot": "2026-11-01"},
        pipeline_root="minio://mlpipeline/root",
        service_account="pipeline-runner",
        run_name="nightly",
    )

    assert result == {"run_id": "run-123", "url": f"{kfp_api.url}/#/runs/details/run-123"}
    assert kfp_api.bodies("POST", r"/experiments$") == [
        {"display_name": "contrastive", "namespace": ""}
    ]
    (run,) = kfp_api.bodies("POST", r"/runs$")
    assert run["experiment_id"] == "exp-1"
    assert run["display_name"] == "nightly"
    assert run["service_account"] == "pipeline-runner"
    assert run["runtime_config"] == {
        "parameters": {"x": 5, "data_snapshot": "2026-11-01"},
        "pipeline_root": "minio://mlpipeline/root",
    }
    spec = _spec(packages["kubeflow"])
    sent = run["pipeline_spec"]
    assert sent["pipelineInfo"] == spec["pipelineInfo"]
    assert sent["deploymentSpec"] == spec["deploymentSpec"]
    accelerator = sent["deploymentSpec"]["executors"]["exec-ingest"]["container"]["resources"]
    assert accelerator["accelerator"]["resourceType"] == "nvidia.com/gpu"
    # No override asked for: the compile-time caching travels unchanged.
    assert set(caching_flags(sent).values()) == {True}


def test_submit_kubeflow_disable_caching_reaches_nested_tasks(kfp_api, packages):
    _submit(packages["cpu"], target="kubeflow", host=kfp_api.url, enable_caching=False)

    (run,) = kfp_api.bodies("POST", r"/runs$")
    flags = caching_flags(run["pipeline_spec"])
    assert flags == {"root/ingest": False, "root/inner": False, "comp-inner/train": False}


def test_submit_kubeflow_namespace_skips_healthz_and_scopes_experiment(kfp_api, packages):
    _submit(packages["cpu"], target="kubeflow", host=kfp_api.url, namespace="team-a")

    assert not [r for r in kfp_api.requests if r.path.endswith("/healthz")]
    (listing,) = [r for r in kfp_api.requests if r.method == "GET" and "experiments" in r.path]
    assert listing.query["namespace"] == ["team-a"]
    assert kfp_api.bodies("POST", r"/experiments$")[0]["namespace"] == "team-a"


def _job(body) -> "object":
    """A recorded body as the SDK's own type: unknown or mistyped fields raise here."""
    from google.cloud import aiplatform_v1

    return aiplatform_v1.PipelineJob.from_json(json.dumps(body))


def test_submit_vertex_sends_pipeline_job_through_the_sdk(vertex_api, packages, capsys):
    result = submit(
        packages["vertex"],
        vertex_api.connection(service_account="trainer@my-project.iam.gserviceaccount.com"),
        params={"x": 7},
        run_name="Nightly Train",
    )

    assert [call for call in vertex_api.calls() if "/storage/" not in call[1]] == [
        ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs")
    ]
    (request,) = [r for r in vertex_api.requests if r.path.endswith("/pipelineJobs")]
    (job_id,) = request.query["pipelineJobId"]
    assert job_id.startswith("nightly-train-") and len(job_id) == len("nightly-train-") + 14
    assert result == {
        "run_id": job_id,
        "url": f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/"
        f"{job_id}?project={PROJECT}",
    }
    job = _job(request.body)
    assert job.display_name == "Nightly Train"
    assert job.service_account == "trainer@my-project.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/pipeline-root"
    assert dict(job.runtime_config.parameter_values) == {"x": 7}
    spec = _spec(packages["vertex"])
    sent = request.body["pipelineSpec"]
    assert sent["pipelineInfo"] == spec["pipelineInfo"]
    assert sent["deploymentSpec"] == spec["deploymentSpec"]
    assert sent["root"] == spec["root"]
    resources = sent["deploymentSpec"]["executors"]["exec-ingest"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "NVIDIA_L4"
    # The SDK checks that the pipeline root's bucket exists before creating the job.
    assert ("GET", "/storage/v1/b/bucket") in vertex_api.calls()


def test_submit_vertex_experiment_files_the_run_under_it(vertex_api, packages):
    tensorboard = f"projects/{PROJECT}/locations/{REGION}/tensorboards/42"
    result = submit(
        packages["cpu"],
        vertex_api.connection(experiment="supcon-sweep", tensorboard=tensorboard),
        run_name="sweep-1",
    )

    store = f"/v1/projects/{PROJECT}/locations/{REGION}/metadataStores/default"
    (created,) = vertex_api.bodies("POST", r"/contexts$")
    assert created["schemaTitle"] == "system.Experiment"
    (context_request,) = [r for r in vertex_api.requests if r.path == f"{store}/contexts"]
    assert context_request.query["contextId"] == ["supcon-sweep"]
    (backing,) = vertex_api.bodies("PATCH", r"/contexts/supcon-sweep$")
    assert backing["metadata"]["backing_tensorboard_resource"] == tensorboard
    (children,) = vertex_api.bodies("POST", r"/contexts/supcon-sweep:addContextChildren$")
    run_context = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default/contexts/"
    assert children == {"childContexts": [run_context + result["run_id"]]}
    # The experiment is created before the job, the run linked to it after.
    paths = [path for _, path in vertex_api.calls()]
    assert paths.index(f"{store}/contexts") < paths.index(
        f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    )


def test_submit_vertex_enable_caching_false_reaches_every_task(vertex_api, packages):
    submit(packages["cpu"], vertex_api.connection(), enable_caching=False)

    (job,) = vertex_api.bodies("POST", "pipelineJobs$")
    assert caching_flags(job["pipelineSpec"]) == {
        "root/ingest": False,
        "root/inner": False,
        "comp-inner/train": False,
    }


@pytest.mark.parametrize(
    ("status", "exception", "message"),
    [
        (403, "Forbidden", "403 POST .* denied to trainer"),
        (503, "ServiceUnavailable", "503 POST .* backend unavailable"),
    ],
)
def test_submit_vertex_api_error_is_raised_by_the_sdk(
    status, exception, message, recording_server, vertex_api, packages, monkeypatch
):
    import google.api_core.exceptions as api

    refusing = recording_server(
        [
            ("GET", r"/storage/v1/b/bucket", lambda r, m: (200, {"projectNumber": "123456"})),
            (
                "POST",
                r".*/pipelineJobs",
                lambda r, m: (
                    status,
                    {"error": {"code": status, "message": message.split(".* ")[1]}},
                ),
            ),
        ]
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", refusing.url)
    from google.auth.credentials import AnonymousCredentials

    vertex = connection(
        target="vertex",
        project=PROJECT,
        region=REGION,
        pipeline_root="gs://bucket/root",
        credentials=AnonymousCredentials(),
        api_endpoint=refusing.url,
    )
    with pytest.raises(getattr(api, exception), match=message):
        submit(packages["cpu"], vertex)
    # No retry of a create: one request reached the API.
    assert len([r for r in refusing.requests if r.path.endswith("/pipelineJobs")]) == 1


def test_submit_params_file_yaml_and_json(kfp_api, packages, tmp_path):
    as_yaml = tmp_path / "params.yaml"
    as_yaml.write_text("x: 11\ndata_snapshot: snap-1\n")
    as_json = tmp_path / "params.json"
    as_json.write_text(json.dumps({"x": 12}))

    _submit(packages["cpu"], target="kubeflow", host=kfp_api.url, params=str(as_yaml))
    _submit(packages["cpu"], target="kubeflow", host=kfp_api.url, params=as_json)

    sent = [body["runtime_config"]["parameters"] for body in kfp_api.bodies("POST", r"/runs$")]
    assert sent == [{"x": 11, "data_snapshot": "snap-1"}, {"x": 12}]


def test_submit_accelerator_from_pipeline_parameter_is_resolved(kfp_api, vertex_api, packages):
    vertex = vertex_api.connection()
    kubeflow = connection(target="kubeflow", host=kfp_api.url)
    submit(packages["param"], vertex)  # default accel=NVIDIA_L4
    with pytest.raises(SubmitError, match="'NVIDIA_L4' is a Vertex AI name"):
        submit(packages["param"], kubeflow)
    with pytest.raises(SubmitError, match="is a Kubernetes resource name"):
        submit(packages["param"], vertex, params={"accel": "nvidia.com/gpu"})
    submit(packages["param"], kubeflow, params={"accel": "amd.com/gpu"})

    assert len(vertex_api.bodies("POST", "pipelineJobs$")) == 1
    assert kfp_api.bodies("POST", r"/runs$")[0]["runtime_config"]["parameters"] == {
        "accel": "amd.com/gpu"
    }


def _bad_inputs(tmp_path, packages):
    missing = str(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("x: [1, 2\n")
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    not_spec = tmp_path / "not-spec.yaml"
    not_spec.write_text("name: something else\n")
    vertex_ok = dict(project=PROJECT, region=REGION, pipeline_root="gs://bucket/root")
    return {
        "unknown target": (dict(target="sagemaker"), "target must be one of kubeflow, vertex"),
        "kubeflow without host": (dict(target="kubeflow", host=None), "--host is required"),
        "host without scheme": (dict(target="kubeflow", host="kfp.local"), "http:// or https://"),
        "vertex without project": (
            dict(target="vertex", **{**vertex_ok, "project": None}),
            "--project is required",
        ),
        "vertex without region": (
            dict(target="vertex", **{**vertex_ok, "region": None}),
            "--region is required",
        ),
        "vertex without pipeline root": (
            dict(target="vertex", **{**vertex_ok, "pipeline_root": None}),
            "--pipeline-root is required",
        ),
        "vertex local pipeline root": (
            dict(target="vertex", **{**vertex_ok, "pipeline_root": "/tmp/root"}),
            "must be a gs:// URI",
        ),
        "vertex service account not an e-mail": (
            dict(target="vertex", service_account="pipeline-runner", **vertex_ok),
            "service account for vertex",
        ),
        "kubeflow service account e-mail": (
            dict(target="kubeflow", service_account="a@b.iam.gserviceaccount.com"),
            "Kubernetes service account name",
        ),
        "vertex accelerator on kubeflow": (
            dict(target="kubeflow", package=packages["vertex"]),
            r"executor 'exec-ingest': accelerator type 'NVIDIA_L4' is a Vertex AI name",
        ),
        "kubeflow accelerator on vertex": (
            dict(target="vertex", package=packages["kubeflow"], **vertex_ok),
            r"executor 'exec-ingest': accelerator type 'nvidia.com/gpu' is a Kubernetes",
        ),
        "unreadable params file": (
            dict(target="kubeflow", params=missing),
            f"params file '{missing}' is not readable",
        ),
        "invalid params yaml": (
            dict(target="kubeflow", params=str(broken)),
            f"params file '{broken}' is not valid YAML or JSON",
        ),
        "params not a mapping": (
            dict(target="kubeflow", params=str(a_list)),
            "must be a mapping of parameter name to value",
        ),
        "unknown parameter": (
            dict(target="kubeflow", params={"epochs": 3}),
            "unknown pipeline parameter.s. epochs; pipeline 'tiny-pipeline' takes: "
            "data_snapshot, x",
        ),
        "parameter of the wrong type": (
            dict(target="kubeflow", params={"x": "three"}),
            "pipeline parameter 'x' must be NUMBER_INTEGER",
        ),
        "bool for an integer": (
            dict(target="kubeflow", params={"x": True}),
            "must be NUMBER_INTEGER",
        ),
        "missing package": (
            dict(target="kubeflow", package=missing),
            "package file not found",
        ),
        "package not a pipeline spec": (
            dict(target="kubeflow", package=str(not_spec)),
            "is not a KFP pipeline spec .missing pipelineInfo.name, root, schemaVersion",
        ),
        "package not yaml": (
            dict(target="kubeflow", package=str(tmp_path)),
            "package file not found",
        ),
        "placeholder image on vertex": (
            dict(target="vertex", package=packages["placeholder"], **vertex_ok),
            f"package '{packages['placeholder']}' was compiled without --image: executor "
            "'exec-ingest' runs the placeholder 'contrastive:dev', which no cluster can pull; "
            "recompile with `make compile IMAGE=REGISTRY/contrastive:TAG`. "
            "Received: image='contrastive:dev'",
        ),
        "placeholder image on kubeflow": (
            dict(target="kubeflow", package=packages["placeholder"]),
            "was compiled without --image",
        ),
        "tensorboard without experiment": (
            dict(target="vertex", tensorboard="123", **vertex_ok),
            "--tensorboard backs a Vertex AI Experiment; give --experiment NAME too",
        ),
        "tensorboard not a resource name": (
            dict(target="vertex", experiment="e", tensorboard="my-board", **vertex_ok),
            "tensorboard must be a resource name .* Received: tensorboard='my-board'",
        ),
        "tensorboard on kubeflow": (
            dict(target="kubeflow", tensorboard="123"),
            "--tensorboard is for target vertex. Received: target=.kubeflow., tensorboard=.123.",
        ),
    }


BAD_INPUT_CASES = [
    "unknown target",
    "kubeflow without host",
    "host without scheme",
    "vertex without project",
    "vertex without region",
    "vertex without pipeline root",
    "vertex local pipeline root",
    "vertex service account not an e-mail",
    "kubeflow service account e-mail",
    "vertex accelerator on kubeflow",
    "kubeflow accelerator on vertex",
    "unreadable params file",
    "invalid params yaml",
    "params not a mapping",
    "unknown parameter",
    "parameter of the wrong type",
    "bool for an integer",
    "missing package",
    "package not a pipeline spec",
    "package not yaml",
    "placeholder image on vertex",
    "placeholder image on kubeflow",
    "tensorboard without experiment",
    "tensorboard not a resource name",
    "tensorboard on kubeflow",
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_submit_refuses_bad_input_before_any_request(case, kfp_api, vertex_api, packages, tmp_path):
    overrides, message = _bad_inputs(tmp_path, packages)[case]
    from google.auth.credentials import AnonymousCredentials

    arguments = dict(package=packages["cpu"])
    if overrides.get("target") == "vertex":
        arguments.update(credentials=AnonymousCredentials(), api_endpoint=vertex_api.server.url)
    else:
        arguments.update(host=kfp_api.url)
    arguments.update(overrides)
    package = arguments.pop("package")

    with pytest.raises(SubmitError, match=message):
        _submit(package, **arguments)

    assert kfp_api.requests == []
    assert vertex_api.requests == []


def test_submit_error_is_a_value_error():
    assert issubclass(SubmitError, ValueError)


def test_submit_load_package_reads_multi_document_platform_spec(tmp_path, packages):
    with open(packages["cpu"]) as stream:
        spec = yaml.safe_load(stream)
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    path = tmp_path / "with-platform.yaml"
    path.write_text(yaml.safe_dump_all([spec, platform]))

    package = load_package(path)

    assert package.name == "tiny-pipeline"
    assert package.platform_spec == platform
    assert sorted(package.parameters) == ["data_snapshot", "x"]


def test_submit_vertex_job_id_is_valid_for_any_run_name():
    import datetime

    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert vertex_job_id("Nightly Train!", now) == "nightly-train-20260102030405"
    assert vertex_job_id("2026 run", now) == "run-2026-run-20260102030405"
    assert vertex_job_id("___", now) == "run-20260102030405"
    assert len(vertex_job_id("x" * 300, now)) <= 128


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            "PIPELINE_STATE_RUNNING",
            "Vertex had not created the run record after 0.3 s, so the run is submitted but "
            "not filed under the experiment (it runs on): ",
        ),
        (
            "PIPELINE_STATE_FAILED",
            "the run ended (PIPELINE_STATE_FAILED) before Vertex created its run record, so it "
            "is not filed under the experiment: ",
        ),
    ],
)
def test_submit_vertex_experiment_wait_for_the_run_record_is_bounded(
    state, message, recording_server, vertex_api, packages
):
    from .conftest import _vertex_routes

    def get_job_without_record(recorded, match):
        name = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{match['id']}"
        return 200, {"name": name, "state": state}

    routes = [
        (method, path, get_job_without_record if "pipelineJobs/(?P<id>" in path else handler)
        for method, path, handler in _vertex_routes({})
    ]
    server = recording_server(routes)
    connection = vertex_api.connection(api_endpoint=server.url, experiment="supcon-sweep")

    with pytest.raises(RuntimeError) as caught:
        submit(packages["cpu"], connection, run_name="sweep-1", run_record_timeout_s=0.3)

    assert str(caught.value).startswith(message)
    assert "/runs/sweep-1-" in str(caught.value)  # where the submitted run is
    assert server.bodies("POST", r"/contexts/supcon-sweep:addContextChildren$") == []
