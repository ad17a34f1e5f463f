"""A cloud target registered from the test suite (`tests/toy_target.py`: one module, one
entry) compiles the DAG with its accelerators, run id and retries, takes its own connection
flags, checks its cron dialect, and is submitted to and scheduled through `contrastive submit`
/ `schedule`, with no other file touched."""

import pytest
import yaml

from pipelines import cli, targets
from tests.pipeline.compiled import flat_tasks
from tests.toy_target import ToyTarget

IMAGE = "registry.example.com/ml/contrastive:toy"


@pytest.fixture
def toy():
    targets.register(ToyTarget)
    ToyTarget.sent.clear()
    yield ToyTarget
    targets.unregister(ToyTarget.name)


def _compiled(tmp_path, *flags):
    output = tmp_path / "toy.yaml"
    code = cli.main(
        ["compile", "--target", "toy", "--image", IMAGE, "--output", str(output), *flags]
    )
    assert code == 0
    return output, yaml.safe_load(output.read_text())


def _task(spec, display_name):
    for key, task in flat_tasks(spec).items():
        if task["taskInfo"]["name"] == display_name:
            executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
            return key, task, spec["deploymentSpec"]["executors"][executor]["container"]
    raise KeyError(display_name)


def test_a_registered_target_compiles_the_dag_its_way(tmp_path, toy, capsys):
    _, spec = _compiled(tmp_path, "--accelerator-type", "toy-h100", "--methods", "baseline")
    assert capsys.readouterr().out.startswith("compiled toy pipeline")
    _, train, container = _task(spec, "train-baseline")
    assert container["resources"]["accelerator"]["resourceType"] == "toy-h100"
    assert container["resources"]["resourceCpuLimit"] == "8"
    assert train["retryPolicy"]["maxRetryCount"] == 3
    parameters = train["inputs"]["parameters"]
    assert parameters["job_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    _, compare, _ = _task(spec, "compare-and-report")
    assert compare["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_name}}"
    )
    _, _, ingest = _task(spec, "ingest")
    assert ingest["resources"]["resourceCpuLimit"] == "4"


def test_a_registered_target_refuses_what_it_cannot_run(tmp_path, toy, capsys):
    base = ["compile", "--target", "toy", "--output", str(tmp_path / "x.yaml")]
    assert cli.main([*base, "--accelerator-type", "nvidia.com/gpu"]) == 2
    assert "'nvidia.com/gpu' is a Kubernetes resource name; Toy cloud needs a name like " in (
        capsys.readouterr().err
    )
    assert cli.main([*base, "--replicas", "2", "--backend", "jax"]) == 2
    assert "replicas > 1 needs a target that runs a step on several nodes (kubeflow, vertex)" in (
        capsys.readouterr().err
    )
    assert cli.main([*base, "--node-selector", "pool=gpu"]) == 2
    assert "Kubernetes settings, for target kubeflow only. Received: target='toy'" in (
        capsys.readouterr().err
    )


def test_a_registered_target_is_submitted_to_and_scheduled_with_its_own_flags(
    tmp_path, toy, capsys
):
    package, _ = _compiled(tmp_path, "--accelerator-count", "0")
    capsys.readouterr()
    submit = ["submit", "--target", "toy", "--package", str(package)]
    assert cli.main([*submit, "--endpoint", "http://toy.example"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "run id: toy-run-1",
        "url: http://toy.example/runs/toy-run-1",
    ]
    assert ToyTarget.sent == [("run", "http://toy.example", "contrastive", {})]
    # Its connection is checked before any request; another target's flag is refused.
    assert cli.main(submit) == 2
    assert capsys.readouterr().err.strip() == "error: --endpoint is required for target toy"
    assert cli.main([*submit, "--endpoint", "http://t", "--project", "p"]) == 2
    assert "--project is for target vertex. Received: target='toy'" in capsys.readouterr().err
    # Its cron dialect: 5 fields, no time zone.
    schedule = ["schedule", "--target", "toy", "--package", str(package), "--endpoint", "e"]
    schedule += ["--schedule-name", "weekly"]
    assert cli.main([*schedule, "--cron", "0 3 * * 1"]) == 0
    assert ToyTarget.sent[-1] == ("schedule", "e", "weekly", "0 3 * * 1")
    assert cli.main([*schedule, "--cron", "TZ=Europe/Paris 0 3 * * 1"]) == 2
    assert "cron for toy takes no time zone prefix (toy schedules run in UTC)" in (
        capsys.readouterr().err
    )
    assert len(ToyTarget.sent) == 2
