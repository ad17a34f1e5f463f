"""Compile the DAG for both targets and check the spec: tasks, edges, accelerators, image."""

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines import cli
from pipelines.dag import build_pipeline
from pipelines.package import YAML_LOADER, load_package
from pipelines.targets.kubernetes import KubernetesSettings
from tests.pipeline.compiled import compiled, compiled_text, flat_tasks

IMAGE = "us-docker.pkg.dev/acme/ml/contrastive:1a2b3c4"
GPU_TASKS = {
    "train-baseline",
    "pretrain-supcon",
    "pretrain-simclr",
    "classifier-supcon",
    "classifier-simclr",
    "evaluate-baseline",
    "evaluate-supcon",
    "evaluate-simclr",
    # the random-init control, added beside every contrastive method (its encoder is built
    # untrained, on a CPU: CPU_TASKS)
    "classifier-random_init",
    "evaluate-random_init",
    "explain-neighbours",
}
CPU_TASKS = {"ingest", "check-drift", "compare-and-report", "pretrain-random_init"}


def _compile(tmp_path, **kwargs):
    return compiled(image=IMAGE, **kwargs)  # once per option set in the process


def _tasks(spec):
    """display name -> (task, executor container)."""
    executors = spec["deploymentSpec"]["executors"]
    components = spec["components"]
    out = {}
    for task in flat_tasks(spec).values():
        component = components[task["componentRef"]["name"]]
        out[task["taskInfo"]["name"]] = (task, executors[component["executorLabel"]]["container"])
    return out


def _producers(task):
    artifacts = task.get("inputs", {}).get("artifacts", {})
    return {name: a["taskOutputArtifact"]["producerTask"] for name, a in artifacts.items()}


@pytest.mark.parametrize(
    "target, accelerator", [("kubeflow", "nvidia.com/gpu"), ("vertex", "NVIDIA_L4")]
)
def test_dag_tasks_edges_and_accelerators(tmp_path, target, accelerator):
    spec = _compile(tmp_path, target=target)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # a valid PipelineSpec proto
    tasks = _tasks(spec)
    assert set(tasks) == GPU_TASKS | CPU_TASKS
    for name, (_, container) in tasks.items():
        assert container["image"] == IMAGE
        accel = container.get("resources", {}).get("accelerator")
        if name in GPU_TASKS:
            assert accel["resourceType"] == accelerator and accel["resourceCount"] == "1", name
        else:
            assert accel is None, f"{name} must not request an accelerator"
    key = {t["taskInfo"]["name"]: k for k, t in flat_tasks(spec).items()}
    ingest = key["ingest"]
    assert _producers(tasks["pretrain-supcon"][0]) == {"dataset": ingest}
    assert _producers(tasks["classifier-simclr"][0])["encoder_model"] == key["pretrain-simclr"]
    assert _producers(tasks["evaluate-baseline"][0])["model"] == key["train-baseline"]
    compare = _producers(tasks["compare-and-report"][0])
    assert compare["supcon_evaluation"] == key["evaluate-supcon"]
    assert compare["simclr_model"] == key["classifier-simclr"]
    assert compare["baseline_model"] == key["train-baseline"]
    assert "retryPolicy" in flat_tasks(spec)[key["pretrain-supcon"]]


def test_methods_switch_branches_off(tmp_path):
    tasks = _tasks(_compile(tmp_path, target="kubeflow", methods=["baseline", "npairs"]))
    assert set(tasks) == {
        "ingest",
        "check-drift",
        "train-baseline",
        "evaluate-baseline",
        "pretrain-npairs",
        "classifier-npairs",
        "evaluate-npairs",
        "pretrain-random_init",
        "classifier-random_init",
        "evaluate-random_init",
        "explain-neighbours",
        "compare-and-report",
    }
    with pytest.raises(ValueError, match="moco"):
        build_pipeline(methods=["supcon", "moco"])


def test_cpu_only_and_custom_accelerator(tmp_path):
    tasks = _tasks(_compile(tmp_path, target="vertex", accelerator_count=0))
    assert all("accelerator" not in c.get("resources", {}) for _, c in tasks.values())
    tasks = _tasks(  # two GPUs train data-parallel, on the JAX backend (test_scale_out.py)
        _compile(
            tmp_path,
            target="vertex",
            accelerator_type="NVIDIA_H100_80GB",
            accelerator_count=2,
            backend="jax",
        )
    )
    accel = tasks["pretrain-supcon"][1]["resources"]["accelerator"]
    assert (accel["resourceType"], accel["resourceCount"]) == ("NVIDIA_H100_80GB", "2")


@pytest.mark.parametrize("target, wrong", [("kubeflow", "NVIDIA_L4"), ("vertex", "nvidia.com/gpu")])
def test_accelerator_name_of_the_wrong_target_is_refused(target, wrong):
    with pytest.raises(ValueError, match=wrong.replace(".", r"\.")):
        build_pipeline(target=target, accelerator_type=wrong)


def test_pipeline_parameters_and_cache_settings(tmp_path):
    spec = _compile(tmp_path, target="kubeflow")
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in (
        "source",
        "profile",
        "epochs",
        "batch_size",
        "temperature",
        "encoder",
        "data_snapshot",
        "registry",
        "promotion_margin",
        "classifier_mode",
        "limit",
    ):
        assert name in params, name
    tasks = flat_tasks(spec)
    compare = next(t for t in tasks.values() if t["taskInfo"]["name"] == "compare-and-report")
    assert compare.get("cachingOptions", {}).get("enableCache") in (False, None)
    ingest = next(t for t in tasks.values() if t["taskInfo"]["name"] == "ingest")
    assert ingest["inputs"]["parameters"]["data_snapshot"]["componentInputParameter"] == (
        "data_snapshot"
    )


def test_cli_compile_writes_yaml_with_the_image(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    code = cli.main(
        [
            "compile",
            "--target",
            "vertex",
            "--image",
            IMAGE,
            "--output",
            str(out),
            "--accelerator-type",
            "NVIDIA_TESLA_T4",
        ]
    )
    assert code == 0
    text = out.read_text()
    assert IMAGE in text and "NVIDIA_TESLA_T4" in text
    code = cli.main(
        [
            "compile",
            "--target",
            "kubeflow",
            "--output",
            str(tmp_path / "k.yaml"),
            "--accelerator-type",
            "NVIDIA_TESLA_T4",
        ]
    )
    assert code == 2
    assert "NVIDIA_TESLA_T4" in capsys.readouterr().err
    assert not (tmp_path / "k.yaml").exists()


def test_compiled_yaml_describes_every_input(tmp_path):
    """Every component input and every pipeline parameter carries its Args: line."""
    import components
    from components.branches import descriptions
    from components.parameters import DESCRIPTIONS

    methods = ("baseline", "supcon", "simclr", "npairs", "random_init")  # the control added
    spec = _compile(tmp_path, target="vertex", methods=methods)
    described = {**DESCRIPTIONS, **descriptions(components.compare_and_report, methods)}
    assert described["npairs_model"] == (
        "The N-pairs (seeds' SupCon) branch's classifier (a model directory)."
    )
    # A condition's sub-DAG (dsl.If) takes KFP's own pipelinechannel-- inputs: not described.
    steps = {name: c for name, c in spec["components"].items() if "dag" not in c}
    interfaces = {"root": spec["root"], **steps}
    checked = 0
    for name, interface in interfaces.items():
        definitions = interface.get("inputDefinitions", {})
        for kind in ("parameters", "artifacts"):
            for parameter, definition in definitions.get(kind, {}).items():
                assert definition.get("description") == described[parameter], (name, parameter)
                checked += 1
    assert checked >= 40
    assert spec["root"]["inputDefinitions"]["parameters"]["promotion_margin"]["description"]


def test_an_undescribed_input_is_refused():
    from components.parameters import document

    def step(profile: str, mystery: int = 0):
        """A step."""

    with pytest.raises(ValueError, match=r"Received: missing=\['mystery'\]"):
        document(step)


def _constant(task, name):
    value = task.get("inputs", {}).get("parameters", {}).get(name)
    return None if value is None else value["runtimeValue"]["constant"]


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_labeled_fractions_compile_one_branch_each_and_one_simclr_pretraining(tmp_path, target):
    spec = _compile(tmp_path, target=target, labeled_fractions=(1.0, 0.01, 0.1))
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    tasks = _tasks(spec)
    key = {t["taskInfo"]["name"]: k for k, t in flat_tasks(spec).items()}
    pretraining = sorted(name for name in tasks if name.startswith("pretrain-"))
    assert pretraining == [
        "pretrain-random_init",  # the control, untrained: once, like simclr
        "pretrain-simclr",
        "pretrain-supcon-100pct",
        "pretrain-supcon-10pct",
        "pretrain-supcon-1pct",
    ]
    assert _constant(tasks["pretrain-simclr"][0], "labeled_subset_fraction") is None
    components = [t["componentRef"]["name"] for t in flat_tasks(spec).values()]
    assert sum(name.startswith("comp-pretrain-encoder") for name in components) == 5
    for tag, fraction in (("1pct", 0.01), ("10pct", 0.1), ("100pct", 1.0)):
        for step in ("train-baseline", "pretrain-supcon", "classifier-supcon", "classifier-simclr"):
            assert _constant(tasks[f"{step}-{tag}"][0], "labeled_subset_fraction") == fraction
        producers = _producers(tasks[f"classifier-simclr-{tag}"][0])
        assert producers["encoder_model"] == key["pretrain-simclr"]  # the one encoder
        collected = _producers(tasks[f"collect-{tag}"][0])
        assert collected["simclr_evaluation"] == key[f"evaluate-simclr-{tag}"]
        control = _producers(tasks[f"classifier-random_init-{tag}"][0])["encoder_model"]
        assert control == key["pretrain-random_init"]
        assert collected["random_init_evaluation"] == key[f"evaluate-random_init-{tag}"]
    assert _producers(tasks["collect-10pct"][0])["previous_curve"] == key["collect-1pct"]
    assert "previous_curve" not in _producers(tasks["collect-1pct"][0])
    compare = _producers(tasks["compare-and-report"][0])
    assert compare["curve"] == key["collect-100pct"]
    assert compare["supcon_model"] == key["classifier-supcon-100pct"]  # the gate: largest
    assert compare["baseline_evaluation"] == key["evaluate-baseline-100pct"]
    # ingest, check-drift; per fraction baseline, supcon, 3 classifiers, 4 evaluations,
    # collect; simclr and the random-init control once; explain, compare
    assert len(tasks) == 2 + 3 * (1 + 1 + 3 + 4 + 1) + 2 + 2


def test_no_labeled_fractions_keep_the_single_run_dag(tmp_path):
    spec = _compile(tmp_path, target="kubeflow")
    assert not any(name.startswith("collect") for name in _tasks(spec))
    for task, _ in _tasks(spec).values():
        assert _constant(task, "labeled_subset_fraction") is None
    with pytest.raises(ValueError, match=r"labeled_fractions must be fractions in \(0, 1\]"):
        build_pipeline(target="kubeflow", labeled_fractions="0.1,1.5")


def test_cli_compile_takes_labeled_fractions(tmp_path):
    out = tmp_path / "few.yaml"
    flags = ["compile", "--target", "kubeflow", "--output", str(out)]
    assert cli.main([*flags, "--labeled-fractions", "1,0.05"]) == 0
    spec = yaml.safe_load(out.read_text())
    names = {task["taskInfo"]["name"] for task in flat_tasks(spec).values()}
    assert {"collect-5pct", "collect-100pct", "pretrain-simclr", "train-baseline-5pct"} <= names
    assert "train-baseline" not in names


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_retrain_when_gates_every_training_task_behind_the_drift_check(tmp_path, target):
    from contrastive.drift import RETRAIN

    spec = _compile(tmp_path, target=target)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    root = spec["root"]["dag"]["tasks"]
    parameter = spec["root"]["inputDefinitions"]["parameters"]["retrain_when"]
    assert parameter["defaultValue"] == "always" and "skip" in parameter["description"]
    by_name = {task["taskInfo"]["name"]: key for key, task in root.items()}
    assert set(by_name) == {"ingest", "check-drift", "retrain"}  # nothing else runs first
    check = root[by_name["check-drift"]]
    assert check["cachingOptions"].get("enableCache") in (False, None)  # reads the registry
    assert _producers(check) == {"dataset": by_name["ingest"]}
    inputs = check["inputs"]["parameters"]
    for name in ("retrain_when", "registry", "profile", "overrides", "epochs", "seed"):
        assert inputs[name] == {"componentInputParameter": name}, name
    assert inputs["methods"]["runtimeValue"]["constant"] == "baseline,supcon,simclr,random_init"
    gate = root[by_name["retrain"]]
    channel = gate["inputs"]["parameters"]["pipelinechannel--check-drift-Output"]
    assert channel == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "check-drift"}
    }
    assert gate["triggerPolicy"]["condition"] == (
        f"inputs.parameter_values['pipelinechannel--check-drift-Output'] == '{RETRAIN}'"
    )
    inside = spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    names = {task["taskInfo"]["name"] for task in inside.values()}
    # every training step is gated (the control's encoder too)
    assert names == GPU_TASKS | {"compare-and-report", "pretrain-random_init"}
    tasks = _tasks(spec)
    key = {t["taskInfo"]["name"]: k for k, t in flat_tasks(spec).items()}
    compare = _producers(tasks["compare-and-report"][0])
    assert compare["drift"] == "check-drift"
    assert compare["neighbours"] == key["explain-neighbours"]
    explain = _producers(tasks["explain-neighbours"][0])
    assert explain["supcon_model"] == key["classifier-supcon"]
    assert explain["baseline_evaluation"] == key["evaluate-baseline"]


def test_a_package_loads_through_libyaml_to_the_pure_python_parsers_documents(tmp_path):
    assert YAML_LOADER is yaml.CSafeLoader  # PyYAML's wheels carry LibYAML: the fast path
    # pod settings: the package has a second document, Kubeflow's platform spec
    settings = KubernetesSettings.from_flags(image_pull_secrets=["regcred"], task_timeout=60)
    text = compiled_text(target="kubeflow", labeled_fractions=(1.0, 0.01, 0.1), kubernetes=settings)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    package = load_package(path)
    spec, platform_spec = yaml.load_all(text, Loader=yaml.SafeLoader)  # pure Python
    assert package.spec == spec and package.platform_spec == platform_spec
