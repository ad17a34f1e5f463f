"""Submit a compiled pipeline package to Kubeflow Pipelines or Vertex AI Pipelines.

Everything that can be checked locally is checked before the first request: the target and
its required settings, the package (a KFP pipeline spec), the parameters (names and types
against the spec), and the accelerator names (Kubernetes resource names on Kubeflow, Vertex
enum names on Vertex). A mistake costs an error message, not a failed run after a queue wait.

The package must name a real image: `contrastive compile` without `--image` writes the
placeholder `contrastive:dev`, which no cluster can pull, so it is refused here.

Kubeflow goes through `kfp.Client`, Vertex AI through `google.cloud.aiplatform.PipelineJob`
(the official SDK: auth, retries, Experiments). `pipelines.connection.Connection` says where.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from components import DEFAULT_IMAGE as PLACEHOLDER_IMAGE
from pipelines.connection import Connection, SubmitError
from pipelines.targets import KUBEFLOW, VERTEX, validate_accelerator

PACKAGE_SUFFIXES = (".yaml", ".yml")
# How long `submit --experiment` waits for Vertex to create a run's metadata record (it
# usually takes seconds; a queued project can take longer).
RUN_RECORD_TIMEOUT_S = 300.0

# Vertex pipeline job ids: a lowercase letter, then lowercase letters, digits and dashes.
_VERTEX_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
_PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


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


def run_values(package: PipelinePackage, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values a run gets: each parameter's compiled default, then `params` over them
    (integer defaults, which the spec stores as doubles, as ints)."""
    values = {}
    for name, definition in package.parameters.items():
        if "defaultValue" not in definition:
            continue
        default = definition["defaultValue"]
        if definition.get("parameterType") == "NUMBER_INTEGER" and isinstance(default, float):
            default = int(default)
        values[name] = default
    return {**values, **params}


def check_values(package: PipelinePackage, params: Mapping[str, Any]) -> None:
    """Refuses what the run's tasks would refuse (profile, overrides, every value), with
    `contrastive.run_parameters`, the same check `contrastive run` and `compile` make."""
    from contrastive.config import ConfigError
    from contrastive.run_parameters import check_run_parameters

    try:
        check_run_parameters(run_values(package, params))
    except ConfigError as err:
        raise SubmitError(f"pipeline parameters of {package.path!r}: {err}") from None


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


def check_image(package: PipelinePackage) -> None:
    """Refuses a package whose steps run the placeholder image `contrastive:dev`."""
    executors = package.spec.get("deploymentSpec", {}).get("executors", {})
    for executor, body in sorted(executors.items()):
        image = ((body or {}).get("container") or {}).get("image")
        if image == PLACEHOLDER_IMAGE:
            raise SubmitError(
                f"package {package.path!r} was compiled without --image: executor {executor!r} "
                f"runs the placeholder {PLACEHOLDER_IMAGE!r}, which no cluster can pull; "
                "recompile with `make compile IMAGE=REGISTRY/contrastive:TAG`. "
                f"Received: image={image!r}"
            )


def with_vertex_model(
    params: Mapping[str, Any] | str | os.PathLike | None, connection: Connection, model_id: str
) -> dict[str, Any]:
    """`params` plus what the champion gate needs to upload a promoted model as a version of
    the Vertex Model `model_id` (vertex only; the champion registry must be on gs://)."""
    from contrastive.serving import check_model_id

    values = load_params(params)
    if connection.target != VERTEX:
        raise SubmitError(
            "--vertex-model uploads to the Vertex AI Model Registry; it is for target vertex. "
            f"Received: vertex_model={model_id!r}"
        )
    try:
        check_model_id(model_id)
    except ValueError as err:
        raise SubmitError(str(err)) from None
    registry = values.get("registry", "")
    if not (isinstance(registry, str) and registry.startswith("gs://")):
        raise SubmitError(
            "--vertex-model needs the champion registry on Cloud Storage: set the pipeline "
            f"parameter registry to a gs:// prefix in --params. Received: registry={registry!r}"
        )
    return {
        **values,
        "vertex_model": model_id,
        "vertex_project": connection.project,
        "vertex_region": connection.region,
    }


@dataclass(frozen=True)
class PreparedRun:
    """A package and its parameter values that passed every local check."""

    package: PipelinePackage
    params: dict[str, Any]


def prepare(
    package_path: str | os.PathLike,
    connection: Connection,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
) -> PreparedRun:
    """All local checks, in the order a user fixes them; nothing is sent."""
    connection.check()
    values = load_params(params)
    package = load_package(package_path)
    check_params(package, values)
    check_values(package, values)
    check_accelerators(package, connection.target, values)
    check_image(package)
    return PreparedRun(package, values)


def submit(
    package_path: str | os.PathLike,
    connection: Connection,
    *,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    run_name: str | None = None,
    enable_caching: bool | None = None,
    run_record_timeout_s: float = RUN_RECORD_TIMEOUT_S,
) -> dict[str, str]:
    """Starts one run of a compiled pipeline.

    Args:
        package_path: compiled pipeline YAML (`make compile`).
        connection: where to run it and as whom.
        params: pipeline arguments, a mapping or a YAML/JSON file path.
        run_name: display name of the run.
        enable_caching: None keeps the compile-time caching of each task; True/False
            overrides it for every task of this run (nested DAGs included).
        run_record_timeout_s: vertex with an experiment: how long to wait for Vertex to
            create the run's record before filing it under the experiment.

    Returns:
        `{"run_id": ..., "url": ...}` (the KFP UI or Google Cloud console page of the run).

    Raises:
        SubmitError: before any request, when a setting, the package or a parameter is wrong.
    """
    run = prepare(package_path, connection, params)
    if connection.target == KUBEFLOW:
        client = connection.kfp_client()
        with package_file(run.package, enable_caching) as path:
            result = client.create_run_from_pipeline_package(
                path,
                arguments=run.params,
                run_name=run_name,
                experiment_name=connection.experiment,
                namespace=connection.namespace,
                pipeline_root=connection.pipeline_root,
                enable_caching=enable_caching,
                service_account=connection.service_account,
            )
        return {"run_id": result.run_id, "url": connection.kubeflow_url("runs", result.run_id)}

    display_name = run_name or run.package.name
    experiment = connection.vertex_experiment()
    with package_file(run.package, enable_caching) as path:
        job = vertex_pipeline_job(
            connection,
            run,
            template_path=path,
            display_name=display_name,
            job_id=vertex_job_id(display_name),
        )
        # Filed under the experiment below: the SDK's own wait for the run record has no bound.
        job.submit(service_account=connection.service_account)
    job_id = job.resource_name.rsplit("/", 1)[-1]
    url = connection.vertex_url("runs", job_id)
    if experiment is not None:
        wait_for_run_record(job, url=url, timeout_s=run_record_timeout_s)
        job._associate_to_experiment(experiment)  # what submit(experiment=...) calls
    return {"run_id": job_id, "url": url}


def wait_for_run_record(
    job, *, url: str, timeout_s: float = RUN_RECORD_TIMEOUT_S, poll_s: float = 2.0
) -> None:
    """Poll a submitted Vertex job until Vertex has created its run record (the metadata
    context an experiment links to), at most `timeout_s` seconds.

    Raises:
        RuntimeError: the job ended without one, or `timeout_s` passed; the message says that
            the run itself was submitted and where it is.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        state = job.state  # refreshes the job from the service
        if job.gca_resource.job_detail.pipeline_run_context.name:
            return
        if job.done():
            raise RuntimeError(
                f"the run ended ({state.name}) before Vertex created its run record, so it is "
                f"not filed under the experiment: {url}"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Vertex had not created the run record after {timeout_s:g} s, so the run is "
                f"submitted but not filed under the experiment (it runs on): {url}"
            )
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


def vertex_pipeline_job(
    connection: Connection,
    run: PreparedRun,
    *,
    template_path: str,
    display_name: str,
    job_id: str | None = None,
):
    """An unsent `aiplatform.PipelineJob` of `run` (caching is already set in the template)."""
    aiplatform = connection.vertex()
    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=template_path,
        job_id=job_id,
        pipeline_root=connection.pipeline_root,
        parameter_values=run.params,
        project=connection.project,
        location=connection.region,
        credentials=connection.credentials,
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
    """The package path to hand to `kfp.Client` or `PipelineJob`, with caching set in every
    DAG when asked.

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


def request_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a submission raises when the service (not the input) is the problem."""
    import google.api_core.exceptions
    import google.auth.exceptions
    import kfp_server_api
    import requests
    import urllib3.exceptions

    return (
        google.api_core.exceptions.GoogleAPIError,
        google.auth.exceptions.GoogleAuthError,
        kfp_server_api.ApiException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )


__all__ = [
    "KUBEFLOW",
    "PLACEHOLDER_IMAGE",
    "VERTEX",
    "Connection",
    "PipelinePackage",
    "PreparedRun",
    "SubmitError",
    "accelerator_types",
    "check_accelerators",
    "check_image",
    "check_params",
    "load_package",
    "load_params",
    "prepare",
    "submit",
    "vertex_pipeline_job",
    "with_vertex_model",
]
