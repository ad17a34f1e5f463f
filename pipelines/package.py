"""A compiled pipeline package and every check made on it before a request.

Everything that can be checked locally is checked before `submit` or `schedule` sends
anything (`prepare`): the target's connection settings, the package (a KFP pipeline spec),
the parameters (names and types against the spec, then every value as the tasks will read
it), the accelerator names (the target's own), and the image (not the placeholder
`contrastive:dev` that `contrastive compile` writes without `--image`, which no cluster can
pull). A mistake costs an error message, not a failed run after a queue wait.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from components import DEFAULT_IMAGE as PLACEHOLDER_IMAGE

# LibYAML's parser where PyYAML was built with it (its wheels are): a compiled few-labels
# package (258 kB) loads in 0.06 s against 0.50 s with the pure-Python parser, the same
# documents (tests/pipeline/test_compile.py).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SubmitError(ValueError):
    """A submission was refused before any request: the message names the bad field."""


PACKAGE_SUFFIXES = (".yaml", ".yml")
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
            loaded = yaml.load_all(stream, Loader=YAML_LOADER)
            documents = [doc for doc in loaded if doc is not None]
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


def check_accelerators(package: PipelinePackage, target, params: Mapping[str, Any]) -> None:
    """Refuses an accelerator name `target` (a `pipelines.targets.Target`) does not
    understand, naming the executor."""
    for executor, accelerator in accelerator_types(package, params):
        try:
            target.check_accelerator(accelerator)
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


@dataclass(frozen=True)
class PreparedRun:
    """A package and its parameter values that passed every local check."""

    package: PipelinePackage
    params: dict[str, Any]


def prepare(
    package_path: str | os.PathLike,
    connection,
    params: Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    target,
) -> PreparedRun:
    """All local checks, in the order a user fixes them; nothing is sent. `connection` is
    `target`'s (a `pipelines.targets.Target`); the run's values are `params` with what the
    connection adds (`Target.run_values`)."""
    connection.check()
    values = target.run_values(load_params(params), connection)
    package = load_package(package_path)
    check_params(package, values)
    check_values(package, values)
    check_accelerators(package, target, values)
    check_image(package)
    return PreparedRun(package, values)


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
    "PLACEHOLDER_IMAGE",
    "PipelinePackage",
    "PreparedRun",
    "SubmitError",
    "accelerator_types",
    "check_accelerators",
    "check_image",
    "check_params",
    "load_package",
    "load_params",
    "package_file",
    "prepare",
]
