"""Kubeflow pod settings from kfp-kubernetes, chosen at compile time, in the compiled YAML."""

import pytest
from google.protobuf import json_format
from kfp import compiler
from kfp.kubernetes import kubernetes_executor_config_pb2

from pipelines import cli
from pipelines.dag import build_pipeline
from pipelines.package import load_package
from pipelines.targets.kubernetes import KubernetesSettings, Toleration, parse_toleration
from tests.pipeline.compiled import flat_tasks

IMAGE = "registry.example.com/ml/contrastive:1a2b3c4"
FLAGS = dict(
    node_selector=["cloud.google.com/gke-nodepool=gpu-pool"],
    tolerations=["nvidia.com/gpu:NoSchedule", "cloud.google.com/gke-spot=true:NoSchedule"],
    image_pull_secrets=["regcred"],
    task_timeout=7200,
)
EVERY_POD = {
    "activeDeadlineSeconds": "7200",
    "imagePullSecret": [
        {"secretName": "regcred", "secretNameParameter": {"runtimeValue": {"constant": "regcred"}}}
    ],
}
GPU_POD = {
    **EVERY_POD,
    "nodeSelector": {"labels": {"cloud.google.com/gke-nodepool": "gpu-pool"}},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "cloud.google.com/gke-spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        },
    ],
}


def _documents(path):
    """The package's documents as `contrastive submit` reads them: the pipeline spec, then the
    platform spec where there is one."""
    package = load_package(path)
    return [doc for doc in (package.spec, package.platform_spec) if doc is not None]


def _compile(tmp_path, settings, target="kubeflow"):
    path = tmp_path / "pipeline.yaml"
    pipeline = build_pipeline(
        image=IMAGE, target=target, methods=["baseline", "supcon"], kubernetes=settings
    )
    compiler.Compiler().compile(pipeline, str(path))
    return _documents(path)


def test_kubernetes_settings_land_in_the_platform_spec_of_each_executor(tmp_path):
    spec, platform = _compile(tmp_path, KubernetesSettings.from_flags(**FLAGS))

    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])
    # the random-init control's encoder is built untrained: a CPU pod like ingest's
    control = next(
        spec["components"][task["componentRef"]["name"]]["executorLabel"]
        for task in flat_tasks(spec).values()
        if task["taskInfo"]["name"] == "pretrain-random_init"
    )
    cpu_only = {"exec-ingest-data", "exec-check-drift", "exec-compare-and-report", control}
    expected = {name: EVERY_POD if name in cpu_only else GPU_POD for name in executors}
    assert {"exec-train-baseline", "exec-pretrain-encoder", "exec-evaluate-classifier-2"} <= set(
        executors
    )
    assert executors == expected
    for executor in executors.values():
        # Field names and types are kfp-kubernetes' own executor config.
        json_format.ParseDict(executor, kubernetes_executor_config_pb2.KubernetesExecutorConfig())


def test_kubernetes_no_settings_no_platform_spec(tmp_path):
    (spec,) = _compile(tmp_path, None)
    assert spec["pipelineInfo"]["name"] == "contrastive"


def test_kubernetes_settings_refused_for_vertex(tmp_path):
    with pytest.raises(ValueError) as caught:
        _compile(tmp_path, KubernetesSettings.from_flags(task_timeout=60), target="vertex")
    assert str(caught.value) == (
        "node selector, tolerations, image pull secrets and task timeout are Kubernetes "
        "settings, for target kubeflow only. Received: target='vertex'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nvidia.com/gpu:NoSchedule", Toleration("nvidia.com/gpu", "NoSchedule")),
        ("spot=true:NoExecute", Toleration("spot", "NoExecute", "true")),
        ("dedicated=:PreferNoSchedule", Toleration("dedicated", "PreferNoSchedule", "")),
    ],
)
def test_kubernetes_toleration_forms(text, expected):
    parsed = parse_toleration(text)
    assert parsed == expected
    assert parsed.operator == ("Exists" if expected.value is None else "Equal")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            dict(node_selector=["gpu-pool"]),
            "node selector must be LABEL=VALUE with a Kubernetes label, e.g. "
            "'cloud.google.com/gke-nodepool=gpu-pool'. Received: node_selector='gpu-pool'",
        ),
        (
            dict(node_selector=["pool=has space"]),
            "Received: node_selector='pool=has space'",
        ),
        (
            dict(tolerations=["nvidia.com/gpu:NoSchedul"]),
            "toleration must be KEY[=VALUE]:EFFECT with EFFECT one of NoSchedule, "
            "PreferNoSchedule, NoExecute, e.g. 'nvidia.com/gpu:NoSchedule'. "
            "Received: toleration='nvidia.com/gpu:NoSchedul'",
        ),
        (dict(tolerations=["nvidia.com/gpu"]), "Received: toleration='nvidia.com/gpu'"),
        (
            dict(image_pull_secrets=["Reg_Cred"]),
            "image pull secret must be a Kubernetes secret name like 'regcred'. "
            "Received: image_pull_secret='Reg_Cred'",
        ),
        (
            dict(task_timeout=-1),
            "task timeout must be an int >= 0 seconds (0 = none). Received: task_timeout=-1",
        ),
    ],
)
def test_kubernetes_bad_flag_is_refused_naming_it(flags, message):
    with pytest.raises(ValueError) as caught:
        KubernetesSettings.from_flags(**flags)
    assert message in str(caught.value)


def test_kubernetes_compile_cli_flags(tmp_path, capsys):
    output = tmp_path / "kf.yaml"
    code = cli.main(
        [
            "compile",
            "--target",
            "kubeflow",
            "--image",
            IMAGE,
            "--methods",
            "baseline",
            "--output",
            str(output),
            "--node-selector",
            "cloud.google.com/gke-nodepool=gpu-pool",
            "--toleration",
            "nvidia.com/gpu:NoSchedule",
            "--toleration",
            "cloud.google.com/gke-spot=true:NoSchedule",
            "--image-pull-secret",
            "regcred",
            "--task-timeout",
            "7200",
        ]
    )
    assert code == 0
    _, platform = _documents(output)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train-baseline"] == GPU_POD
    assert executors["exec-ingest-data"] == EVERY_POD


def test_kubernetes_compile_cli_refuses_them_for_vertex(tmp_path, capsys):
    output = tmp_path / "vx.yaml"
    code = cli.main(
        ["compile", "--target", "vertex", "--image", IMAGE, "--output", str(output)]
        + ["--toleration", "nvidia.com/gpu:NoSchedule"]
    )
    assert code == 2
    assert "for target kubeflow only. Received: target='vertex'" in capsys.readouterr().err
    assert not output.exists()
