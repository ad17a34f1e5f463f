"""`pipelines.targets.trainjob` against a loopback fake of the Kubernetes API (127.0.0.1): it
records the TrainJob body and plays the job's status transitions and its pods' growing logs."""

import http.server
import json
import os
import re
import threading
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from pipelines.targets.trainjob import (
    POLL_SECONDS,
    POLL_VARIABLE,
    TrainJobError,
    poll_seconds,
    run_trainjob,
    trainjob_manifest,
)

NAMESPACE = "team-ml"
JOBS = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NAMESPACE}/trainjobs"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def _status(kind=None, reason="", message=""):
    conditions = [{"type": "Created", "status": "True", "reason": "JobSetCreated"}]
    if kind:
        conditions.append({"type": kind, "status": "True", "reason": reason, "message": message})
    return {"conditions": conditions}


# The launcher's own pod, as the API returns it: the run's service account and the pod's uid.
LAUNCHER_POD = "contrastive-abc12-system-container-impl-123"
LAUNCHER_POD_BODY = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": LAUNCHER_POD, "namespace": "team-ml", "uid": "0c7f-uid"},
    "spec": {"serviceAccountName": "default-editor", "containers": []},
}


class FakeKubernetes:
    """`script`: what each GET of the job answers, in order (the last one repeats); "deleted"
    answers 404. Each pod's log grows by one line per GET of the job. `on_create(body)` plays
    the pods' work when the job is created (e.g. writes the model directory)."""

    def __init__(self, script, pods=("job-node-0-0-x1", "job-node-0-1-x2"), on_create=None):
        self.script, self.pods, self.on_create = list(script), pods, on_create
        self.created, self.deleted, self.selectors, self.gets = [], [], [], 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert urlparse(self.path).path == JOBS
                fake.created.append(body)
                if fake.on_create is not None:
                    fake.on_create(body)
                self._send(201, body)

            def do_DELETE(self):  # noqa: N802
                fake.deleted.append(urlparse(self.path).path)
                self._send(200, {"kind": "Status", "status": "Success"})

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                if url.path.startswith(JOBS + "/"):
                    step = fake.script[min(fake.gets, len(fake.script) - 1)]
                    fake.gets += 1
                    if step == "deleted":
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(200, {**fake.created[-1], "status": step})
                if url.path == PODS:
                    fake.selectors.append(parse_qs(url.query)["labelSelector"][0])
                    items = [{"metadata": {"name": pod}} for pod in fake.pods]
                    return self._send(200, {"kind": "PodList", "metadata": {}, "items": items})
                if url.path == f"{PODS}/{LAUNCHER_POD}":
                    return self._send(200, LAUNCHER_POD_BODY)
                if url.path.startswith(PODS + "/") and url.path.endswith("/log"):
                    pod = url.path.split("/")[-2]
                    lines = [f"{pod} epoch {i + 1}" for i in range(fake.gets)]
                    return self._send(200, "\n".join(lines) + "\n", "text/plain")
                return self._send(404, {"kind": "Status", "code": 404})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_client = client.ApiClient(configuration)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kubernetes_api():
    fakes = []

    def start(script, **kwargs):
        fakes.append(FakeKubernetes(script, **kwargs))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.close()


def _manifest():
    return trainjob_manifest(
        "pretrain-supcon-1a2b",
        image="registry.example.com/ml/contrastive-jax:1a2b",
        command=["contrastive", "pretrain", "--data", "gs://b/d", "--output", "/mnt/out"],
        num_nodes=2,
        gpus_per_node=4,
        env={"KERAS_BACKEND": "jax"},
    )


def _run(fake, lines, **kwargs):
    return run_trainjob(
        _manifest(),
        NAMESPACE,
        api_client=fake.api_client,
        write=lines.append,
        sleep=lambda seconds: None,
        **kwargs,
    )


def test_the_body_names_the_jax_runtime_nodes_gpus_and_image():
    assert _manifest() == {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": "pretrain-supcon-1a2b",
            "labels": {"app.kubernetes.io/part-of": "contrastive"},
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": "jax-distributed",
            },
            "trainer": {
                "image": "registry.example.com/ml/contrastive-jax:1a2b",
                "command": [
                    "contrastive",
                    "pretrain",
                    "--data",
                    "gs://b/d",
                    "--output",
                    "/mnt/out",
                ],
                "numNodes": 2,
                "env": [{"name": "KERAS_BACKEND", "value": "jax"}],
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": 4}},
            },
            # Kubeflow Trainer >= v2.2.0: the pods' settings patch the runtime's `node` job.
            "runtimePatches": [
                {
                    "manager": "contrastive.launcher",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "metadata": {
                                                        "annotations": {
                                                            "sidecar.istio.io/inject": "false"
                                                        }
                                                    },
                                                    "spec": {},
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def test_running_then_succeeded_returns_and_streams_every_line_once(kubernetes_api):
    fake = kubernetes_api([_status(), _status(), _status("Complete", "JobSetCompleted")])
    lines = []
    status = _run(fake, lines)
    assert status == _status("Complete", "JobSetCompleted")
    assert fake.created == [_manifest()]  # the body as sent, parsed back
    assert set(fake.selectors) == {"jobset.sigs.k8s.io/jobset-name=pretrain-supcon-1a2b"}
    assert lines == [
        f"{pod}: {pod} epoch {epoch}"
        for epoch in (1, 2, 3)
        for pod in ("job-node-0-0-x1", "job-node-0-1-x2")
    ]


def test_running_then_failed_raises_with_the_jobs_reason(kubernetes_api):
    fake = kubernetes_api(
        [_status(), _status("Failed", "BackoffLimitExceeded", "node-0-1 exited with code 1")]
    )
    lines = []
    with pytest.raises(TrainJobError) as raised:
        _run(fake, lines)
    assert str(raised.value) == (
        "TrainJob team-ml/pretrain-supcon-1a2b failed: BackoffLimitExceeded: "
        "node-0-1 exited with code 1"
    )
    assert lines[-1] == "job-node-0-1-x2: job-node-0-1-x2 epoch 2"  # the last lines shown


def test_deleted_while_running_raises(kubernetes_api):
    fake = kubernetes_api([_status(), "deleted"])
    with pytest.raises(TrainJobError) as raised:
        _run(fake, [])
    assert str(raised.value) == "TrainJob team-ml/pretrain-supcon-1a2b was deleted while running"
    assert fake.deleted == []


def test_past_the_timeout_the_job_is_deleted(kubernetes_api):
    fake = kubernetes_api([_status()])
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(TrainJobError) as raised:
        _run(fake, [], timeout=25.0, clock=lambda: next(ticks))
    assert str(raised.value) == (
        "TrainJob team-ml/pretrain-supcon-1a2b ran past the timeout of 25 s; deleted it"
    )
    assert fake.deleted == [f"{JOBS}/pretrain-supcon-1a2b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "Pretrain_1"},
            "a TrainJob name must be a DNS label. Received: name='Pretrain_1'",
        ),
        ({"num_nodes": 0}, "num_nodes must be an int >= 1. Received: num_nodes=0"),
        ({"gpus_per_node": -1}, "gpus_per_node must be an int >= 0. Received: gpus_per_node=-1"),
    ],
)
def test_bad_trainjob_settings_are_refused(kwargs, message):
    arguments = {"name": "job", "image": "i", "command": ["contrastive"], "num_nodes": 2}
    with pytest.raises(ValueError) as raised:
        trainjob_manifest(**{**arguments, **kwargs})
    assert str(raised.value) == message


def test_the_body_takes_the_gpu_resource_the_runtime_and_env_values_as_strings():
    body = trainjob_manifest(
        "job",
        image="i",
        command=["contrastive"],
        num_nodes=1,
        gpus_per_node=2,
        gpu_resource="amd.com/gpu",
        runtime="jax-distributed-rocm",
        env={"NCCL_DEBUG": "INFO", "XLA_PYTHON_CLIENT_MEM_FRACTION": 0.9},
    )
    trainer = body["spec"]["trainer"]
    assert body["spec"]["runtimeRef"]["name"] == "jax-distributed-rocm"
    assert trainer["resourcesPerNode"] == {"limits": {"amd.com/gpu": 2}}
    # a Kubernetes EnvVar's value is a string
    assert trainer["env"] == [
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": "XLA_PYTHON_CLIENT_MEM_FRACTION", "value": "0.9"},
    ]


def _kubeconfig(tmp_path, fake, namespace=None):
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "fake", "cluster": {"server": fake.api_client.configuration.host}}
                ],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "fake"}
                        | ({"namespace": namespace} if namespace else {}),
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("script", "code", "message"),
    [
        ([_status(), _status("Complete", "JobSetCompleted")], 0, ""),
        (
            [_status("Failed", "BackoffLimitExceeded", "node-0-0 exited with code 1")],
            1,
            "error: TrainJob team-ml/supcon-1 failed: BackoffLimitExceeded: node-0-0 exited "
            "with code 1",
        ),
    ],
)
def test_cli_trainjob_creates_follows_and_exits_with_the_jobs_outcome(
    kubernetes_api, tmp_path, capsys, script, code, message
):
    from pipelines.cli import main

    fake = kubernetes_api(script)
    kubeconfig = _kubeconfig(tmp_path, fake)
    step = ["pretrain", "--data", "gs://b/d", "--output", "/mnt/shared/supcon"]
    assert (
        main(
            ["trainjob", "--namespace", NAMESPACE, "--name", "supcon-1", "--image", "img:1"]
            + ["--nodes", "3", "--gpus-per-node", "8", "--kubeconfig", kubeconfig]
            + ["--poll-seconds", "0.01", "--", *step]
        )
        == code
    )
    trainer = fake.created[0]["spec"]["trainer"]
    assert trainer["command"] == ["contrastive", *step]
    assert (trainer["numNodes"], trainer["resourcesPerNode"]) == (
        3,
        {"limits": {"nvidia.com/gpu": 8}},
    )
    captured = capsys.readouterr()
    assert "job-node-0-0-x1: job-node-0-0-x1 epoch 1" in captured.out
    assert captured.err.strip() == message


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "ten"])
def test_a_poll_interval_that_is_not_a_positive_number_is_refused_by_name(text, capsys):
    from pipelines.cli import main

    with pytest.raises(ValueError, match=f"{POLL_VARIABLE} must be a positive number"):
        poll_seconds(text, POLL_VARIABLE)
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["trainjob", "--namespace", "n", "--name", "j", "--image", "i:1"]
            + ["--poll-seconds", text, "--", "pretrain"]
        )
    assert exit_info.value.code == 2
    assert f"--poll-seconds must be a positive number of seconds. Received: {text!r}" in (
        capsys.readouterr().err
    )
    assert poll_seconds("", POLL_VARIABLE) == POLL_SECONDS == 10.0
    assert poll_seconds("2.5", POLL_VARIABLE) == 2.5


# ---------------------------------------------------------------- a pipeline step's TrainJob


def _launcher_env(tmp_path, **options):
    """The CONTRASTIVE_LAUNCHER value the compiled Kubeflow pipeline gives its pretraining task
    (2 nodes x 4 GPUs; `options`: more compile options)."""
    import yaml
    from kfp import compiler

    from pipelines.dag import build_pipeline

    path = tmp_path / "pipeline.yaml"
    pipeline = build_pipeline(
        image="registry.example.com/ml/contrastive-jax:1a2b",
        target="kubeflow",
        replicas=2,
        accelerator_count=4,
        backend="jax",
        **options,
    )
    compiler.Compiler().compile(pipeline, str(path))
    executor = next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]
    env = executor["exec-pretrain-encoder"]["container"]["env"]
    return next(item["value"] for item in env if item["name"] == "CONTRASTIVE_LAUNCHER")


def _pods_write_a_model_directory(metrics):
    """What the TrainJob's process 0 leaves at its --output: a complete model directory."""
    from contrastive import storage

    def write(body):
        command = body["spec"]["trainer"]["command"]
        output = command[command.index("--output") + 1]
        storage.write_json(f"{output}/metrics.json", metrics)
        storage.write_text(f"{output}/COMPLETE", "2026-11-30T00:00:00Z")

    return write


@pytest.fixture
def in_the_launcher_pod(monkeypatch, tmp_path):
    """The launcher's environment: the compiled task's CONTRASTIVE_LAUNCHER, a kubeconfig for
    the fake (no in-cluster service account here)."""

    def enter(fake):
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path, fake, namespace=NAMESPACE))
        monkeypatch.setenv("CONTRASTIVE_LAUNCHER", _launcher_env(tmp_path))
        monkeypatch.setenv("HOSTNAME", LAUNCHER_POD)  # Kubernetes names a pod's host so
        monkeypatch.setenv(POLL_VARIABLE, "0.01")  # the fake needs no 10 s between looks

    return enter


def _component(name):
    import components

    return getattr(components.build("registry.example.com/ml/contrastive-jax:1a2b"), name)


def test_a_pipeline_training_step_runs_as_a_trainjob_and_exposes_its_outputs(
    kubernetes_api, gcs, in_the_launcher_pod, tmp_path
):
    from kfp import dsl

    written = {"method": "supcon", "final_loss": 3.25, "knn_accuracy": 0.75, "epochs": 3}
    fake = kubernetes_api(
        [_status(), _status("Complete", "JobSetCompleted")],
        on_create=_pods_write_a_model_directory(written),
    )
    in_the_launcher_pod(fake)
    encoder = dsl.Model(uri=f"{gcs.prefix}/pretrain-encoder/encoder_model")
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    _component("pretrain_encoder").python_func(
        dataset=dsl.Dataset(uri=f"{gcs.prefix}/ingest-data/dataset"),
        encoder_model=encoder,
        metrics=metrics,
        method="supcon",
        profile="tiny",
        epochs=3,
        distribution="data_parallel",
        tensorboard_name="pretrain-supcon",
        job_id="run-7",
    )
    [body] = fake.created
    assert re.fullmatch(r"pretrain-supcon-[0-9a-f]{8}", body["metadata"]["name"])
    trainer = body["spec"]["trainer"]
    assert body["spec"]["runtimeRef"]["name"] == "jax-distributed"
    assert (trainer["image"], trainer["numNodes"]) == (
        "registry.example.com/ml/contrastive-jax:1a2b",
        2,
    )
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 4}}
    assert trainer["env"] == [{"name": "KERAS_BACKEND", "value": "jax"}]
    # The step's own command, reading and writing at the artifacts' URIs.
    assert trainer["command"] == [
        "contrastive",
        "pretrain",
        "--data",
        f"{gcs.prefix}/ingest-data/dataset",
        "--output",
        f"{gcs.prefix}/pretrain-encoder/encoder_model",
        "--profile",
        "tiny",
        "--method",
        "supcon",
        "--override",
        "train.epochs=3",
        "--override",
        "train.seed=0",
        "--override",
        'train.distribution="data_parallel"',
        "--durable-dir",
        f"{gcs.prefix}/pretrain-encoder/checkpoints",  # beside the output: every attempt's
    ]
    # The job runs as the launcher pod's service account and goes when the pod goes.
    pod = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = pod["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["spec"] == {"serviceAccountName": "default-editor"}
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": LAUNCHER_POD, "uid": "0c7f-uid"}
    ]
    # The outputs are the TrainJob's, read back at the artifact's URI.
    assert metrics.metadata == {"final_loss": 3.25, "knn_accuracy": 0.75, "epochs": 3.0}
    assert encoder.metadata == {"method": "supcon", "kind": "encoder", "framework": "keras"}
    assert not os.path.exists(encoder.path)  # nothing local for KFP to upload over it


def test_the_classifier_trainjob_reads_the_encoder_at_its_uri(
    kubernetes_api, gcs, in_the_launcher_pod, tmp_path
):
    from kfp import dsl

    written = {"method": "simclr", "mode": "linear", "val_accuracy": 0.5}
    fake = kubernetes_api(
        [_status("Complete", "JobSetCompleted")],
        on_create=_pods_write_a_model_directory(written),
    )
    in_the_launcher_pod(fake)
    model = dsl.Model(uri=f"{gcs.prefix}/train-classifier/model")
    _component("train_classifier").python_func(
        dataset=dsl.Dataset(uri=f"{gcs.prefix}/dataset"),
        encoder_model=dsl.Model(uri=f"{gcs.prefix}/encoder_model"),
        model=model,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        mode="linear",
        tensorboard_root=f"{gcs.prefix}/tensorboard",
        tensorboard_name="classifier-simclr",
    )
    command = fake.created[0]["spec"]["trainer"]["command"]
    assert command[1:12] == [
        "train",
        "--data",
        f"{gcs.prefix}/dataset",
        "--output",
        f"{gcs.prefix}/train-classifier/model",
        "--profile",
        "quick",
        "--encoder-model",
        f"{gcs.prefix}/encoder_model",
        "--mode",
        "linear",
    ]
    assert command[-4:] == [
        "--tensorboard-dir",
        f"{gcs.prefix}/tensorboard/classifier-simclr",
        "--durable-dir",
        f"{gcs.prefix}/train-classifier/checkpoints",
    ]
    assert model.metadata == {"method": "simclr", "mode": "linear", "framework": "keras"}


def test_a_failed_trainjob_fails_the_step_with_its_reason(
    kubernetes_api, gcs, in_the_launcher_pod, tmp_path
):
    from kfp import dsl

    fake = kubernetes_api([_status("Failed", "BackoffLimitExceeded", "node-0-1 exited 1")])
    in_the_launcher_pod(fake)
    with pytest.raises(TrainJobError, match=r"failed: BackoffLimitExceeded: node-0-1 exited 1$"):
        _component("train_baseline").python_func(
            dataset=dsl.Dataset(uri=f"{gcs.prefix}/dataset"),
            model=dsl.Model(uri=f"{gcs.prefix}/model"),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        )
    assert fake.created[0]["spec"]["trainer"]["command"][1:2] == ["train"]
    assert "--baseline" in fake.created[0]["spec"]["trainer"]["command"]


def test_a_trainjob_that_completes_without_a_model_fails_the_step(
    kubernetes_api, gcs, in_the_launcher_pod, tmp_path
):
    from kfp import dsl

    fake = kubernetes_api([_status("Complete", "JobSetCompleted")])
    in_the_launcher_pod(fake)
    with pytest.raises(TrainJobError, match="holds no complete model directory"):
        _component("train_baseline").python_func(
            dataset=dsl.Dataset(uri=f"{gcs.prefix}/dataset"),
            model=dsl.Model(uri=f"{gcs.prefix}/model"),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        )


@pytest.mark.parametrize(
    ("dataset", "model", "name"),
    [
        ("minio://mlpipeline/v2/artifacts/dataset", "gs://b/model", "dataset"),
        ("gs://b/dataset", "/minio/mlpipeline/model", "output"),
    ],
)
def test_uris_the_trainjob_pods_cannot_reach_are_refused_before_any_job(
    kubernetes_api, in_the_launcher_pod, tmp_path, dataset, model, name
):
    from kfp import dsl

    fake = kubernetes_api([_status()])
    in_the_launcher_pod(fake)
    with pytest.raises(ValueError) as raised:
        _component("train_baseline").python_func(
            dataset=dsl.Dataset(uri=dataset),
            model=dsl.Model(uri=model),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
            checkpoint_root="none",
        )
    uri = dataset if name == "dataset" else model
    assert str(raised.value) == (
        f"the TrainJob's pods read and write {name} at its URI, so it must be in an object "
        "store they reach (gs://; s3:// needs tensorflow-io in the image): run the pipeline "
        f"with a gs:// pipeline root. Received: {name}={uri!r}"
    )
    assert fake.created == []


def test_a_launcher_stopped_by_sigterm_deletes_its_trainjob(kubernetes_api):
    # Issue 24 item 6: `--task-timeout` (the pod's activeDeadlineSeconds) or a cancelled run
    # SIGTERMs the launcher; its TrainJob must not keep training on the GPUs.
    import signal

    from pipelines.targets.trainjob import TrainJobStopped

    fake = kubernetes_api([_status()])
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainJobStopped, match="SIGTERM"):
        run_trainjob(
            _manifest(), NAMESPACE, api_client=fake.api_client, write=[].append, sleep=sleep
        )
    assert fake.deleted == [f"{JOBS}/pretrain-supcon-1a2b"]
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_the_compiled_trainjob_gets_the_gpu_steps_pod_settings_and_timeout(tmp_path):
    # Issue 24 item 6: node selector, tolerations, pull secrets and --task-timeout reach the
    # TrainJob's pods, not only the launcher's.
    from pipelines.targets.kubernetes import KubernetesSettings

    settings = KubernetesSettings.from_flags(
        node_selector=["cloud.google.com/gke-nodepool=gpu-pool"],
        tolerations=["nvidia.com/gpu:NoSchedule", "cloud.google.com/gke-spot=true:NoSchedule"],
        image_pull_secrets=["regcred"],
        task_timeout=7200,
    )
    launcher = json.loads(_launcher_env(tmp_path, kubernetes=settings))["settings"]
    body = trainjob_manifest("j", command=["contrastive"], service_account="sa", **launcher)
    assert body["spec"]["activeDeadlineSeconds"] == 7200
    patch = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = patch["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["metadata"] == {"annotations": {"sidecar.istio.io/inject": "false"}}
    assert pod["spec"] == {
        "serviceAccountName": "sa",
        "nodeSelector": {"cloud.google.com/gke-nodepool": "gpu-pool"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            },
        ],
        "imagePullSecrets": [{"name": "regcred"}],
    }


def test_the_trainjob_body_is_one_the_trainer_api_takes():
    # Against Kubeflow Trainer's own API models (kubeflow-trainer-api 2.2.0, generated from
    # kubeflow/trainer v2.2.0 pkg/apis/trainer/v1alpha1): every field ours, every type right.
    from .platform_schemas import trainjob_errors

    body = trainjob_manifest(
        "pretrain-supcon-1a2b",
        image="registry.example.com/ml/contrastive-jax:1a2b",
        command=["contrastive", "pretrain"],
        num_nodes=2,
        gpus_per_node=4,
        env={"KERAS_BACKEND": "jax"},
        service_account="default-editor",
        node_selector={"cloud.google.com/gke-nodepool": "gpu-pool"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=["regcred"],
        active_deadline_seconds=7200,
        owner={"name": LAUNCHER_POD, "uid": "0c7f-uid"},
    )
    assert trainjob_errors(body) == []
    # The check is not a formality: a misspelt field and a wrong type are caught.
    body["spec"]["runtimePatch"] = body["spec"].pop("runtimePatches")
    assert trainjob_errors(body) == ["TrainJob.spec.runtimePatch: not a field of the API"]
    body["spec"]["trainer"]["numNodes"] = "2"
    assert "numNodes" in trainjob_errors(body)[0]
