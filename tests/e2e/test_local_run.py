"""The whole DAG through kfp.local (SubprocessRunner) on a tiny separable dataset, via the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_run(separable_npz, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "run",
        "--profile",
        "tiny",
        "--source",
        f"npz:{separable_npz}",
        "--methods",
        "baseline,supcon,simclr",
        "--epochs",
        "1",
        "--runs-dir",
        str(runs),
        "--registry",
        str(runs / "registry"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return runs, result.stdout


def test_run_prints_the_table_and_writes_results(local_run):
    runs, stdout = local_run
    latest = runs / "latest"
    assert latest.is_symlink()
    results = json.loads((latest / "results.json").read_text())
    assert set(results["methods"]) == {"baseline", "supcon", "simclr"}
    for name, method in results["methods"].items():
        assert 0.0 <= method["test_accuracy"] <= 1.0, name
        assert method["train_seconds"] > 0, name
        assert f"{100 * method['test_accuracy']:.2f} %" in stdout
    assert results["dataset"]["splits"] == {"train": 360, "validation": 40, "test": 100}
    assert results["decision"]["promoted"] is True  # empty registry: the best is promoted
    assert str(latest.resolve() / "report.html") in stdout.replace("\n", "")


def test_every_task_left_its_artifacts(local_run):
    runs, _ = local_run
    artifacts = (runs / "latest" / "artifacts").resolve()
    task_dirs = {p.name for p in next(artifacts.iterdir()).iterdir() if p.is_dir()}
    for task in (
        "ingest-data",
        "train-baseline",
        "pretrain-encoder",
        "pretrain-encoder-2",
        "train-classifier",
        "train-classifier-2",
        "evaluate-classifier",
        "evaluate-classifier-2",
        "evaluate-classifier-3",
        "compare-and-report",
    ):
        assert task in task_dirs, (task, sorted(task_dirs))
    for model_dir in artifacts.glob("*/train-*/model"):
        assert (model_dir / "COMPLETE").is_file() and (model_dir / "model.keras").is_file()
    evaluations = list(artifacts.glob("*/evaluate-classifier*/evaluation"))
    assert len(evaluations) == 3
    for path in evaluations:
        result = json.loads(path.read_text())
        assert sum(map(sum, result["confusion_matrix"])) == 100 == result["num_examples"]
        assert 0.0 <= result["accuracy"] <= 1.0


def test_report_contains_the_accuracy_table(local_run):
    runs, _ = local_run
    html = (runs / "latest" / "report.html").read_text()
    results = json.loads((runs / "latest" / "results.json").read_text())
    for name, method in results["methods"].items():
        assert name in html
        assert f"{100 * method['test_accuracy']:.2f}" in html
    assert "data:image/png;base64," in html
    assert "https://" not in html and "http://" not in html


def test_bad_parameter_fails_fast_and_writes_nothing(tmp_path):
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "run",
        "--profile",
        "tiny",
        "--batch-size",
        "1",
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "train.batch_size" in result.stderr and "1" in result.stderr
    assert not (tmp_path / "runs").exists()
    result = subprocess.run(
        command[:6] + ["--methods", "supcon,moco", "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "moco" in result.stderr
    assert not Path(tmp_path / "runs").exists()


def test_training_steps_log_to_the_run_tensorboard_folder(local_run):
    runs, _ = local_run
    tensorboard = (runs / "latest" / "tensorboard").resolve()
    steps = {p.name for p in tensorboard.iterdir()}
    assert steps == {
        "train-baseline",
        "pretrain-supcon",
        "pretrain-simclr",
        "classifier-supcon",
        "classifier-simclr",
    }
    for step in steps:
        assert list((tensorboard / step / "train").glob("events.out.tfevents.*")), step
