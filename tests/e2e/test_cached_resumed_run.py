"""`contrastive run` cached and resumed: a run killed with SIGKILL during pretraining and
started again reuses the finished tasks and resumes the training from its last epoch
checkpoint; a rerun of the same parameters reuses every task. The one end-to-end kill of the
suite; what `--no-cache` passes to kfp.local (no cache, a checkpoint folder of its own) is
checked without a run in tests/pipeline/test_local_view.py, and a resume's weights in
tests/unit/test_training.py."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.cli_run import run_command, run_ok

pytestmark = pytest.mark.slow

EPOCHS = 4
KILL_AFTER_EPOCH = 2
# The tasks of `--methods supcon` as the view names them, in the order they run.
TASKS = [
    "ingest",
    "check-drift",
    "pretrain-supcon",
    "classifier-supcon",
    "evaluate-supcon",
    "explain-neighbours",
    "compare-and-report",
]
# They read the registry, which changes between runs: never served from the cache.
NEVER_CACHED = ("check-drift", "compare-and-report")
RUN_TIMEOUT = 900  # seconds, one run
# A plain line of the view: `   0:12 pretrain-supcon    epoch 1/4  loss ...`.
LINE = re.compile(r"^\s*\d+:\d\d(?::\d\d)? (\S+)\s+(\S+)")


def _flags(*extra):
    return ("--methods", "supcon", "--epochs", str(EPOCHS), "--no-estimate", *extra)


def _command(source, runs, *extra):
    return run_command(f"npz:{source}", runs, *_flags(*extra))


def _run(source, runs, *extra):
    result = run_ok(f"npz:{source}", runs, *_flags(*extra), timeout=RUN_TIMEOUT)
    results = json.loads((runs / "latest" / "results.json").read_text())
    return result.stdout, results


def _states(stdout: str) -> dict[str, list[str]]:
    """{task: [first word of each of its lines]} from the view's plain lines."""
    states: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if (match := LINE.match(line)) and match.group(1) in TASKS:
            states.setdefault(match.group(1), []).append(match.group(2))
    return states


def _kill_during_pretraining(source, runs) -> Path:
    """Starts a run, SIGKILLs its process group once pretraining has finished
    `KILL_AFTER_EPOCH` epochs; returns the killed run's folder."""
    with open(runs.parent / "killed.out", "w") as out:
        process = subprocess.Popen(
            _command(source, runs), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        progress = None
        try:
            while time.monotonic() < deadline and process.poll() is None:
                found = list(runs.glob("*/progress/pretrain-supcon.jsonl"))
                if found and len(found[0].read_text().splitlines()) >= KILL_AFTER_EPOCH:
                    progress = found[0]
                    break
                time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    assert progress is not None, (runs.parent / "killed.out").read_text()[-4000:]
    return progress.parent.parent


@pytest.fixture(scope="module")
def runs(separable_npz, tmp_path_factory):
    runs = tmp_path_factory.mktemp("cached") / "runs"
    killed = _kill_during_pretraining(separable_npz, runs)
    resumed = _run(separable_npz, runs)
    resumed_dir = (runs / "latest").resolve()
    cached = _run(separable_npz, runs)
    return {
        "dir": runs,
        "killed": killed,
        "resumed": resumed,
        "resumed_dir": resumed_dir,
        "cached": cached,
    }


def test_killed_run_resumes_from_its_last_epoch(runs):
    stdout, _ = runs["resumed"]
    states = _states(stdout)
    assert states["ingest"] == ["cached"]  # finished before the kill
    assert states["pretrain-supcon"][0] == "running"
    log = (runs["resumed_dir"] / "logs" / "pretrain-supcon.log").read_text()
    resumed = re.search(r"resumed from epoch (\d+) of (\d+)", log)
    assert resumed is not None, log[-3000:]
    epoch = int(resumed.group(1))
    # the durable copy of epoch k is made as epoch k + 1 begins: the kill after epoch 2's
    # progress line finds epoch 1 or 2 there
    assert KILL_AFTER_EPOCH - 1 <= epoch < EPOCHS and int(resumed.group(2)) == EPOCHS
    # only the epochs left ran, numbered on from the checkpoint
    progress = runs["resumed_dir"] / "progress" / "pretrain-supcon.jsonl"
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(epoch + 1, EPOCHS + 1))
    # (the last epoch's figures come on the `done` line)
    assert states["pretrain-supcon"][1:] == ["epoch"] * (EPOCHS - epoch - 1) + ["done"]
    # the resumed step's model holds every epoch's history
    (encoder,) = runs["resumed_dir"].glob("artifacts/*/pretrain-encoder/encoder_model")
    history = json.loads((encoder / "history.json").read_text())["pretrain"]
    assert len(history["loss"]) == EPOCHS


def test_resumed_run_keeps_the_epochs_of_the_killed_run(runs):
    """The epochs done before the kill come back from the checkpoint as the killed run
    logged them; only the others are trained again."""
    log = (runs["resumed_dir"] / "logs" / "pretrain-supcon.log").read_text()
    epoch = int(re.search(r"resumed from epoch (\d+) of", log).group(1))
    lines = (runs["killed"] / "progress" / "pretrain-supcon.jsonl").read_text().splitlines()
    killed = [json.loads(line)["logs"]["loss"] for line in lines[:epoch]]
    (encoder,) = runs["resumed_dir"].glob("artifacts/*/pretrain-encoder/encoder_model")
    history = json.loads((encoder / "history.json").read_text())["pretrain"]
    assert len(killed) == epoch and history["loss"][:epoch] == killed


def test_cached_rerun_reuses_every_task(runs):
    stdout, results = runs["cached"]
    states = _states(stdout)
    for task in TASKS:  # the tasks inside the retrain condition too
        expected = ["running", "done"] if task in NEVER_CACHED else ["cached"]
        assert states[task] == expected, (task, stdout)
    assert "same pipeline and parameters as run" in stdout
    assert results["methods"] == runs["resumed"][1]["methods"]
    # its TensorBoard shows the run that trained each step (make tensorboard RUN=...)
    link = runs["dir"] / results["run_id"] / "tensorboard" / "pretrain-supcon"
    assert link.is_symlink()
    assert link.resolve() == runs["resumed_dir"] / "tensorboard" / "pretrain-supcon"
    assert list(link.rglob("events.out.tfevents.*"))


def test_every_task_has_its_log(runs):
    logs = runs["resumed_dir"] / "logs"
    assert {p.stem for p in logs.glob("*.log")} >= set(TASKS)
    assert "Executing task" in (logs / "pretrain-supcon.log").read_text()
