"""`contrastive.trainjob` against a loopback fake of the Kubernetes API (127.0.0.1): it records
the TrainJob body and plays the job's status transitions and its pods' growing logs."""

import http.server
import json
import threading
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from contrastive.trainjob import TrainJobError, run_trainjob, trainjob_manifest

NAMESPACE = "team-ml"
JOBS = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NAMESPACE}/trainjobs"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def _status(kind=None, reason="", message=""):
    conditions = [{"type": "Created", "status": "True", "reason": "JobSetCreated"}]
    if kind:
        conditions.append({"type": kind, "status": "True", "reason": reason, "message": message})
    return {"conditions": conditions}


class FakeKubernetes:
    """`script`: what each GET of the job answers, in order (the last one repeats); "deleted"
    answers 404. Each pod's log grows by one line per GET of the job."""

    def __init__(self, script, pods=("job-node-0-0-x1", "job-node-0-1-x2")):
        self.script, self.pods = list(script), pods
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

    def start(script):
        fakes.append(FakeKubernetes(script))
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


def _kubeconfig(tmp_path, fake):
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
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
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
            + ["--nodes", "3", "--gpus-per-node", "8", "--kubeconfig", kubeconfig, "--", *step]
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
