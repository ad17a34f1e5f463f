"""Invariants of the compiled pipeline, for each target and compile option set we document,
checked against what the target's backend does with the YAML (its source, cited), not what
we believe it does:

1. every root input is consumed by some task (a parameter `submit` fills that no task reads
   is a feature that silently does nothing: issue 24's `--vertex-model`);
2. every `{{$.…}}` placeholder we emit is one the target's backend resolves (an unresolved
   one reaches the step as its literal text: issue 24's `{{$.pipeline_root}}` on KFP 2.17);
3. no task image lacks a package its code imports (`images/gpu_requirements.py` writes what
   each image installs; the import of a module missing there fails only on the cluster).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from pipelines.targets.kubernetes import KubernetesSettings
from pipelines.targets.vertex import SERVICE_ACCOUNT_PLACEHOLDER as VERTEX_SERVICE_ACCOUNT
from tests.pipeline.compiled import compiled, flat_tasks

ROOT = Path(__file__).resolve().parents[2]
TF_IMAGE = "registry.example.com/ml/contrastive:t1"
JAX_IMAGE = "registry.example.com/ml/contrastive-jax:t1"

# --- what each backend resolves ---------------------------------------------------------------

# KFP 2.17: a task input's runtime constant is replaced by the driver only when it *equals* one
# of these (else the literal text reaches the step); `{{$.workspace_path}}` also inside a
# string. kubeflow/pipelines tag 2.17.0 (commit 4a3592cb2dd0a91a4652ab93893ec8beda1f3158),
# backend/src/v2/driver/resolve.go, the RuntimeValue case of resolveInputParameter.
KFP_DRIVER_CONSTANTS = {
    "{{$.pipeline_job_name}}",  # the run's display name
    "{{$.pipeline_job_resource_name}}",  # the Argo workflow's name
    "{{$.pipeline_job_uuid}}",  # the run id
    "{{$.pipeline_task_name}}",
    "{{$.pipeline_task_uuid}}",
    "{{$.pipeline_job_create_time_utc}}",
    "{{$.pipeline_job_schedule_time_utc}}",
}
KFP_SUBSTRING = {"{{$.workspace_path}}"}
# KFP 2.17's launcher replaces these in a container's command and args (same tag,
# backend/src/v2/component/launcher_v2.go: "{{$}}" and getPlaceholders).
_NAME = r"\['[^']+'\]"
KFP_LAUNCHER_FORMS = [
    r"\{\{\$\}\}",
    rf"\{{\{{\$\.inputs\.parameters{_NAME}\}}\}}",
    rf"\{{\{{\$\.(inputs|outputs)\.artifacts{_NAME}\.(uri|path)\}}\}}",
    rf"\{{\{{\$\.outputs\.parameters{_NAME}\.output_file\}}\}}",
]
# Vertex AI Pipelines is not open source: its list is what Google's own libraries emit for it,
# the KFP SDK's system placeholders (kfp 2.17.3 kfp/dsl/__init__.py; PIPELINE_ROOT added for
# Vertex, kubeflow/pipelines #9134) and google-cloud-pipeline-components 2.22.0
# _placeholders.py (project, location, service account, network, persistent resource, KMS
# key); in command lines also the IO forms with GCPC's `.json_escape[N]`.
VERTEX_CONSTANTS = KFP_DRIVER_CONSTANTS | {
    "{{$.pipeline_root}}",
    "{{$.pipeline_google_cloud_project_id}}",
    "{{$.pipeline_google_cloud_location}}",
    "{{$.pipeline_service_account}}",
    "{{$.pipeline_network}}",
    "{{$.pipeline_persistent_resource_id}}",
    "{{$.pipeline_encryption_key_name}}",
}
_ESCAPED = r"(\.json_escape\[[01]\])?"
VERTEX_LAUNCHER_FORMS = [
    r"\{\{\$\}\}",
    r"\{\{\$\.outputs\.output_file\}\}",
    rf"\{{\{{\$\.inputs\.parameters{_NAME}{_ESCAPED}\}}\}}",
    rf"\{{\{{\$\.(inputs|outputs)\.artifacts{_NAME}\.(uri|path){_ESCAPED}\}}\}}",
    rf"\{{\{{\$\.outputs\.parameters{_NAME}\.output_file{_ESCAPED}\}}\}}",
    *(rf"{re.escape(c[:-2])}{_ESCAPED}\}}\}}" for c in VERTEX_CONSTANTS),
]
# kfp.local replaces these anywhere in a command element (kfp 2.17.3,
# kfp/local/placeholder_utils.py resolve_individual_placeholder), and the IO forms.
LOCAL_CONSTANTS = {
    "{{$.pipeline_job_name}}",
    "{{$.pipeline_job_uuid}}",
    "{{$.pipeline_task_name}}",
    "{{$.pipeline_task_uuid}}",
    "{{$.pipeline_root}}",
    "{{$.workspace_path}}",
}

BACKENDS = {
    "kubeflow": (KFP_DRIVER_CONSTANTS, KFP_SUBSTRING, KFP_LAUNCHER_FORMS),
    "vertex": (VERTEX_CONSTANTS, set(), VERTEX_LAUNCHER_FORMS),
    "local": (set(), LOCAL_CONSTANTS, KFP_LAUNCHER_FORMS + [re.escape(c) for c in LOCAL_CONSTANTS]),
}

# --- the compile option sets the README documents ---------------------------------------------

POD_SETTINGS = KubernetesSettings.from_flags(
    node_selector=["cloud.google.com/gke-nodepool=gpu-pool"],
    tolerations=["nvidia.com/gpu:NoSchedule"],
    image_pull_secrets=["regcred"],
    task_timeout=86400,
)
SCALE = {
    "one-gpu": dict(image=TF_IMAGE),
    "one-node-4-gpus": dict(image=JAX_IMAGE, backend="jax", accelerator_count=4),
    "2-nodes-4-gpus": dict(image=JAX_IMAGE, backend="jax", accelerator_count=4, replicas=2),
}
FRACTIONS = {"all-labels": (), "few-labels": (0.01, 0.1, 1.0)}
COMBINATIONS = {
    f"{target}-{scale}-{fractions}": dict(
        target=target, labeled_fractions=FRACTIONS[fractions], **SCALE[scale]
    )
    for target in ("kubeflow", "vertex")
    for scale in SCALE
    for fractions in FRACTIONS
    if fractions == "all-labels" or scale != "one-node-4-gpus"  # a fraction is a branch more
}
COMBINATIONS.update(
    {
        f"kubeflow-{scale}-pod-settings": dict(
            target="kubeflow", kubernetes=POD_SETTINGS, **SCALE[scale]
        )
        for scale in ("one-gpu", "2-nodes-4-gpus")
    }
)
COMBINATIONS["vertex-2-nodes-spot"] = dict(
    target="vertex",
    strategy="SPOT",
    job_output_dir="gs://acme-ml/jobs",
    methods=("baseline", "supcon", "simclr", "npairs"),
    **SCALE["2-nodes-4-gpus"],
)
for fractions in FRACTIONS:
    COMBINATIONS[f"local-{fractions}"] = dict(
        target="local", image=TF_IMAGE, labeled_fractions=FRACTIONS[fractions]
    )


def _compiled(name: str) -> dict:
    return compiled(**COMBINATIONS[name])  # once per option set in the process


def _dags(spec):
    yield spec["root"]["dag"]
    for component in spec["components"].values():
        if "dag" in component:
            yield component["dag"]


def _placeholders(text: str) -> list[str]:
    return re.findall(r"\{\{\$.*?\}\}", text)


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_root_input_is_consumed_by_a_task(name):
    spec = _compiled(name)
    inputs = set(spec["root"]["inputDefinitions"]["parameters"])
    consumed = {
        value["componentInputParameter"]
        for dag in _dags(spec)
        for task in dag["tasks"].values()
        for value in task.get("inputs", {}).get("parameters", {}).values()
        if "componentInputParameter" in value
    }
    assert inputs - consumed == set(), f"root inputs no task reads: {sorted(inputs - consumed)}"


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_placeholder_is_one_the_backend_resolves(name):
    spec = _compiled(name)
    constants, substrings, forms = BACKENDS[COMBINATIONS[name]["target"]]
    unresolved = []
    for dag in _dags(spec):
        for task_name, task in dag["tasks"].items():
            for input_name, value in task.get("inputs", {}).get("parameters", {}).items():
                constant = value.get("runtimeValue", {}).get("constant")
                if not isinstance(constant, str) or "{{$" not in constant:
                    continue
                left = constant
                for substring in substrings:
                    left = left.replace(substring, "")
                if constant not in constants and "{{$" in left:
                    unresolved.append(f"{task_name}.{input_name}={constant}")
    for default in spec["root"]["inputDefinitions"]["parameters"].values():
        assert "{{$" not in str(default.get("defaultValue", "")), default
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor.get("container", {})
        for part in [*container.get("command", []), *container.get("args", [])]:
            for placeholder in _placeholders(part):
                if not any(re.fullmatch(form, placeholder) for form in forms):
                    unresolved.append(f"{label}: {placeholder}")
        for variable in container.get("env", []):
            assert "{{$" not in variable["value"], f"{label}: env {variable['name']}"
    assert unresolved == []


def test_the_placeholder_check_catches_what_kfp_2_17_leaves_unresolved():
    # The durable root the pipeline used to pass, and the display name as run id.
    constants, substrings, _ = BACKENDS["kubeflow"]
    assert "{{$.pipeline_root}}" not in constants | substrings
    assert VERTEX_SERVICE_ACCOUNT in VERTEX_CONSTANTS
    from google_cloud_pipeline_components import _placeholders

    assert VERTEX_SERVICE_ACCOUNT == _placeholders.SERVICE_ACCOUNT_PLACEHOLDER


@pytest.mark.parametrize("target", ["kubeflow", "vertex", "local"])
def test_the_registry_run_id_is_a_value_the_registry_accepts(target):
    # KFP 2.17 resolves {{$.pipeline_job_name}} to the display name, kfp.Client's default
    # "<pipeline> %Y-%m-%d %H-%M-%S" (kfp 2.17.0 sdk/python/kfp/client/client.py), which the
    # registry refuses; the run's UUID it accepts.
    from contrastive.registry import ModelRegistry

    spec = _compiled(f"{target}-one-gpu-all-labels" if target != "local" else "local-all-labels")
    tasks = flat_tasks(spec)
    # The drift check records a skip under the run id the gate records its decision under.
    (placeholder,) = {
        tasks[name]["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
        for name in ("check-drift", "compare-and-report")
    }
    value = {
        "{{$.pipeline_job_uuid}}": "6f1d0e1c-8c7a-4c5e-9a43-0f3e2a1b5c7d",
        "{{$.pipeline_job_name}}": {
            "vertex": "contrastive-20261206120000",  # the job id `contrastive submit` gives
            "local": "contrastive-2026-12-06-12-00-00-123456",
        }.get(target),
    }[placeholder]
    assert value is not None, f"{target}: the run id is the display name"
    ModelRegistry("/tmp/unused").version_dir(value)  # raises on a name the registry refuses


# --- what the images install ------------------------------------------------------------------


def _gpu_requirements_module():
    spec = importlib.util.spec_from_file_location(
        "gpu_requirements", ROOT / "images" / "gpu_requirements.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _image_distributions(backend: str) -> frozenset[str]:
    """Every distribution the image installs: its requirements (images/gpu_requirements.py)
    and, transitively, theirs (this environment's metadata; `tensorflow[and-cuda]` counts as
    the `tensorflow-cpu` installed here, the same version and modules)."""
    import tomllib
    from packaging.requirements import Requirement

    module = _gpu_requirements_module()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [Requirement(text) for text in module.image_requirements(pyproject)]
    if backend == "jax":
        requirements.append(Requirement("jax"))
    seen, queue = set(), [(r.name, frozenset(r.extras)) for r in requirements]
    while queue:
        name, extras = queue.pop()
        key = _key(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            markers = [{"extra": extra} for extra in extras or {""}]
            if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
                queue.append((requirement.name, frozenset(requirement.extras)))
    return frozenset(key for key, _ in seen)


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _files_of(distribution: str) -> frozenset[str]:
    return frozenset(
        str(file) for file in importlib.metadata.distribution(distribution).files or ()
    )


def _owner(origin: str, top: str) -> str:
    """The installed distribution that holds the file `origin` of the top-level `top`."""
    for name in _packages_distributions().get(top, []):
        site = Path(importlib.metadata.distribution(name).locate_file(""))
        if os.path.relpath(origin, site) in _files_of(name):
            return _key(name)
    return f"?{origin}"


def _distribution_of(module: str) -> str | None:
    """The distribution whose files hold `module` (descending namespace packages such as
    `google.cloud`); None for the standard library and our own packages."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in ("contrastive", "components", "pipelines"):
        return None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if spec.origin not in (None, "namespace"):  # a regular module or package
            return _owner(spec.origin, top)
    return None


@functools.cache
def _imports_of_the_task_code() -> dict[str, set[str]]:
    """distribution -> the modules of src/contrastive, components/ and the target code a task
    calls through its environment (`TASK_PIPELINES_MODULES`) that import it (every import
    statement, those inside functions too: the paths a task may take), less the imports of
    `COMPILE_ONLY`."""
    found: dict[str, set[str]] = {}
    files = [*(ROOT / "src" / "contrastive").rglob("*.py"), *(ROOT / "components").glob("*.py")]
    files += [ROOT / "pipelines" / name for name in TASK_PIPELINES_MODULES]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                dist = _distribution_of(name)
                where = str(path.relative_to(ROOT))
                if dist is not None and (dist, where) not in COMPILE_ONLY:
                    found.setdefault(dist, set()).add(where)
    return found


# The target code a task runs: the hooks a compiled task names in its environment
# (`contrastive.environment`: the TrainJob launcher, the Vertex publisher), and what importing
# them loads (the targets package and what it imports, the CLI's step command).
TASK_PIPELINES_MODULES = (
    "__init__.py",
    "options.py",
    "cron.py",
    "package.py",
    *(f"targets/{path.name}" for path in (ROOT / "pipelines" / "targets").glob("*.py")),
    "cli/__init__.py",
    "cli/app.py",
    "cli/steps.py",
)
# Imported only when compiling, never in a task: GCPC wraps the training steps as CustomJobs
# in `VertexTarget.training_components`.
COMPILE_ONLY = {("google-cloud-pipeline-components", "pipelines/targets/vertex.py")}


# Imported only on a path that needs the other image: JAX under KERAS_BACKEND=jax
# (data_parallel is refused on TensorFlow), which the compiled tasks set only with the JAX
# image (`--backend jax`).
ONLY_IN = {"jax": "jax", "jaxlib": "jax"}


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_no_image_lacks_a_package_its_task_code_imports(backend):
    installed = _image_distributions(backend)
    missing = {
        dist: sorted(users)
        for dist, users in _imports_of_the_task_code().items()
        if dist not in installed and ONLY_IN.get(dist, backend) == backend
    }
    assert missing == {}, f"the {backend} image lacks what these modules import: {missing}"
    # The paths of issue 24: the Vertex upload (compare-and-report) and the TrainJob launcher.
    assert {"google-cloud-aiplatform", "kubernetes", "google-cloud-storage"} <= installed
    users = _imports_of_the_task_code()
    assert "pipelines/targets/vertex.py" in users["google-cloud-aiplatform"]
    assert "pipelines/targets/trainjob.py" in users["kubernetes"]


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_hook_a_task_names_is_a_function_of_the_package(name):
    """A task's launcher or publisher (`contrastive.environment`) is a function the image's
    `contrastive` wheel ships (`pipelines` is in it) and that the library can call."""
    from contrastive import environment

    spec = _compiled(name)
    hooks = {}
    for executor, body in spec["deploymentSpec"]["executors"].items():
        env = {item["name"]: item["value"] for item in body.get("container", {}).get("env", [])}
        for variable, read in (
            (environment.LAUNCHER_VARIABLE, environment.launcher),
            (environment.PUBLISHER_VARIABLE, environment.publisher),
        ):
            if variable in env:
                hooks[executor] = read(env)
    for executor, hook in hooks.items():
        assert hook.call.startswith("pipelines.targets."), (executor, hook.call)
        assert callable(hook.load()), (executor, hook.call)
    target = COMBINATIONS[name]["target"]
    gates = {executor for executor in hooks if executor == "exec-compare-and-report"}
    assert bool(gates) == (target == "vertex")  # the Vertex Model Registry's publisher
    launchers = set(hooks) - gates
    trains = COMBINATIONS[name].get("replicas", 1) > 1 and target == "kubeflow"
    assert bool(launchers) == trains  # a TrainJob launcher: Kubeflow, several nodes


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_each_task_runs_an_image_built_for_its_backend(name):
    spec = _compiled(name)
    ours = {
        executor["container"]["image"]
        for executor in spec["deploymentSpec"]["executors"].values()
        if "registry.example.com" in executor.get("container", {}).get("image", "")
    }
    assert ours == {COMBINATIONS[name]["image"]}  # GCPC's launcher image aside
    compare = spec["deploymentSpec"]["executors"]["exec-compare-and-report"]["container"]
    # The serving SavedModel needs TensorFlow, whichever backend trained (issue 24 item 4).
    assert {"name": "KERAS_BACKEND", "value": "tensorflow"} in compare["env"]
