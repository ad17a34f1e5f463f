"""Fixtures for the cloud tests: loopback servers that record what the real clients send.

- `kfp_api`: a tiny KFP v2beta1 REST server (healthz, experiments, runs, recurringruns) for
  `kfp.Client(host=...)`.
- `vertex_api`: a Vertex AI v1 REST server (pipeline jobs, schedules, metadata store,
  tensorboards) for the official SDK `google.cloud.aiplatform` over its REST transport.
- `gcs`: gcp-storage-emulator on 127.0.0.1 (one per session), reached by google-cloud-storage
  through STORAGE_EMULATOR_HOST set for one test. The emulator ignores `ifGenerationMatch`,
  so the fixture adds that check to its upload handler (412 like GCS) and records the
  preconditions each upload carried.
- `packages`: tiny pipelines compiled with kfp, one per accelerator naming.
- `dataflow_api`: a Dataflow v1b3 REST server for Beam's DataflowRunner (`dataflow_fake.py`):
  it parses every job body into `dataflow_v1beta3.Job`, and runs a created job's staged
  pipeline here, fails it with Dataflow's error, or keeps it running until cancelled.

Every server listens on 127.0.0.1 with a free port, answers at most `MAX_REQUESTS`, and is
shut down when its fixture ends.

The KFP and Vertex fakes check each request body against the real schema before answering,
as the services do: Vertex bodies are parsed into the `google.cloud.aiplatform_v1` proto
message of the method (unknown fields refused; answer 400 INVALID_ARGUMENT as a google.rpc
Status, like Google's REST front end), KFP bodies against the `kfp_server_api` model of the
method (unknown fields and bad enum values refused; answer 400 with a google.rpc Status, like
the KFP API server's REST gateway). A test therefore fails when our code sends a body the
service would refuse.
"""

import functools
import http.server
import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlparse

import pytest

MAX_REQUESTS = 200
PROJECT = "my-project"
REGION = "us-central1"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    raw: bytes = b""


Route = tuple[str, str, Callable[[Recorded, re.Match], tuple[int, dict]]]


@dataclass
class RecordingServer:
    """Answers JSON per route and keeps every request it saw in `requests`."""

    routes: list[Route]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def bodies(self, method: str, path_pattern: str) -> list:
        return [
            r.body for r in self.requests if r.method == method and re.search(path_pattern, r.path)
        ]

    def respond(self, recorded: Recorded) -> tuple[int, dict]:
        if len(self.requests) > MAX_REQUESTS:
            return 503, {"error": {"code": 503, "message": "request budget exhausted"}}
        for method, pattern, handler in self.routes:
            match = re.fullmatch(pattern, recorded.path)
            if method == recorded.method and match:
                return handler(recorded, match)
        return 404, {"error": {"code": 404, "message": f"no route for {recorded.path}"}}


def _make_handler(server: RecordingServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            recorded = Recorded(
                self.command, parsed.path, parse_qs(parsed.query), dict(self.headers), body, raw
            )
            server.requests.append(recorded)
            status, payload = server.respond(recorded)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def recording_server():
    """Factory: `recording_server(routes)` starts a server that stops with the test."""
    started = []

    def start(routes: list[Route]) -> RecordingServer:
        recorder = RecordingServer(routes)
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(recorder))
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        recorder.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        started.append((httpd, thread))
        return recorder

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _hermetic_clients(monkeypatch, tmp_path):
    """No proxies, no KFP settings from the environment or ~/.config/kfp."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "STORAGE_EMULATOR_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    import kfp
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    # aiplatform.init() sets process-wide defaults (on the object `aiplatform.init` is bound
    # to): each test starts from none.
    for name, value in vars(initializer._Config()).items():
        monkeypatch.setattr(initializer.global_config, name, value)
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- request schemas


# The int64 fields of the KFP API protos: `kfp_server_api` types them "str" (their proto3 JSON
# form); the gateway's parser also takes a number. Every other "str" field takes a string only.
_KFP_INT64 = {
    ("V2beta1RecurringRun", "max_concurrency"),
    ("V2beta1PeriodicSchedule", "interval_second"),
    ("V2beta1RunDetails", "pipeline_context_id"),
    ("V2beta1RunDetails", "pipeline_run_context_id"),
    ("V2beta1PipelineTaskDetail", "execution_id"),
}


def _kfp_type_errors(value, type_name: str, where: str) -> list[str]:
    """Where `value` (decoded JSON) does not fit the `kfp_server_api` type `type_name`."""
    import kfp_server_api.models as models

    if value is None or type_name == "object":
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        item = type_name[len("list[") : -1]
        return [e for i, v in enumerate(value) for e in _kfp_type_errors(v, item, f"{where}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        item = type_name.split(", ", 1)[1][:-1]
        return [e for k, v in value.items() for e in _kfp_type_errors(v, item, f"{where}.{k}")]
    if type_name == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            return []
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            return []
        return [f"{where}: expected int64, got {value!r}"]
    scalars = {"str": (str,), "bool": (bool,), "int": (int,), "float": (float, int)}
    if type_name in scalars or type_name in ("date", "datetime"):
        allowed = scalars.get(type_name, (str,))
        if not isinstance(value, allowed) or (type_name != "bool" and isinstance(value, bool)):
            return [f"{where}: expected {type_name}, got {type(value).__name__}"]
        return []
    model = getattr(models, type_name)
    allowed_values = getattr(model, "allowable_values", None)
    if allowed_values:
        return [] if value in allowed_values else [f"{where}: invalid value {value!r}"]
    if not isinstance(value, dict):
        return [f"{where}: expected an object"]
    fields = {
        json_name: model.openapi_types[attr] for attr, json_name in model.attribute_map.items()
    }
    errors = [f'{where}: unknown field "{name}"' for name in value if name not in fields]
    for name, field_type in fields.items():
        if name in value:
            field_type = "int64" if (type_name, name) in _KFP_INT64 else field_type
            errors += _kfp_type_errors(value[name], field_type, f"{where}.{name}")
    return errors


def kfp_body(model: str, handler: Callable) -> Callable:
    """`handler` behind a check of the request body against the `kfp_server_api` model."""

    def check(recorded, match):
        from types import SimpleNamespace

        from kfp_server_api import ApiClient, ApiException

        if not isinstance(recorded.body, dict):
            errors = ["request body is not a JSON object"]
        else:
            errors = _kfp_type_errors(recorded.body, model, model)
        if not errors:
            try:  # the generated client's own reading of it (timestamps...)
                ApiClient().deserialize(SimpleNamespace(data=recorded.raw), model)
            except (TypeError, ValueError, ApiException) as err:
                errors = [f"{model}: {getattr(err, 'reason', None) or err}"]
        if errors:
            message = "; ".join(errors)
            return 400, {"error": message, "code": 3, "message": message, "details": []}
        return handler(recorded, match)

    return check


def vertex_body(message: str, handler: Callable) -> Callable:
    """`handler` behind a parse of the request body into `aiplatform_v1.<message>`."""

    def check(recorded, match):
        from google.cloud import aiplatform_v1
        from google.protobuf import json_format

        proto = getattr(aiplatform_v1, message).pb()()
        try:
            json_format.Parse(recorded.raw or b"{}", proto, ignore_unknown_fields=False)
        except json_format.ParseError as err:
            text = f"Invalid JSON payload received. {err}"
            return 400, {
                "error": {
                    "code": 400,
                    "message": text,
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"description": text}],
                        }
                    ],
                }
            }
        return handler(recorded, match)

    return check


@pytest.fixture
def kfp_api(recording_server) -> RecordingServer:
    """KFP v2beta1: healthz, experiments (none exist yet), runs, recurringruns."""

    def experiment(recorded, _):
        name = recorded.body.get("display_name")
        if not name:  # the API server refuses a nameless experiment (in its own words)
            message = "Invalid input error: experiment display_name is empty"
            return 400, {"error": message, "code": 3, "message": message, "details": []}
        return 200, {"experiment_id": "exp-1", "display_name": name}

    def run(recorded, _):
        return 200, {"run_id": "run-123", "display_name": recorded.body.get("display_name")}

    def recurring(recorded, _):
        return 200, {
            "recurring_run_id": "rr-456",
            "display_name": recorded.body.get("display_name"),
        }

    return recording_server(
        [
            ("GET", r"/apis/v2beta1/healthz", lambda r, m: (200, {"multi_user": False})),
            ("GET", r"/apis/v2beta1/experiments", lambda r, m: (200, {"experiments": []})),
            ("POST", r"/apis/v2beta1/experiments", kfp_body("V2beta1Experiment", experiment)),
            ("POST", r"/apis/v2beta1/runs", kfp_body("V2beta1Run", run)),
            (
                "POST",
                r"/apis/v2beta1/recurringruns",
                kfp_body("V2beta1RecurringRun", recurring),
            ),
        ]
    )


PROJECT_NUMBER = "123456"
_PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
_STORE = _PARENT + r"/metadataStores/default"


@dataclass
class VertexFake:
    """A loopback Vertex AI v1 (pipeline jobs, schedules, metadata store, tensorboards, models)
    and the two Cloud Storage bucket reads the SDK makes before a submission."""

    server: RecordingServer
    connection: Callable  # connection(**overrides) -> a pipelines.targets.connection
    contexts: dict  # metadata contexts by id (experiments and pipeline runs)

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests

    def bodies(self, method: str, path_pattern: str) -> list:
        return self.server.bodies(method, path_pattern)

    def calls(self) -> list[tuple[str, str]]:
        """`(method, path)` of every request, query strings left out."""
        return [(r.method, r.path) for r in self.server.requests]


def _vertex_routes(contexts: dict) -> list[Route]:
    def resource(match, kind, resource_id):
        return f"projects/{match['project']}/locations/{match['region']}/{kind}/{resource_id}"

    def create_job(recorded, match):
        job_id = recorded.query["pipelineJobId"][0]
        return 200, {**recorded.body, "name": resource(match, "pipelineJobs", job_id)}

    def get_job(recorded, match):
        name = resource(match, "pipelineJobs", match["id"])
        run_context = resource(match, "metadataStores/default/contexts", match["id"])
        contexts[match["id"]] = {"name": run_context, "schemaTitle": "system.PipelineRun"}
        return 200, {
            "name": name,
            "state": "PIPELINE_STATE_RUNNING",
            "jobDetail": {"pipelineRunContext": contexts[match["id"]]},
        }

    def create_schedule(recorded, match):
        return 200, {**recorded.body, "name": resource(match, "schedules", "789")}

    def get_context(recorded, match):
        if match["id"] not in contexts:
            return 404, {"error": {"code": 404, "message": f"context {match['id']} not found"}}
        return 200, contexts[match["id"]]

    def create_context(recorded, match):
        context_id = recorded.query["contextId"][0]
        name = resource(match, "metadataStores/default/contexts", context_id)
        contexts[context_id] = {**recorded.body, "name": name}
        return 200, contexts[context_id]

    def update_context(recorded, match):
        contexts[match["id"]] = {**contexts[match["id"]], **recorded.body}
        return 200, contexts[match["id"]]

    def get_tensorboard(recorded, match):
        return 200, {"name": resource(match, "tensorboards", match["id"]), "displayName": "tb"}

    models: dict = {}

    def get_model(recorded, match):
        model_id = unquote(match["id"]).split("@")[0]
        if model_id not in models:
            return 404, {"error": {"code": 404, "message": f"model {model_id} not found"}}
        return 200, {**models[model_id][-1], "name": resource(match, "models", model_id)}

    def upload_model(recorded, match):
        parent = recorded.body.get("parentModel", "")
        model_id = recorded.body.get("modelId") or parent.rsplit("/", 1)[-1]
        versions = models.setdefault(model_id, [])
        for version in versions:  # an alias names one version: Vertex moves it
            version["versionAliases"] = [
                a
                for a in version["versionAliases"]
                if a not in recorded.body["model"]["versionAliases"]
            ]
        versions.append({**recorded.body["model"], "versionId": str(len(versions) + 1)})
        name = resource(match, "models", model_id)
        return 200, {
            "name": resource(match, "operations", f"upload-{len(versions)}"),
            "done": True,
            "response": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                "model": name,
                "modelVersionId": str(len(versions)),
            },
        }

    def bucket(recorded, match):
        return 200, {"name": match["bucket"], "projectNumber": PROJECT_NUMBER}

    return [
        ("POST", _PARENT + r"/pipelineJobs", vertex_body("PipelineJob", create_job)),
        ("GET", _PARENT + r"/pipelineJobs/(?P<id>[^/:]+)", get_job),
        ("POST", _PARENT + r"/schedules", vertex_body("Schedule", create_schedule)),
        ("GET", _STORE, lambda r, m: (200, {"name": r.path[len("/v1/") :]})),
        ("GET", _STORE + r"/contexts/(?P<id>[^/:]+)", get_context),
        ("POST", _STORE + r"/contexts", vertex_body("Context", create_context)),
        ("PATCH", _STORE + r"/contexts/(?P<id>[^/:]+)", vertex_body("Context", update_context)),
        (
            "POST",
            _STORE + r"/contexts/(?P<id>[^/:]+):addContextChildren",
            vertex_body("AddContextChildrenRequest", lambda r, m: (200, {})),
        ),
        ("GET", _PARENT + r"/tensorboards/(?P<id>[^/:]+)", get_tensorboard),
        ("GET", _PARENT + r"/models/(?P<id>[^/:]+)", get_model),
        ("POST", _PARENT + r"/models:upload", vertex_body("UploadModelRequest", upload_model)),
        ("GET", r"/storage/v1/b/(?P<bucket>[^/]+)", bucket),
    ]


@pytest.fixture
def vertex_api(recording_server, monkeypatch) -> VertexFake:
    """The Vertex AI SDK pointed at a loopback server (REST transport, anonymous credentials).

    The SDK also reads the pipeline root's bucket (Cloud Storage, sent to the same server via
    STORAGE_EMULATOR_HOST) and asks Resource Manager for the project number to check that the
    bucket is the project's; that one lookup (gRPC, not redirectable) answers `PROJECT_NUMBER`.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform.utils import resource_manager_utils

    from pipelines.targets import connection as make_connection

    contexts: dict = {}
    server = recording_server(_vertex_routes(contexts))
    if not os.environ.get("STORAGE_EMULATOR_HOST"):  # the `gcs` emulator, when a test has it
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    monkeypatch.setattr(
        resource_manager_utils, "get_project_number", lambda *a, **k: PROJECT_NUMBER
    )

    def connection(**overrides):
        settings = dict(
            target="vertex",
            project=PROJECT,
            region=REGION,
            pipeline_root="gs://bucket/pipeline-root",
            credentials=AnonymousCredentials(),
            api_endpoint=server.url,
        )
        settings.update(overrides)
        return make_connection(**settings)

    return VertexFake(server, connection, contexts)


@pytest.fixture
def dataflow_api(recording_server):
    """A Dataflow REST fake; set `.mode` to "run" (default), "fail" or "hang" before use."""
    from tests.cloud import dataflow_fake

    fake = dataflow_fake.DataflowFake(server=None)
    fake.server = recording_server(dataflow_fake.routes(fake))
    return fake


@pytest.fixture
def anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


# ---------------------------------------------------------------- compiled pipelines


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, str]:
    """Compiled tiny pipelines: `kubeflow` (nvidia.com/gpu), `vertex` (NVIDIA_L4), `param`
    (accelerator from the `accel` parameter, default NVIDIA_L4), `cpu` (no accelerator),
    `placeholder` (one step in the image `contrastive:dev`, as compiled without --image).
    Each has parameters `x: int = 1`, `data_snapshot: str = ""` and a nested sub-pipeline."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def ingest(x: int, data_snapshot: str) -> int:
        return x

    @dsl.component(base_image="python:3.11-slim")
    def train(x: int) -> int:
        return x + 1

    @dsl.pipeline(name="inner")
    def inner(x: int) -> int:
        return train(x=x).output

    folder = tmp_path_factory.mktemp("packages")

    def build(name: str, accelerator: str | None) -> str:
        @dsl.pipeline(name="tiny-pipeline")
        def tiny(x: int = 1, data_snapshot: str = ""):
            step = ingest(x=x, data_snapshot=data_snapshot)
            if accelerator:
                step.set_accelerator_type(accelerator).set_accelerator_limit(1)
            inner(x=step.output)

        path = str(folder / f"{name}.yaml")
        compiler.Compiler().compile(tiny, path)
        return path

    @dsl.pipeline(name="param-pipeline")
    def with_param(x: int = 1, data_snapshot: str = "", accel: str = "NVIDIA_L4"):
        ingest(x=x, data_snapshot=data_snapshot).set_accelerator_type(accel).set_accelerator_limit(
            1
        )

    param_path = str(folder / "param.yaml")
    compiler.Compiler().compile(with_param, param_path)

    # What `contrastive compile` writes without --image.
    placeholder_ingest = dsl.component(ingest.python_func, base_image="contrastive:dev")

    @dsl.pipeline(name="placeholder-pipeline")
    def placeholder(x: int = 1, data_snapshot: str = ""):
        placeholder_ingest(x=x, data_snapshot=data_snapshot)

    placeholder_path = str(folder / "placeholder.yaml")
    compiler.Compiler().compile(placeholder, placeholder_path)
    return {
        "kubeflow": build("kubeflow", "nvidia.com/gpu"),
        "vertex": build("vertex", "NVIDIA_L4"),
        "cpu": build("cpu", None),
        "param": param_path,
        "placeholder": placeholder_path,
    }


def caching_flags(spec: dict) -> dict[str, object]:
    """`{"<dag>/<task>": enableCache}` for every task of every DAG of a pipeline spec.

    kfp.Client sends the spec as proto3 JSON, which leaves out `enableCache: false` (the
    default): a missing flag means caching is off, as the KFP backend reads it."""
    flags = {}
    dags = {"root": spec["root"], **spec.get("components", {})}
    for dag_name, component in dags.items():
        for task_name, task in component.get("dag", {}).get("tasks", {}).items():
            options = task.get("cachingOptions", {})
            flags[f"{dag_name}/{task_name}"] = bool(options.get("enableCache", False))
    return flags


# ---------------------------------------------------------------- GCS emulator


@dataclass
class GcsEmulator:
    url: str
    bucket: str
    preconditions: list  # (object name, ifGenerationMatch) of every conditional upload
    prefix: str = ""


@pytest.fixture(scope="session")
def _gcs_server():
    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.handlers import buckets, objects
    from gcp_storage_emulator.storage import Storage

    state = Storage(use_memory_fs=True)
    bucket = "test-bucket"
    buckets.create_bucket(bucket, state)
    preconditions: list = []

    def insert_with_preconditions(request, response, storage, *args, **kwargs):
        # gcp-storage-emulator accepts ifGenerationMatch but does not check it; GCS does.
        expected = request.query.get("ifGenerationMatch")
        if expected is not None:
            data = request.data if isinstance(request.data, dict) else {}
            name = (request.query.get("name") or [None])[0] or (data.get("meta") or {}).get("name")
            current = storage.objects.get(request.params["bucket_name"], {}).get(name)
            generation = int(current["generation"]) if current else 0
            preconditions.append((name, int(expected[0])))
            if generation != int(expected[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
        return objects.insert(request, response, storage, *args, **kwargs)

    patched = []
    for _, handlers in emulator.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is objects.insert:
                handlers[method] = insert_with_preconditions
                patched.append((handlers, method))
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(emulator.RequestHandler, state)
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{httpd.server_address[1]}", bucket, preconditions)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        for handlers, method in patched:
            handlers[method] = objects.insert


@pytest.fixture
def gcs(_gcs_server, monkeypatch):
    """The emulator for one test: STORAGE_EMULATOR_HOST set, a fresh default client, and a
    unique `prefix` (`gs://test-bucket/<uuid>`) so tests never see each other's objects."""
    from contrastive import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _gcs_server.url)
    storage.default_gcs_client.cache_clear()
    _gcs_server.preconditions.clear()
    _gcs_server.prefix = f"gs://{_gcs_server.bucket}/{uuid.uuid4().hex}"
    yield _gcs_server
    storage.default_gcs_client.cache_clear()


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path) -> str:
    """A storage root: a local folder, or a prefix in the GCS emulator."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("gcs").prefix


@pytest.fixture
def candidate(untrained_classifier):
    """A complete 3-class classifier model directory, as a training step leaves it (the
    candidate the champion gate and the Vertex upload tests judge)."""
    return untrained_classifier(3, (8, 8, 1), "candidate")
