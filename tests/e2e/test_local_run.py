"""The whole DAG through kfp.local (SubprocessRunner) on a tiny separable dataset, via the CLI
(the shared `tiny_run`, marked slow by tests/conftest.py: every method and the toy plugin
method at 100 and 50 % of the labels; tests/e2e/test_few_labels.py reads its curve), and its
refusal of bad parameters."""

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN_FLAGS
from tests.e2e.cli_run import run_ok

# Test-accuracy floors on the separable 4-class set (chance 0.25) after one epoch of the tiny
# profile. Measured (`contrastive run --profile tiny --epochs 1 --seed S`, S = 0, 1, 2):
# baseline 1.00 / 1.00 / 1.00, supcon and simclr 1.00 at seeds 0 and 2 since the tiny profile
# trains its linear probe at quick's learning rate 0.1 (at 0.02 its six steps left seed 0 at
# supcon 0.50, simclr 0.66); a model that predicts one class scores 0.25. Those were float32;
# this run sets `train.mixed_precision=auto`, bfloat16 on a CPU with avx512_bf16, where seed
# 0 passed the same floors (2026-11-30).
FLOORS = {"baseline": 0.9, "supcon": 0.6, "simclr": 0.6}
KNN_FLOOR = 0.9  # the encoders' kNN accuracy: 1.00 in every measured seed
# every task of the run, as kfp.local names them: 2 baselines, 5 pretrainings (SupCon per
# fraction; SimCLR, the toy method and the untrained control once), 8 classifiers, 10
# evaluations, one collection per fraction
COUNTS = {
    "ingest-data": 1,
    "check-drift": 1,
    "explain-neighbours": 1,
    "compare-and-report": 1,
    "train-baseline": 2,
    "pretrain-encoder": 5,
    "train-classifier": 8,
    "evaluate-classifier": 10,
    "collect-fraction": 2,
}
# kfp.local names a component's first task after it, the next ones `-2`, `-3`, ...
TASKS = {f"{name}-{i}" if i > 1 else name for name, n in COUNTS.items() for i in range(1, n + 1)}


def expected_precision() -> str:
    """What `train.mixed_precision: auto` must pick for these CPU-only TensorFlow steps, read
    here from /proc/cpuinfo without the library: bfloat16 with native bfloat16, else float32."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


@pytest.fixture(scope="module")
def local_run(tiny_run):
    """The shared tiny run (tests/conftest.py: every method, one epoch, precision auto)."""
    return tiny_run.runs, tiny_run.stdout


def test_run_prints_the_table_and_writes_results(local_run):
    runs, stdout = local_run
    latest = runs / "latest"
    assert latest.is_symlink()
    results = json.loads((latest / "results.json").read_text())
    assert set(results["methods"]) == {*FLOORS, "toy", "random_init"}  # the 100 % branches
    for name, method in results["methods"].items():
        assert method["test_accuracy"] >= FLOORS.get(name, 0.0), (name, method)
        if name in ("supcon", "simclr"):  # trained encoders (the toy's: test_few_labels.py)
            assert method["knn_accuracy"] >= KNN_FLOOR, (name, method)
        assert method["train_seconds"] > 0, name
        assert method["mixed_precision"] == expected_precision(), (name, method)
        assert f"{100 * method['test_accuracy']:.2f} %" in stdout
    scores = {name: method["test_accuracy"] for name, method in results["methods"].items()}
    scores.pop("random_init")  # a control is never the candidate
    assert scores[results["best"]] == max(scores.values())  # best is an argmax (ties allowed)
    decision = results["decision"]
    assert decision["candidate"] == results["best"]
    assert decision["candidate_accuracy"] == max(scores.values())
    assert results["dataset"]["splits"] == {"train": 360, "validation": 40, "test": 100}
    assert decision["promoted"] is True and decision["champion_accuracy"] is None  # empty registry
    assert str(latest.resolve() / "report.html") in stdout.replace("\n", "")


def test_every_task_left_its_artifacts(local_run):
    runs, _ = local_run
    artifacts = (runs / "latest" / "artifacts").resolve()
    # the pipeline run's folder, alone: the durable checkpoint root of a local run is
    # runs/checkpoints/<key>, each step's folder cleared after success
    (run_dir,) = list(artifacts.iterdir())
    assert run_dir.name == (runs / "latest").resolve().name  # kfp.local's job: the run id
    assert not any(runs.glob("checkpoints/*/local/*"))
    assert {p.name for p in run_dir.iterdir() if p.is_dir()} == TASKS
    models = sorted(artifacts.glob("*/train-*/model")) + sorted(
        artifacts.glob("*/pretrain-encoder*/encoder_model")
    )
    # 10 classifiers (a baseline and 4 on encoders per fraction), 5 encoders
    assert len(models) == 15, models
    for model_dir in models:
        assert (model_dir / "COMPLETE").is_file() and (model_dir / "model.keras").is_file()
    evaluations = sorted(artifacts.glob("*/evaluate-classifier*/evaluation"))
    assert len(evaluations) == 10
    results = json.loads((runs / "latest" / "results.json").read_text())
    evaluated = {}
    for path in evaluations:
        result = json.loads(path.read_text())
        matrix = result["confusion_matrix"]
        total = sum(map(sum, matrix))
        assert total == 100 == result["num_examples"]
        correct = sum(matrix[i][i] for i in range(len(matrix)))
        assert result["accuracy"] == pytest.approx(correct / total)
        if result["config"]["train"]["labeled_fraction"] == 1.0:  # the table's
            evaluated[result["method"]] = result["accuracy"]
    assert evaluated == {
        name: method["test_accuracy"] for name, method in results["methods"].items()
    }


def test_report_contains_the_accuracy_table(local_run):
    runs, _ = local_run
    html = (runs / "latest" / "report.html").read_text()
    results = json.loads((runs / "latest" / "results.json").read_text())
    for name, method in results["methods"].items():
        assert name in html
        assert f"{100 * method['test_accuracy']:.2f}" in html
    assert "data:image/png;base64," in html
    assert "https://" not in html and "http://" not in html


def test_report_explains_mistakes_lists_suspects_and_checks_drift(local_run):
    from html.parser import HTMLParser

    runs, stdout = local_run
    latest = runs / "latest"
    results = json.loads((latest / "results.json").read_text())
    sections = {}

    class Sections(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.current = dict(attrs)["id"]
                sections[self.current] = 0
            elif tag == "img" and dict(attrs).get("class") == "thumb":
                sections[self.current] += 1

    Sections().feed((latest / "report.html").read_text())
    assert {"explanations", "suspect-labels", "drift"} <= set(sections)
    neighbours = results["neighbours"]
    assert neighbours["method"] == results["best"] and neighbours["reference"]["seen"] == 360
    mistakes, shown = neighbours["mistakes_shown"], min(neighbours["suspects"]["count"], 12)
    assert sections["explanations"] == mistakes * 6 and sections["suspect-labels"] == shown
    assert 0 <= neighbours["agreement"]["overall"] <= 1
    with open(latest / "suspect_labels.csv") as file:
        assert file.readline().startswith("id,source_path,label,label_name,suggested")
        assert sum(1 for _ in file) == neighbours["suspects"]["count"]
    drift = results["drift"]
    assert drift["decision"] == "train" and drift["policy"] == "always"
    assert drift["not_measured"] == "no champion yet in the registry"
    (version,) = (runs / "registry" / "versions").iterdir()  # the promoted champion keeps
    assert (version / "drift_reference.npz").is_file()  # the reference the next run needs
    assert "suspect labels:" in stdout


@pytest.fixture(scope="module")
def skipped_run(local_run, tiny_run, separable_npz, tmp_path_factory):
    """The same run again, scheduled with retrain_when=changed against the first run's
    champion (its own runs folder: `runs/latest` of the first stays)."""
    runs, _ = local_run
    again = tmp_path_factory.mktemp("again")
    flags = [*TINY_RUN_FLAGS, "--registry", str(runs / "registry"), "--retrain-when", "changed"]
    result = run_ok(f"npz:{separable_npz}", again, *flags, timeout=600, env=tiny_run.env)
    return runs, again, result.stdout


def test_a_scheduled_run_on_unchanged_data_and_code_stops_before_training(skipped_run):
    runs, again, stdout = skipped_run
    results = json.loads((again / "latest" / "results.json").read_text())
    assert results["skipped"] is True and results["decision"]["outcome"] == "skipped"
    drift = results["drift"]
    assert drift["decision"] == "skip" and drift["drift_found"] is False
    assert drift["champion"]["fingerprints"] == drift["fingerprints"]  # same data and code
    printed = " ".join(stdout.split())  # rich wraps long lines at the terminal width
    assert "skipped: the champion's code and configuration, the same training data" in printed
    (run_dir,) = list((again / "latest" / "artifacts").resolve().iterdir())
    assert {p.name for p in run_dir.iterdir() if p.is_dir()} == {"ingest-data", "check-drift"}
    recorded = [json.loads(p.read_text()) for p in (runs / "registry" / "decisions").iterdir()]
    assert [d["outcome"] for d in recorded].count("skipped") == 1
    assert [d["outcome"] for d in recorded].count("promoted") == 1  # the first run's


def test_bad_parameter_fails_fast_and_writes_nothing(tmp_path, capsys):
    from pipelines.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "--profile", "tiny", "--batch-size", "1", "--runs-dir", str(runs)]) == 2
    message = "error: batch_size must be 0 (profile's) or >= 2. Received: batch_size=1"
    assert message in capsys.readouterr().err
    assert not runs.exists()
    assert (
        main(["run", "--profile", "tiny", "--methods", "supcon,moco", "--runs-dir", str(runs)]) == 2
    )
    assert (
        "error: methods must be a non-empty subset of ['baseline', 'supcon', 'simclr', "
        "'npairs', 'random_init']. Received: ['supcon', 'moco']"
    ) in capsys.readouterr().err
    assert not runs.exists()


def test_training_steps_log_to_the_run_tensorboard_folder(local_run):
    runs, _ = local_run
    tensorboard = (runs / "latest" / "tensorboard").resolve()
    steps = {p.name for p in tensorboard.iterdir()}
    # tiny's classifiers are fitted heads (a solve, no Keras epochs): nothing to log; a
    # training that runs once per fraction is named by its fraction
    assert steps == {
        "train-baseline-100pct",
        "train-baseline-50pct",
        "pretrain-supcon-100pct",
        "pretrain-supcon-50pct",
        "pretrain-simclr",
        "pretrain-toy",
    }
    for step in steps:
        assert list((tensorboard / step / "train").glob("events.out.tfevents.*")), step


def test_the_training_tasks_ran_warm_and_nothing_of_the_server_is_left(local_run):
    """The run's task server (pipelines.task_server) forked the training and evaluation tasks
    (each log names its child), and it ended with the run, its children with it."""
    runs, _ = local_run
    logs = runs / "latest" / "logs"
    assert (logs / "task-server.log").is_file()
    for task in (
        "pretrain-supcon-100pct",
        "classifier-simclr-50pct",
        "train-baseline-100pct",
        "evaluate-baseline-50pct",
    ):
        text = (logs / f"{task}.log").read_text()
        (line,) = [x for x in text.splitlines() if "forked from the task server" in x]
        child = int(line.split("runs in process ")[1].split(",")[0])
        assert not Path(f"/proc/{child}").exists(), (task, child)
