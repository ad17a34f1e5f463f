"""Two writers, one output: of two ingests (or copies) into one dataset folder exactly one
commits, and the other fails naming it. Real processes; the first is held at a chosen point
by a file the test creates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contrastive import data
from contrastive.data import DataError
from contrastive.lease import OutputBusyError

SRC = Path(__file__).resolve().parents[2] / "src"

# `hold(module, name, go)`: the function `module.name` prints "held", then waits for the file
# `go` (at most 120 s) before it runs.
_HOLD = """
import sys, time
from pathlib import Path
def hold(module, name, go):
    original = getattr(module, name)
    def held(*args, **kwargs):
        print("held", flush=True)
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return original(*args, **kwargs)
    setattr(module, name, held)
"""

# Runs an ingest that stops at `point` ("source": while opening its source, before it claims
# the output; "writing": while writing its shards, holding the output) until `go` exists.
_HELD_INGEST = (
    _HOLD
    + """
from contrastive.data import ingestion
source, output, point, go = sys.argv[1:5]
hold(ingestion, {"source": "open_source", "writing": "_write_examples"}[point], go)
try:
    manifest = ingestion.ingest(source, output, progress=False)
except Exception as error:
    print(f"error: {type(error).__name__}: {error}", flush=True)
    sys.exit(2)
print("committed", manifest["writer"]["pid"], flush=True)
"""
)


def _npz(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, size=(40, 6, 5, 1), dtype=np.uint8)
    y = np.arange(40) % 2
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    return f"npz:{path}"


def _held_ingest(source: str, output: Path, point: str, go: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _HELD_INGEST, source, str(output), point, str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert process.stdout.readline().strip() == "held"
    return process


def _finish(process: subprocess.Popen, go: Path) -> tuple[int, str]:
    go.touch()
    out, _ = process.communicate(timeout=120)
    return process.returncode, out.strip()


@pytest.mark.slow  # the first ingest runs in a child process
def test_a_second_ingest_fails_naming_the_one_writing_and_the_first_commits(tmp_path):
    first_source, second_source = _npz(tmp_path / "a.npz", 1), _npz(tmp_path / "b.npz", 2)
    out, go = tmp_path / "out", tmp_path / "go"
    first = _held_ingest(first_source, out, "writing", go)
    try:
        with pytest.raises(OutputBusyError) as raised:
            data.ingest(second_source, str(out), progress=False)
        assert str(raised.value).startswith(
            f"{out} is being written by ingest (pid {first.pid} on "
        )
    finally:
        code, printed = _finish(first, go)
    assert (code, printed) == (0, f"committed {first.pid}")
    manifest = data.read_manifest(str(out))
    assert manifest["source"] == first_source and manifest["writer"]["pid"] == first.pid
    assert not (out / ".writer.json").exists()


@pytest.mark.slow  # the other ingest runs in a child process
def test_an_ingest_that_read_its_source_while_another_committed_fails_naming_the_winner(
    tmp_path,
):
    """The fault as reported: the first ingest is slow reading its source, a second commits
    meanwhile; the first must not then commit over it."""
    first_source, second_source = _npz(tmp_path / "a.npz", 1), _npz(tmp_path / "b.npz", 2)
    out, go = tmp_path / "out", tmp_path / "go"
    first = _held_ingest(first_source, out, "source", go)
    try:
        winner = data.ingest(second_source, str(out), progress=False)
    finally:
        code, printed = _finish(first, go)
    assert code == 2
    assert printed.startswith(
        f"error: DataError: {out} already holds a committed dataset (manifest.json, committed "
        f"{winner['created_at']} by ingest (pid {os.getpid()} on "
    )
    assert data.read_manifest(str(out)) == winner


def test_a_commit_fails_naming_the_winner_when_the_manifest_changed_since_the_claim(
    tmp_path, monkeypatch
):
    """Compare-and-swap on the manifest: even a writer whose lease was broken (it stalled
    past `lease.STALE_SECONDS`) cannot commit over a dataset committed meanwhile."""
    from contrastive.data import ingestion

    first_source, second_source = _npz(tmp_path / "a.npz", 1), _npz(tmp_path / "b.npz", 2)
    out = tmp_path / "out"
    winner = {}
    write_examples = ingestion._write_examples

    def meanwhile(*args, **kwargs):  # another writer commits while this one writes
        written = write_examples(*args, **kwargs)
        monkeypatch.setattr(ingestion, "_write_examples", write_examples)
        lease = out / ".writer.json"
        held = lease.read_bytes()
        lease.unlink()  # as if taken over when stale
        winner.update(data.ingest(second_source, str(out), progress=False))
        lease.write_bytes(held)
        return written

    monkeypatch.setattr(ingestion, "_write_examples", meanwhile)
    with pytest.raises(DataError) as raised:
        data.ingest(first_source, str(out), progress=False)
    assert str(raised.value) == (
        f"{out}: its dataset was committed {winner['created_at']} by ingest (pid {os.getpid()} "
        f"on {winner['writer']['host']}, started {winner['writer']['started_at']}) while this "
        "writer was writing; this one committed nothing (rerun it with --overwrite to replace "
        "that dataset)"
    )
    assert data.read_manifest(str(out)) == winner
    x, _ = data.load_arrays(str(out), "train")  # the winner's shards are intact
    assert len(x) == winner["splits"]["train"]["num_examples"]


def test_the_manifest_is_written_by_compare_and_swap(tmp_path, monkeypatch):
    """A manifest committed by another writer in the last moment before this one's (after
    its checks) is not replaced: the write itself is conditional on the generation."""
    from contrastive.data import commit

    out = tmp_path / "out"
    rename = commit.storage.rename

    def last_move(source, destination):  # the index moves last, just before the manifest
        rename(source, destination)
        if destination.endswith(".parquet"):
            (out / "manifest.json").write_text(json.dumps({"created_at": "T1", "writer": {}}))

    monkeypatch.setattr(commit.storage, "rename", last_move)
    with pytest.raises(DataError, match=f"^{out}: its dataset was committed T1 while this"):
        data.ingest(_npz(tmp_path / "a.npz", 1), str(out), progress=False)
    assert json.loads((out / "manifest.json").read_text())["created_at"] == "T1"


def test_copying_an_ingested_dataset_commits_like_an_ingest(tmp_path):
    source = _npz(tmp_path / "a.npz", 1)
    dataset, copy = tmp_path / "ds", tmp_path / "copy"
    data.ingest(source, str(dataset), progress=False)
    data.copy_ingested(str(dataset), str(copy))
    with pytest.raises(DataError, match="already holds a committed dataset"):
        data.copy_ingested(str(dataset), str(copy))  # not silently over the first copy
    replaced = data.copy_ingested(str(dataset), str(copy), overwrite=True)
    on_disk = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    assert on_disk == sorted(
        [replaced["index"], "manifest.json"]
        + [s["path"] for e in replaced["splits"].values() for s in e["shards"]]
    )
    for overlapping in (dataset, dataset / "inner"):
        with pytest.raises(DataError, match="overlap; choose an output outside"):
            data.copy_ingested(str(dataset), str(overlapping), overwrite=True)
    assert json.loads((dataset / "manifest.json").read_text())["writer"]["what"] == "ingest"
    assert data.load_arrays(str(copy), "train")[0].shape[0] == 36


# Runs `contrastive pretrain`, held once it holds its output (before training) until `go`.
_HELD_PRETRAIN = (
    _HOLD
    + """
from contrastive.tasks import training
data, output, go = sys.argv[1:4]
hold(training, "_train_claimed", go)
from pipelines.cli import main
sys.exit(main(["pretrain", "--data", data, "--output", output, "--profile", "tiny"]))
"""
)


@pytest.mark.slow
def test_of_two_trainings_into_one_model_directory_one_trains_the_other_names_it(
    tiny_dataset, tmp_path
):
    from contrastive import tasks
    from contrastive.config import resolve_config

    output, go = tmp_path / "encoder", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", _HELD_PRETRAIN, tiny_dataset, str(output), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{SRC.parent}"},
    )
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError) as raised:
            tasks.run_pretrain(tiny_dataset, output, resolve_config("tiny"))
        assert str(raised.value).startswith(
            f"{output} is being written by pretrain supcon (pid {first.pid} on "
        )
    finally:
        go.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    info = json.loads((output / "info.json").read_text())
    assert info["writer"]["pid"] == first.pid and (output / "COMPLETE").is_file()


@pytest.mark.slow
def test_a_step_does_not_commit_over_a_model_completed_while_it_trained(
    tiny_dataset, tmp_path, monkeypatch
):
    from contrastive import reuse, tasks, training
    from contrastive.config import resolve_config

    output = tmp_path / "encoder"
    pretrain = training.pretrain

    def pretrain_while_another_completes(*args, **kwargs):
        result = pretrain(*args, **kwargs)
        (output / "info.json").write_text(json.dumps({"writer": {"what": "the other"}}))
        (output / "COMPLETE").write_text("T1")
        return result

    monkeypatch.setattr(training, "pretrain", pretrain_while_another_completes)
    with pytest.raises(reuse.OutputConflictError) as raised:
        tasks.run_pretrain(tiny_dataset, output, resolve_config("tiny"))
    assert str(raised.value).startswith(
        f"{output} was completed by the other (pid ? on ?, started ?) while this step trained; "
        "this one committed nothing"
    )
    assert (output / "COMPLETE").read_text() == "T1" and not (output / "model.keras").exists()
