"""Submit a compiled pipeline package to Kubeflow Pipelines or Vertex AI Pipelines.

Everything that can be checked locally is checked before the first request: the target and
its required settings, the package (a KFP pipeline spec), the parameters (names and types
against the spec), and the accelerator names (Kubernetes resource names on Kubeflow, Vertex
enum names on Vertex). A mistake costs an error message, not a failed run after a queue wait.

Kubeflow goes through `kfp.Client`. Vertex goes through the Vertex AI REST API
(`projects.locations.pipelineJobs.create`) with a google-auth `AuthorizedSession`: the
`google-cloud-aiplatform` client needs `python-dateutil<3` (through google-cloud-bigquery),
which conflicts with the pinned environment, and the REST body is the same `PipelineJob`
that client would send.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pipelines.targets import KUBEFLOW, TARGETS, VERTEX, validate_accelerator

VERTEX_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PACKAGE_SUFFIXES = (".yaml", ".yml")

# Vertex pipeline job ids: a lowercase letter, then lowercase letters, digits and dashes.
_VERTEX_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


class SubmitError(ValueError):
    """A submission was refused before any request: the message names the bad field."""


class VertexApiError(RuntimeError):
    """The Vertex AI API answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Vertex AI API error {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class PipelinePackage:
    """A compiled pipeline: `spec` is the PipelineSpec document, `platform_spec` the optional
    second YAML document (Kubernetes settings from kfp-kubernetes)."""

    path: str
    spec: dict
    platform_spec: dict | None = None

    @property
    def name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    @property
    def parameters(self) -> dict:
        """Root input parameter definitions: name -> {parameterType, defaultValue, ...}."""
        return dict(self.spec["root"].get("inputDefinitions", {}).get("parameters", {}))


def load_package(path: str | os.PathLike) -> PipelinePackage:
    """Reads a compiled KFP package (YAML) and checks that it is a pipeline spec."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SubmitError(f"package file not found. Received: package={path!r}")
    if not path.endswith(PACKAGE_SUFFIXES):
        raise SubmitError(
            f"package must be a compiled pipeline YAML ({', '.join(PACKAGE_SUFFIXES)}). "
            f"Received: package={path!r}"
        )
    try:
        with open(path, encoding="utf-8") as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SubmitError(f"package {path!r} is not readable YAML: {err}") from None
    spec = documents[0] if documents else None
    missing = _missing_spec_keys(spec)
    if missing:
        raise SubmitError(
            f"package {path!r} is not a KFP pipeline spec (missing {', '.join(missing)}); "
            "compile it with `make compile` or kfp.compiler.Compiler"
        )
    platform_spec = documents[1] if len(documents) > 1 else None
    return PipelinePackage(path=path, spec=spec, platform_spec=platform_spec)


def _missing_spec_keys(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return ["pipelineInfo", "root", "schemaVersion"]
    missing = [key for key in ("root", "schemaVersion") if key not in spec]
    if not isinstance(spec.get("pipelineInfo"), dict) or "name" not in spec["pipelineInfo"]:
        missing.insert(0, "pipelineInfo.name")
    return missing


def load_params(params: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    """Pipeline arguments from a mapping, or from a YAML/JSON file holding one mapping."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        values, source = dict(params), "params"
    else:
        source = os.fspath(params)
        try:
            with open(source, encoding="utf-8") as stream:
                values = yaml.safe_load(stream)
        except OSError as err:
            raise SubmitError(
                f"params file {source!r} is not readable: {err.strerror or err}"
            ) from None
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            raise SubmitError(f"params file {source!r} is not valid YAML or JSON: {err}") from None
        if values is None:
            values = {}
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise SubmitError(
            f"params {source!r} must be a mapping of parameter name to value. "
            f"Received: {type(values).__name__}"
        )
    return values


def check_params(package: PipelinePackage, params: Mapping[str, Any]) -> None:
    """Refuses unknown names, missing required parameters and values of the wrong type."""
    definitions = package.parameters
    unknown = sorted(set(params) - set(definitions))
    if unknown:
        raise SubmitError(
            f"unknown pipeline parameter(s) {', '.join(unknown)}; pipeline {package.name!r} "
            f"takes: {', '.join(sorted(definitions)) or '(none)'}"
        )
    missing = sorted(
        name
        for name, definition in definitions.items()
        if name not in params
        and "defaultValue" not in definition
        and not definition.get("isOptional")
    )
    if missing:
        raise SubmitError(f"missing required pipeline parameter(s): {', '.join(missing)}")
    for name, value in params.items():
        kind = definitions[name].get("parameterType", "")
        allowed = _PARAMETER_TYPES.get(kind)
        wrong_bool = isinstance(value, bool) and kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE")
        if allowed and (wrong_bool or not isinstance(value, allowed)):
            raise SubmitError(
                f"pipeline parameter {name!r} must be {kind}. Received: {name}={value!r}"
            )


def accelerator_types(package: PipelinePackage, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`(executor, accelerator type)` pairs from `deploymentSpec`, with placeholders bound.

    KFP 2.17 writes `resources.accelerator.resourceType` (and the older `type`). A type given
    as a pipeline parameter compiles to `{{$.inputs.parameters['pipelinechannel--NAME']}}`;
    it is resolved from `params` or the parameter's default. Types that only an upstream task
    output decides are skipped: they cannot be known before the run.
    """
    found = []
    executors = package.spec.get("deploymentSpec", {}).get("executors", {})
    for executor, body in sorted(executors.items()):
        resources = ((body or {}).get("container") or {}).get("resources") or {}
        accelerator = resources.get("accelerator") or {}
        for value in dict.fromkeys(
            v for v in (accelerator.get("resourceType"), accelerator.get("type")) if v
        ):
            for resolved in _resolve(package, executor, value, params):
                found.append((executor, resolved))
    return found


def _resolve(package: PipelinePackage, executor: str, value: str, params: Mapping) -> list[str]:
    match = _PLACEHOLDER.match(value)
    if not match:
        return [value]
    spec = package.spec
    components = [
        name
        for name, body in spec.get("components", {}).items()
        if body.get("executorLabel") == executor
    ]
    resolved = []
    for task in spec["root"].get("dag", {}).get("tasks", {}).values():
        if task.get("componentRef", {}).get("name") not in components:
            continue
        source = task.get("inputs", {}).get("parameters", {}).get(match.group(1), {})
        if "componentInputParameter" in source:
            name = source["componentInputParameter"]
            default = package.parameters.get(name, {}).get("defaultValue")
            candidate = params.get(name, default)
        else:
            candidate = source.get("runtimeValue", {}).get("constant")
        if isinstance(candidate, str) and candidate:
            resolved.append(candidate)
    return resolved


def check_accelerators(package: PipelinePackage, target: str, params: Mapping[str, Any]) -> None:
    """Refuses an accelerator name the target does not understand, naming the executor."""
    for executor, accelerator in accelerator_types(package, params):
        try:
            validate_accelerator(target, accelerator)
        except ValueError as err:
            raise SubmitError(f"executor {executor!r}: {err}") from None


def check_target(
    target: str,
    *,
    host: str | None,
    pipeline_root: str | None,
    project: str | None,
    region: str | None,
    service_account: str | None,
) -> None:
    """Refuses a target without the settings it needs."""
    if target not in TARGETS:
        raise SubmitError(
            f"target must be one of {', '.join(TARGETS)}. Received: target={target!r}"
        )
    if target == KUBEFLOW:
        if not host:
            raise SubmitError("--host is required for target kubeflow (the KFP API URL)")
        if not host.startswith(("http://", "https://")):
            raise SubmitError(f"host must start with http:// or https://. Received: host={host!r}")
        if service_account and not _K8S_NAME.match(service_account):
            raise SubmitError(
                "service account for kubeflow is a Kubernetes service account name like "
                f"'pipeline-runner'. Received: service_account={service_account!r}"
            )
        return
    for field, value in (("project", project), ("region", region)):
        if not value:
            raise SubmitError(f"--{field} is required for target vertex")
    if not pipeline_root:
        raise SubmitError("--pipeline-root is required for target vertex (a gs:// URI)")
    if not pipeline_root.startswith("gs://") or len(pipeline_root) <= len("gs://"):
        raise SubmitError(
            "pipeline root for vertex must be a gs:// URI. "
            f"Received: pipeline_root={pipeline_root!r}"
        )
    if service_account and "@" not in service_account:
        raise SubmitError(
            "service account for vertex is an e-mail like "
            "'trainer@PROJECT.iam.gserviceaccount.com'. "
            f"Received: service_account={service_account!r}"
        )


def prepare(
    package_path: str | os.PathLike,
    *,
    target: str,
    host: str | None = None,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    pipeline_root: str | None = None,
    project: str | None = None,
    region: str | None = None,
    service_account: str | None = None,
) -> tuple[PipelinePackage, dict[str, Any]]:
    """All local checks; returns the package and the parameter values to send."""
    check_target(
        target,
        host=host,
        pipeline_root=pipeline_root,
        project=project,
        region=region,
        service_account=service_account,
    )
    values = load_params(params)
    package = load_package(package_path)
    check_params(package, values)
    check_accelerators(package, target, values)
    return package, values


def submit(
    package_path: str | os.PathLike,
    *,
    target: str,
    host: str | None = None,
    namespace: str | None = None,
    experiment: str | None = None,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    pipeline_root: str | None = None,
    project: str | None = None,
    region: str | None = None,
    service_account: str | None = None,
    run_name: str | None = None,
    credentials: Any = None,
    api_endpoint: str | None = None,
    enable_caching: bool | None = None,
) -> dict[str, str]:
    """Starts one run of a compiled pipeline.

    Args:
        package_path: compiled pipeline YAML (`make compile`).
        target: `"kubeflow"` or `"vertex"`.
        host: KFP API URL (kubeflow), e.g. `http://localhost:8080`.
        namespace: Kubernetes namespace of a multi-user KFP (kubeflow).
        experiment: experiment name (kubeflow: created if missing; vertex: a label).
        params: pipeline arguments, a mapping or a YAML/JSON file path.
        pipeline_root: where artifacts go; required `gs://...` for vertex.
        project, region: Google Cloud project and region (vertex).
        service_account: Kubernetes service account (kubeflow) or e-mail (vertex).
        run_name: display name of the run.
        credentials: `kfp.client` token credentials (kubeflow) or google-auth credentials
            (vertex; default: application default credentials).
        api_endpoint: Vertex API root, default `https://{region}-aiplatform.googleapis.com`.
        enable_caching: None keeps the compile-time caching of each task; True/False
            overrides it for every task of this run.

    Returns:
        `{"run_id": ..., "url": ...}` (the KFP UI or Google Cloud console page of the run).

    Raises:
        SubmitError: before any request, when a setting, the package or a parameter is wrong.
    """
    package, values = prepare(
        package_path,
        target=target,
        host=host,
        params=params,
        pipeline_root=pipeline_root,
        project=project,
        region=region,
        service_account=service_account,
    )
    if target == KUBEFLOW:
        client = kubeflow_client(host, namespace=namespace, credentials=credentials)
        with package_file(package, enable_caching) as path:
            result = client.create_run_from_pipeline_package(
                path,
                arguments=values,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root,
                enable_caching=enable_caching,
                service_account=service_account,
            )
        return {"run_id": result.run_id, "url": kubeflow_run_url(host, result.run_id)}

    job = vertex_pipeline_job(
        package,
        params=values,
        pipeline_root=pipeline_root,
        display_name=run_name or package.name,
        service_account=service_account,
        enable_caching=enable_caching,
        experiment=experiment,
    )
    client = VertexClient(project, region, credentials=credentials, api_endpoint=api_endpoint)
    created = client.create_pipeline_job(job, job_id=vertex_job_id(run_name or package.name))
    job_id = created.get("name", "").rsplit("/", 1)[-1]
    return {"run_id": job_id, "url": vertex_run_url(project, region, job_id)}


def kubeflow_client(host: str, *, namespace: str | None = None, credentials: Any = None):
    """A `kfp.Client` for `host`; its "needs KFP >= 2.0.0-beta.2" warning is silenced."""
    import kfp

    options: dict[str, Any] = {"host": host}
    if namespace:
        options["namespace"] = namespace
    if credentials is not None:
        options["credentials"] = credentials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(**options)


def kubeflow_run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def vertex_run_url(project: str, region: str, job_id: str) -> str:
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/"
        f"{job_id}?project={project}"
    )


def vertex_job_id(name: str, now: datetime.datetime | None = None) -> str:
    """`<name>-<UTC timestamp>` folded to Vertex's job id alphabet (`[a-z][-a-z0-9]*`)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = re.sub(r"[^-0-9a-z]+", "-", name.lower()).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"run-{stem}".rstrip("-")
    job_id = f"{stem[:110].rstrip('-')}-{now.strftime('%Y%m%d%H%M%S')}"
    if not _VERTEX_JOB_ID.match(job_id):  # pragma: no cover - the folding above guarantees it
        raise SubmitError(f"cannot derive a Vertex job id from run name {name!r}")
    return job_id


def set_caching(spec: dict, enable_caching: bool) -> None:
    """Sets `cachingOptions.enableCache` on every task of every DAG in `spec`, in place."""
    dags = [spec.get("root", {})] + list(spec.get("components", {}).values())
    for component in dags:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = enable_caching


@contextlib.contextmanager
def package_file(package: PipelinePackage, enable_caching: bool | None) -> Iterator[str]:
    """The package path to hand to `kfp.Client`, with caching set in every DAG when asked.

    `kfp.Client(enable_caching=...)` only rewrites the root DAG's tasks; a task inside a
    sub-pipeline would still hit the cache, so the override is applied here to all of them.
    """
    if enable_caching is None:
        yield package.path
        return
    spec = copy.deepcopy(package.spec)
    set_caching(spec, enable_caching)
    documents = [spec] + ([package.platform_spec] if package.platform_spec else [])
    with tempfile.TemporaryDirectory(prefix="contrastive-submit-") as folder:
        path = os.path.join(folder, os.path.basename(package.path))
        with open(path, "w", encoding="utf-8") as stream:
            yaml.safe_dump_all(documents, stream, sort_keys=False)
        yield path


def vertex_pipeline_job(
    package: PipelinePackage,
    *,
    params: Mapping[str, Any],
    pipeline_root: str,
    display_name: str,
    service_account: str | None = None,
    enable_caching: bool | None = None,
    experiment: str | None = None,
) -> dict:
    """The `PipelineJob` REST body (v1) for one run of `package`."""
    spec = copy.deepcopy(package.spec)
    if enable_caching is not None:
        set_caching(spec, enable_caching)
    job: dict[str, Any] = {
        "displayName": display_name,
        "pipelineSpec": spec,
        "runtimeConfig": {"gcsOutputDirectory": pipeline_root, "parameterValues": dict(params)},
    }
    if service_account:
        job["serviceAccount"] = service_account
    if experiment:
        job["labels"] = {"experiment": _label_value(experiment)}
    return job


def _label_value(text: str) -> str:
    return re.sub(r"[^-_0-9a-z]+", "-", text.lower()).strip("-")[:63] or "default"


class VertexClient:
    """The two Vertex AI REST calls we need, over a google-auth `AuthorizedSession`.

    Args:
        project, region: where pipeline jobs and schedules live.
        credentials: google-auth credentials; default: application default credentials
            (looked up at the first request, so building a client needs no login).
        api_endpoint: API root URL, default `https://{region}-aiplatform.googleapis.com`.
        timeout: seconds per request.
    """

    def __init__(
        self,
        project: str,
        region: str,
        *,
        credentials: Any = None,
        api_endpoint: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        endpoint = api_endpoint or f"https://{region}-aiplatform.googleapis.com"
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        self.endpoint = endpoint.rstrip("/")
        self.parent = f"projects/{project}/locations/{region}"
        self.timeout = timeout
        self._credentials = credentials
        self._session = None

    def _post(self, path: str, body: dict, params: dict | None = None) -> dict:
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession

            credentials = self._credentials
            if credentials is None:
                import google.auth

                credentials, _ = google.auth.default(scopes=VERTEX_SCOPES)
            self._session = AuthorizedSession(credentials)
        response = self._session.post(
            f"{self.endpoint}/v1/{path}", json=body, params=params, timeout=self.timeout
        )
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise VertexApiError(response.status_code, message)
        return response.json()

    def create_pipeline_job(self, job: dict, *, job_id: str) -> dict:
        """`POST .../pipelineJobs?pipelineJobId=...`; returns the created PipelineJob."""
        return self._post(f"{self.parent}/pipelineJobs", job, params={"pipelineJobId": job_id})

    def create_schedule(self, schedule: dict) -> dict:
        """`POST .../schedules`; returns the created Schedule."""
        return self._post(f"{self.parent}/schedules", schedule)


def request_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a submission raises when the service (not the input) is the problem."""
    import google.auth.exceptions
    import kfp_server_api
    import requests
    import urllib3.exceptions

    return (
        VertexApiError,
        kfp_server_api.ApiException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        google.auth.exceptions.GoogleAuthError,
        ConnectionError,
        TimeoutError,
    )


__all__ = [
    "KUBEFLOW",
    "VERTEX",
    "PipelinePackage",
    "SubmitError",
    "VertexApiError",
    "VertexClient",
    "accelerator_types",
    "check_accelerators",
    "check_params",
    "check_target",
    "load_package",
    "load_params",
    "prepare",
    "submit",
    "vertex_pipeline_job",
]
