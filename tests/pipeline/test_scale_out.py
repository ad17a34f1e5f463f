"""Compiled YAML of the scale-out options: one node with K GPUs, N nodes on Vertex (GCPC
CustomJobs), N nodes on Kubeflow (TrainJob launchers), and the refusals."""

import json

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.dag import build_pipeline
from tests.pipeline.compiled import compiled_text, flat_tasks

IMAGE = "us-docker.pkg.dev/acme/ml/contrastive-jax:1a2b3c4"
TRAINING = {
    "train-baseline",
    "pretrain-supcon",
    "pretrain-simclr",
    "classifier-supcon",
    "classifier-simclr",
}
EVALUATION = {"evaluate-baseline", "evaluate-supcon", "evaluate-simclr"}


def _compile(tmp_path, **kwargs):
    text = compiled_text(image=IMAGE, **kwargs)  # once per option set in the process
    spec = yaml.safe_load(text)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    return spec, text


def _tasks(spec):
    """display name -> (task, component, executor)."""
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for task in flat_tasks(spec).values():
        component = spec["components"][task["componentRef"]["name"]]
        out[task["taskInfo"]["name"]] = (task, component, executors[component["executorLabel"]])
    return out


def _constant(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def test_one_node_with_k_gpus_trains_data_parallel_on_jax(tmp_path):
    spec, _ = _compile(tmp_path, target="kubeflow", accelerator_count=4, backend="jax")
    for name, (task, _, executor) in _tasks(spec).items():
        container = executor["container"]
        assert container["image"] == IMAGE
        if name in TRAINING | EVALUATION:
            assert container["resources"]["accelerator"]["resourceCount"] == "4"
            assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert {"name": "KERAS_BACKEND", "value": "jax"} in container["env"]
        if name in TRAINING:
            assert _constant(task, "distribution") == "data_parallel"


def test_one_gpu_stays_on_one_device(tmp_path):
    spec, _ = _compile(tmp_path, target="kubeflow")
    for name, (task, _, executor) in _tasks(spec).items():
        if name in TRAINING:
            assert "distribution" not in task["inputs"]["parameters"]  # the profile's: none
            assert "env" not in executor["container"]


@pytest.mark.parametrize("strategy", ["STANDARD", "SPOT"])
def test_vertex_replicas_run_training_as_custom_jobs(tmp_path, strategy):
    spec, text = _compile(
        tmp_path,
        target="vertex",
        replicas=2,
        accelerator_count=4,
        backend="jax",
        strategy=strategy,
        job_output_dir="gs://acme-ml/custom-jobs",
    )
    tasks = _tasks(spec)
    for name in TRAINING:
        task, component, executor = tasks[name]
        parameters = component["inputDefinitions"]["parameters"]
        pools = parameters["worker_pool_specs"]["defaultValue"]
        # GCPC: the primary replica in pool 0, the other N - 1 in pool 1; same container.
        assert [pool["replica_count"] for pool in pools] == [1, 1]
        for pool in pools:
            assert pool["machine_spec"] == {
                "machine_type": "g2-standard-48",
                "accelerator_type": "NVIDIA_L4",
                "accelerator_count": 4,
            }
            assert pool["container_spec"]["image_uri"] == IMAGE
            assert pool["container_spec"]["env"] == [{"name": "KERAS_BACKEND", "value": "jax"}]
        assert parameters["strategy"]["defaultValue"] == strategy
        assert parameters["base_output_directory"]["defaultValue"] == "gs://acme-ml/custom-jobs"
        assert _constant(task, "distribution") == "data_parallel"
        # The CustomJob runs as the PipelineJob's service account (GCPC 2.22.0
        # _placeholders.SERVICE_ACCOUNT_PLACEHOLDER), not Vertex's Custom Code Service Agent.
        assert _constant(task, "service_account") == "{{$.pipeline_service_account}}"
        # The launcher task runs GCPC's image and holds no GPU itself.
        assert executor["container"]["image"].startswith(
            "gcr.io/ml-pipeline/google-cloud-pipeline-components:"
        )
        assert "resources" not in executor["container"]
    for name in EVALUATION:
        container = tasks[name][2]["container"]
        assert container["image"] == IMAGE
        assert container["resources"]["accelerator"]["resourceType"] == "NVIDIA_L4"
    for secret in ("token", "password", "private_key", "BEGIN"):
        assert secret not in text.lower().replace("private_key_id", "")


def _env(executor):
    return {item["name"]: item["value"] for item in executor["container"].get("env", [])}


def test_kubeflow_replicas_launch_each_training_step_as_a_trainjob(tmp_path):
    spec, text = _compile(
        tmp_path, target="kubeflow", replicas=2, accelerator_count=4, backend="jax"
    )
    tasks = _tasks(spec)
    for name in TRAINING:
        task, component, executor = tasks[name]
        env = _env(executor)
        # The Kubeflow target's launcher, and what its TrainJob gets: 2 nodes x 4 GPUs, the
        # JAX image, the JAX runtime.
        assert json.loads(env["CONTRASTIVE_LAUNCHER"]) == {
            "call": "pipelines.targets.trainjob:launch_training_step",
            "settings": {
                "image": IMAGE,
                "num_nodes": 2,
                "gpus_per_node": 4,
                "gpu_resource": "nvidia.com/gpu",
            },
        }
        assert env["KERAS_BACKEND"] == "jax"
        container = executor["container"]
        # The launcher runs the same component in the same image, with no GPU of its own.
        assert container["image"] == IMAGE
        assert container["resources"] == {
            "cpuLimit": 1.0,
            "memoryLimit": 4.0,
            "resourceCpuLimit": "1",
            "resourceMemoryLimit": "4G",
        }
        assert _constant(task, "distribution") == "data_parallel"
        # The command's inputs: the artifacts (their URIs) and the step's parameters.
        assert set(component["inputDefinitions"]["artifacts"]) >= {"dataset"}
        assert set(component["outputDefinitions"]["artifacts"]) & {"model", "encoder_model"}
        assert _constant(task, "tensorboard_name") == name
    assert _constant(tasks["pretrain-supcon"][0], "method") == "supcon"
    for name in EVALUATION:
        _, _, executor = tasks[name]
        assert "CONTRASTIVE_LAUNCHER" not in _env(executor)
        assert executor["container"]["resources"]["accelerator"] == {
            "count": "4",
            "resourceCount": "4",
            "resourceType": "nvidia.com/gpu",
            "type": "nvidia.com/gpu",
        }
    for secret in ("token", "password", "private_key", "secret", "BEGIN"):
        assert secret.lower() not in text.lower()


def test_kubeflow_replicas_command_reads_back_as_the_tasks_configuration():
    """The TrainJob's command, parsed by the CLI, resolves to the configuration the task
    itself resolves from its parameters (every override survives the trip)."""
    from contrastive.config import pipeline_overrides, resolve_config
    from contrastive.tasks.calls import TrainingCall
    from pipelines.cli import build_parser
    from pipelines.cli.steps import _config, training_argv

    overrides = (
        '{"data.image_size": [32, 32], "train.learning_rate": 1e-3, "train.optimizer": "sgd"}'
    )
    shortcuts = dict(epochs=3, batch_size=64, temperature=0.2, seed=0, distribution="data_parallel")
    command = training_argv(
        TrainingCall(
            "pretrain",
            data="gs://b/root/dataset",
            output="gs://b/root/encoder_model",
            profile="tiny",
            overrides=pipeline_overrides(overrides, **shortcuts),
            method="simclr",
        )
    )
    assert command[:10] == [
        "contrastive",
        "pretrain",
        "--data",
        "gs://b/root/dataset",
        "--output",
        "gs://b/root/encoder_model",
        "--profile",
        "tiny",
        "--method",
        "simclr",
    ]
    args = build_parser().parse_args(command[1:])
    assert _config(args) == resolve_config("tiny", overrides=overrides, **shortcuts)
    assert _config(args).train.learning_rate == 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"target": "kubeflow", "accelerator_count": 4},
            "1 replica(s) x 4 accelerator(s) train data-parallel, which runs on the JAX "
            "backend: compile with --backend jax and the JAX image. Received: "
            "backend='tensorflow'",
        ),
        (
            {"target": "vertex", "replicas": 2, "backend": "jax", "accelerator_count": 3},
            "no default Vertex machine type for 3 x NVIDIA_L4; pass --machine-type. Received: "
            "accelerator_type='NVIDIA_L4', accelerator_count=3",
        ),
        (
            {"target": "kubeflow", "replicas": 2, "backend": "jax", "accelerator_count": -1},
            "accelerator_count must be an integer >= 0. Received: accelerator_count=-1",
        ),
        (
            {"target": "kubeflow", "replicas": 2, "backend": "cuda"},
            "backend must be one of ['tensorflow', 'jax']. Received: backend='cuda'",
        ),
        (
            {"target": "vertex", "replicas": 0},
            "replicas must be an integer >= 1. Received: replicas=0",
        ),
        (
            {"target": "vertex", "replicas": 2, "backend": "jax", "strategy": "FLEX"},
            "strategy must be one of ['STANDARD', 'SPOT']. Received: strategy='FLEX'",
        ),
    ],
)
def test_scale_out_settings_that_cannot_run_are_refused(kwargs, message):
    with pytest.raises(ValueError) as raised:
        build_pipeline(image=IMAGE, **kwargs)
    assert str(raised.value) == message


def test_vertex_machine_type_can_be_given(tmp_path):
    spec, _ = _compile(
        tmp_path,
        target="vertex",
        replicas=3,
        accelerator_count=3,
        backend="jax",
        machine_type="custom-machine-3gpu",
    )
    component = _tasks(spec)["pretrain-supcon"][1]
    pools = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    assert [pool["replica_count"] for pool in pools] == [1, 2]
    assert pools[1]["machine_spec"]["machine_type"] == "custom-machine-3gpu"


def test_compile_cli_kubeflow_replicas_with_pod_settings(tmp_path, capsys):
    """`contrastive compile --target kubeflow --replicas 2`: pull secrets and the timeout reach
    the launchers; the GPU node pool settings only the steps that hold GPUs."""
    from pipelines import cli

    output = tmp_path / "kf.yaml"
    flags = ["compile", "--target", "kubeflow", "--backend", "jax", "--replicas", "2"]
    flags += ["--accelerator-count", "4", "--image", IMAGE, "--output", str(output)]
    flags += ["--node-selector", "pool=gpu", "--image-pull-secret", "regcred"]
    flags += ["--task-timeout", "7200"]
    assert cli.main(flags) == 0
    assert capsys.readouterr().out.startswith("compiled kubeflow pipeline")
    spec, platform = yaml.safe_load_all(output.read_text())
    pods = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("exec-pretrain-encoder", "exec-train-classifier", "exec-train-baseline"):
        assert "CONTRASTIVE_LAUNCHER" in _env(spec["deploymentSpec"]["executors"][executor])
        assert set(pods[executor]) == {"activeDeadlineSeconds", "imagePullSecret"}
        assert pods[executor]["activeDeadlineSeconds"] == "7200"
        assert pods[executor]["imagePullSecret"][0]["secretName"] == "regcred"
    assert pods["exec-evaluate-classifier"]["nodeSelector"] == {"labels": {"pool": "gpu"}}
