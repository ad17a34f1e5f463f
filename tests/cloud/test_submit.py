"""`pipelines.submit`: what reaches the KFP and Vertex AI APIs, and what is refused before."""

import json

import pytest
import yaml

from pipelines.submit import SubmitError, load_package, submit, vertex_job_id

from .conftest import PROJECT, REGION, caching_flags


def _spec(path):
    with open(path) as stream:
        return yaml.safe_load(stream)


def test_submit_kubeflow_sends_spec_params_root_and_service_account(kfp_api, packages):
    result = submit(
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
    submit(packages["cpu"], target="kubeflow", host=kfp_api.url, enable_caching=False)

    (run,) = kfp_api.bodies("POST", r"/runs$")
    flags = caching_flags(run["pipeline_spec"])
    assert flags == {"root/ingest": False, "root/inner": False, "comp-inner/train": False}


def test_submit_kubeflow_namespace_skips_healthz_and_scopes_experiment(kfp_api, packages):
    submit(packages["cpu"], target="kubeflow", host=kfp_api.url, namespace="team-a")

    assert not [r for r in kfp_api.requests if r.path.endswith("/healthz")]
    (listing,) = [r for r in kfp_api.requests if r.method == "GET" and "experiments" in r.path]
    assert listing.query["namespace"] == ["team-a"]
    assert kfp_api.bodies("POST", r"/experiments$")[0]["namespace"] == "team-a"


def test_submit_vertex_sends_pipeline_job(vertex_api, packages, anonymous):
    result = submit(
        packages["vertex"],
        target="vertex",
        project=PROJECT,
        region=REGION,
        pipeline_root="gs://bucket/pipeline-root",
        params={"x": 7},
        service_account="trainer@my-project.iam.gserviceaccount.com",
        run_name="Nightly Train",
        experiment="SupCon Sweep",
        credentials=anonymous,
        api_endpoint=vertex_api.url,
    )

    (request,) = vertex_api.requests
    assert request.method == "POST"
    assert request.path == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    (job_id,) = request.query["pipelineJobId"]
    assert job_id.startswith("nightly-train-") and len(job_id) == len("nightly-train-") + 14
    assert result == {
        "run_id": job_id,
        "url": f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/"
        f"{job_id}?project={PROJECT}",
    }
    job = request.body
    assert job["displayName"] == "Nightly Train"
    assert job["pipelineSpec"] == _spec(packages["vertex"])
    assert job["runtimeConfig"] == {
        "gcsOutputDirectory": "gs://bucket/pipeline-root",
        "parameterValues": {"x": 7},
    }
    assert job["serviceAccount"] == "trainer@my-project.iam.gserviceaccount.com"
    assert job["labels"] == {"experiment": "supcon-sweep"}
    resources = job["pipelineSpec"]["deploymentSpec"]["executors"]["exec-ingest"]["container"]
    assert resources["resources"]["accelerator"]["resourceType"] == "NVIDIA_L4"


def test_submit_vertex_enable_caching_false_reaches_every_task(vertex_api, packages, anonymous):
    submit(
        packages["cpu"],
        target="vertex",
        project=PROJECT,
        region=REGION,
        pipeline_root="gs://bucket/root",
        enable_caching=False,
        credentials=anonymous,
        api_endpoint=vertex_api.url,
    )
    (job,) = vertex_api.bodies("POST", "pipelineJobs")
    assert set(caching_flags(job["pipelineSpec"]).values()) == {False}


def test_submit_vertex_api_error_is_reported(recording_server, packages, anonymous):
    from pipelines.submit import VertexApiError

    denied = recording_server(
        [("POST", r".*", lambda r, m: (403, {"error": {"code": 403, "message": "denied"}}))]
    )
    with pytest.raises(VertexApiError, match="403: denied"):
        submit(
            packages["cpu"],
            target="vertex",
            project=PROJECT,
            region=REGION,
            pipeline_root="gs://bucket/root",
            credentials=anonymous,
            api_endpoint=denied.url,
        )


def test_submit_params_file_yaml_and_json(kfp_api, packages, tmp_path):
    as_yaml = tmp_path / "params.yaml"
    as_yaml.write_text("x: 11\ndata_snapshot: snap-1\n")
    as_json = tmp_path / "params.json"
    as_json.write_text(json.dumps({"x": 12}))

    submit(packages["cpu"], target="kubeflow", host=kfp_api.url, params=str(as_yaml))
    submit(packages["cpu"], target="kubeflow", host=kfp_api.url, params=as_json)

    sent = [body["runtime_config"]["parameters"] for body in kfp_api.bodies("POST", r"/runs$")]
    assert sent == [{"x": 11, "data_snapshot": "snap-1"}, {"x": 12}]


def test_submit_accelerator_from_pipeline_parameter_is_resolved(
    kfp_api, vertex_api, packages, anonymous
):
    vertex = dict(
        target="vertex",
        project=PROJECT,
        region=REGION,
        pipeline_root="gs://bucket/root",
        credentials=anonymous,
        api_endpoint=vertex_api.url,
    )
    submit(packages["param"], **vertex)  # default accel=NVIDIA_L4
    with pytest.raises(SubmitError, match="'NVIDIA_L4' is a Vertex AI name"):
        submit(packages["param"], target="kubeflow", host=kfp_api.url)
    with pytest.raises(SubmitError, match="is a Kubernetes resource name"):
        submit(packages["param"], params={"accel": "nvidia.com/gpu"}, **vertex)
    submit(packages["param"], target="kubeflow", host=kfp_api.url, params={"accel": "amd.com/gpu"})

    assert len(vertex_api.requests) == 1
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
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_submit_refuses_bad_input_before_any_request(
    case, kfp_api, vertex_api, packages, tmp_path, anonymous
):
    overrides, message = _bad_inputs(tmp_path, packages)[case]
    arguments = dict(
        package=packages["cpu"],
        host=kfp_api.url,
        credentials=anonymous if overrides.get("target") == "vertex" else None,
        api_endpoint=vertex_api.url,
    )
    arguments.update(overrides)
    package = arguments.pop("package")

    with pytest.raises(SubmitError, match=message):
        submit(package, **arguments)

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
