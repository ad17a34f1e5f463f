"""A method registered from the test suite (`tests/toy_method.py`: one module, one entry)
gets its branch in the DAG on every target, its inputs in the compare and collect steps, and
its label in the report, with no other file touched. `tests/e2e/test_few_labels.py` runs
it."""

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from contrastive import methods
from tests.pipeline.compiled import flat_tasks
from tests.pipeline.test_compile import _compile, _producers, _tasks
from tests.toy_method import TOY


@pytest.fixture
def toy():
    methods.register(TOY)
    yield TOY
    methods.unregister(TOY.name)


@pytest.mark.parametrize("target", ["kubeflow", "vertex", "local"])
def test_a_registered_method_compiles_into_its_branch(tmp_path, toy, target):
    spec = _compile(tmp_path, target=target, methods=("baseline", "toy"))
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    tasks = _tasks(spec)
    assert set(tasks) == {
        "ingest",
        "check-drift",
        "train-baseline",
        "evaluate-baseline",
        "pretrain-toy",
        "classifier-toy",
        "evaluate-toy",
        # the random-init control, added beside every method with a loss
        "pretrain-random_init",
        "classifier-random_init",
        "evaluate-random_init",
        "explain-neighbours",
        "compare-and-report",
    }
    key = {t["taskInfo"]["name"]: k for k, t in flat_tasks(spec).items()}
    assert tasks["pretrain-toy"][0]["inputs"]["parameters"]["method"]["runtimeValue"] == {
        "constant": "toy"
    }
    assert _producers(tasks["classifier-toy"][0])["encoder_model"] == key["pretrain-toy"]
    branches = {
        "baseline_evaluation": key["evaluate-baseline"],
        "baseline_model": key["train-baseline"],
        "toy_evaluation": key["evaluate-toy"],
        "toy_model": key["classifier-toy"],
        "random_init_evaluation": key["evaluate-random_init"],
        "random_init_model": key["classifier-random_init"],
    }
    explain = _producers(tasks["explain-neighbours"][0])
    assert explain == {"dataset": key["ingest"], **branches}
    compare = _producers(tasks["compare-and-report"][0])
    assert compare == {
        "dataset": key["ingest"],
        **branches,
        "neighbours": key["explain-neighbours"],
        "drift": key["check-drift"],
    }
    component = spec["components"][tasks["compare-and-report"][0]["componentRef"]["name"]]
    artifacts = component["inputDefinitions"]["artifacts"]
    assert artifacts["toy_model"]["description"] == (
        "The Toy (alignment + uniformity) branch's classifier (a model directory)."
    )
    assert not artifacts["toy_model"].get("isOptional")
    # The task runs the function KFP ships in the package, written for these methods.
    shipped = " ".join(tasks["compare-and-report"][1]["command"])
    assert "toy_model: Input[Model]," in shipped and "supcon_model" not in shipped
    assert '"toy": {"evaluation": toy_evaluation, "model": toy_model},' in shipped


def test_a_method_without_labels_pretrains_once_over_the_fractions(tmp_path, toy):
    spec = _compile(tmp_path, target="kubeflow", methods=("toy",), labeled_fractions=(0.5, 1.0))
    tasks = _tasks(spec)
    # one pretraining each (toy, the random-init control), no twin
    assert len(flat_tasks(spec)) == len(tasks) == 16
    assert sorted(tasks) == [
        "check-drift",
        "classifier-random_init-100pct",
        "classifier-random_init-50pct",
        "classifier-toy-100pct",
        "classifier-toy-50pct",
        "collect-100pct",
        "collect-50pct",
        "compare-and-report",
        "evaluate-random_init-100pct",
        "evaluate-random_init-50pct",
        "evaluate-toy-100pct",
        "evaluate-toy-50pct",
        "explain-neighbours",
        "ingest",
        "pretrain-random_init",
        "pretrain-toy",
    ]


@pytest.mark.parametrize(
    ("command", "listed"),
    [
        ("pretrain", "supcon | simclr | npairs | random_init | toy (default: the profile's)"),
        (
            "run",
            "baseline,supcon,simclr,npairs,random_init,toy (default baseline,supcon,simclr)",
        ),
    ],
)
def test_the_cli_lists_a_registered_method(toy, capsys, command, listed):
    from pipelines import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    assert listed in " ".join(capsys.readouterr().out.split())
