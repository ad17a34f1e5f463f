"""`contrastive run` accepts exactly the compiled pipeline's parameters, with its descriptions."""

import argparse

import pytest

from pipelines import cli
from pipelines.cli import run
from tests.pipeline.compiled import compiled as compiled_spec
from tests.pipeline.compiled import flat_tasks


def _run_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["run"]


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_run_flags_are_the_compiled_pipeline_inputs(tmp_path, target):
    compiled = compiled_spec(target=target)["root"]["inputDefinitions"]["parameters"]
    flags = {
        action.dest: action
        for action in _run_parser()._actions
        if action.option_strings and action.dest not in ("help", *run.RUN_ONLY_FLAGS)
    }
    assert set(flags) == set(compiled)
    kinds = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}
    for name, spec in compiled.items():
        action = flags[name]
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert action.type is kinds[spec["parameterType"]], name
        default = kinds[spec["parameterType"]](spec["defaultValue"])  # YAML numbers are floats
        assert action.help == f"{spec['description']} (default: {default!r})"


def test_run_passes_only_given_flags_and_the_profile_defaults(monkeypatch, tmp_path):
    seen = {}

    def fake_run_local(params, *, methods, runs_dir, cache, verbose, labeled_fractions, **_):
        seen.update(params=params, methods=methods, fractions=labeled_fractions)
        raise SystemExit(0)

    monkeypatch.setattr("pipelines.local.run_local", fake_run_local)
    with pytest.raises(SystemExit):
        cli.main(
            [
                "run",
                "--no-estimate",
                "--profile",
                "tiny",
                "--source",
                str(tmp_path),
                "--image-size",
                "64,64",
                "--test-fraction",
                "0.25",
                "--override",
                "data.image_size=[32, 32]",
                "--override",
                "train.epochs=2",
                "--methods",
                "baseline",
            ]
        )
    assert seen["methods"] == ("baseline",)
    assert seen["fractions"] == ()  # no flag, and the tiny profile draws no curve
    assert seen["params"] == {
        "source": str(tmp_path),
        "profile": "tiny",
        "image_size": "64,64",
        "test_fraction": 0.25,
        # one JSON mapping (values may hold commas); classifier_mode unset: the profile's
        "overrides": '{"data.image_size": [32, 32], "train.epochs": 2}',
        "seed": 0,
    }


def test_bad_image_size_fails_before_any_task(tmp_path, capsys):
    code = cli.main(["run", "--image-size", "0,64", "--runs-dir", str(tmp_path / "runs")])
    assert code == 2
    assert (
        "error: image_size must be 'H,W' (or an int, or a (height, width) pair) of positive "
        "integers. Received: image_size='0,64'"
    ) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_ingest_step_gets_the_profile_and_overrides(tmp_path):
    tasks = flat_tasks(compiled_spec(target="kubeflow"))
    ingest = next(t for t in tasks.values() if t["taskInfo"]["name"] == "ingest")
    for name in ("profile", "overrides", "image_size", "test_fraction", "source"):
        assert ingest["inputs"]["parameters"][name] == {"componentInputParameter": name}


def test_run_takes_labeled_fractions_from_the_flag_or_the_few_labels_profile(
    monkeypatch, tmp_path, capsys
):
    seen = []

    def fake_run_local(params, *, methods, runs_dir, cache, verbose, labeled_fractions, **_):
        seen.append(labeled_fractions)
        raise SystemExit(0)

    monkeypatch.setattr("pipelines.local.run_local", fake_run_local)
    base = ["run", "--no-estimate", "--source", str(tmp_path)]
    for extra in (["--profile", "few-labels"], ["--labeled-fractions", "1,0.1,0.01"]):
        with pytest.raises(SystemExit):
            cli.main(base + extra)
    assert seen == [(0.01, 0.1, 1.0), (0.01, 0.1, 1.0)]
    assert cli.main(base + ["--labeled-fractions", "0.1,2"]) == 2
    assert (
        "labeled_fractions must be fractions in (0, 1], e.g. 0.01,0.1,1. "
        "Received: labeled_fractions=['0.1', '2']"
    ) in capsys.readouterr().err
    assert len(seen) == 2  # refused before any run


def test_run_flags_verbose_either_side_and_no_cache():
    parser = cli.build_parser()
    for argv, verbose, cache in (
        (["run"], False, True),
        (["-v", "run"], True, True),
        (["run", "-v"], True, True),
        (["run", "--verbose", "--no-cache"], True, False),
    ):
        args = parser.parse_args(argv)
        assert (args.verbose, args.cache) == (verbose, cache), argv


def _slow_costs(*args, **options):
    """Costs of a step that takes 5 s per optimizer step: the photos profile is hours."""
    from contrastive.estimate import BASELINE, CLASSIFIER, PRETRAIN, Costs

    cost = Costs(10.0, 5.0, 1.0, 100.0, 64)
    return {BASELINE: cost, PRETRAIN: cost, CLASSIFIER: cost}


def test_a_run_estimated_over_an_hour_needs_yes_off_a_terminal(monkeypatch, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for label in ("cats", "dogs"):
        for number in range(40):
            path = tmp_path / "photos" / label / f"{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setattr("contrastive.estimate.measure_costs", _slow_costs)
    started = []

    def fake_run_local(*args, **kwargs):
        started.append(1)
        raise SystemExit(0)

    monkeypatch.setattr("pipelines.local.run_local", fake_run_local)
    command = ["run", "--profile", "photos", "--source", str(tmp_path / "photos")]
    command += ["--runs-dir", str(tmp_path / "runs")]
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "error: this run trains for ~" in err and " h on this machine: pass --yes " in err
    # a faster alternative: the CPU profile, or epochs that fit in about an hour
    assert "or faster: --profile quick (small_cnn, minutes on a CPU) or --epochs " in err
    assert not started and not (tmp_path / "runs").exists()

    # in a terminal it asks; no (or no answer) refuses, yes starts
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    answers = iter([False, True])
    monkeypatch.setattr(run, "_ask", lambda question: next(answers))
    assert cli.main(command) == 2 and not started
    assert "error: not started; faster: --profile quick" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the run started
        cli.main(command)
    assert started == [1]
    with pytest.raises(SystemExit):
        cli.main([*command, "--yes"])  # --yes: no question
    assert started == [1, 1]


def test_the_faster_alternative_scales_the_epochs_or_the_images():
    from contrastive.config import resolve_config
    from contrastive.estimate import Estimate

    def estimated(seconds):
        return Estimate("resnet18", (96, 96, 3), 1000, 64, "float32", {}, {"x": seconds}, 1.0)

    photos = resolve_config("photos")  # 30 + 10 epochs
    assert run._faster_alternative(estimated(4 * 3600), photos) == (
        "--profile quick (small_cnn, minutes on a CPU) or --epochs 7 --classifier-epochs 2 "
        "(about an hour)"
    )
    quick = resolve_config("quick")  # 7 + 2 epochs: 10 hours -> less than an epoch
    assert run._faster_alternative(estimated(10 * 3600), quick) == "--limit 100 (about an hour)"


# Task inputs fed by a pipeline parameter of another name.
RENAMED = {
    "mode": "classifier_mode",
    "runner": "ingest_runner",
    "beam_options": "ingest_beam_options",
}


@pytest.mark.parametrize(
    ("target", "fractions"), [("kubeflow", ()), ("vertex", ()), ("kubeflow", (0.5, 1.0))]
)
def test_each_task_input_named_after_a_pipeline_parameter_is_wired_from_it(
    tmp_path, target, fractions
):
    """A step's `epochs`, `seed`, `overrides`... come from the run's parameter of that name,
    never a constant, in every task that takes one; each parameter the steps know reaches
    at least one task."""
    spec = compiled_spec(target=target, labeled_fractions=fractions)
    parameters = set(spec["root"]["inputDefinitions"]["parameters"])
    reached = set()
    for task_name, task in flat_tasks(spec).items():  # the retrain_when condition's too
        for name, value in task.get("inputs", {}).get("parameters", {}).items():
            source = RENAMED.get(name, name)
            if source in parameters:
                assert value == {"componentInputParameter": source}, (task_name, name, value)
                reached.add(source)
    assert reached == parameters
