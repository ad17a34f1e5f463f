"""`contrastive.registry`: champion/challenger gate, on a local folder and on GCS (emulator)."""

import math

import pytest

from contrastive import storage
from contrastive.registry import (
    COMPLETE_MARKER,
    ConcurrentUpdateError,
    Decision,
    ModelRegistry,
    decide,
)


def _model_dir(tmp_path, name, payload=b"weights", complete=True):
    folder = tmp_path / name
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(payload)
    (folder / "metrics.json").write_text('{"test_accuracy": 0.9}')
    (folder / "assets" / "classes.txt").write_text("cat\ndog\n")
    if complete:
        (folder / COMPLETE_MARKER).write_text("ok\n")
    return str(folder)


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote", "reason"),
    [
        (0.80, None, 0.0, True, "no champion yet; candidate scores 0.8"),
        (0.91, 0.90, 0.0, True, "promote: candidate 0.91 > champion 0.9 + margin 0"),
        (0.90, 0.90, 0.0, False, "keep champion: candidate 0.9 <= champion 0.9 + margin 0"),
        (0.905, 0.90, 0.01, False, "keep champion: candidate 0.905 <= champion 0.9 + margin 0.01"),
        (0.92, 0.90, 0.01, True, "promote: candidate 0.92 > champion 0.9 + margin 0.01"),
        (0.50, 0.90, 0.0, False, "keep champion"),
    ],
)
def test_champion_decide(candidate, champion, margin, promote, reason):
    decision = decide(candidate, champion, margin)
    assert decision == (promote, decision.reason)
    assert decision.promote is promote
    assert decision.reason.startswith(reason)


def test_champion_decide_lower_is_better_and_bad_values():
    assert decide(0.2, 0.3, 0.05, higher_is_better=False).promote
    assert not decide(0.28, 0.3, 0.05, higher_is_better=False).promote
    with pytest.raises(ValueError, match="candidate_score must be a finite number"):
        decide(math.nan, 0.5)
    with pytest.raises(ValueError, match="champion_score must be a finite number"):
        decide(0.5, math.inf)
    with pytest.raises(ValueError, match="margin must be >= 0. Received: margin=-0.1"):
        decide(0.5, 0.4, -0.1)


def test_champion_empty_registry(root):
    registry = ModelRegistry(root)
    assert registry.champion() is None
    assert registry.champion_model_dir() is None


def test_promote_copies_every_file_and_switches_champion(root, tmp_path):
    registry = ModelRegistry(root)
    source = _model_dir(tmp_path, "candidate")

    record = registry.promote("run-1", source, 0.91, extra={"pipeline": "nightly"})

    champion = registry.champion()
    assert champion == record
    assert champion["generation"] == 1
    assert champion["version"] == champion["run_id"] == "run-1"
    assert champion["model_uri"] == storage.join(root, "versions", "run-1")
    assert champion["metric"] == "test_accuracy" and champion["score"] == 0.91
    assert champion["promoted_at"].endswith("Z")
    assert champion["previous_version"] is None
    assert champion["extra"] == {"pipeline": "nightly"}
    assert registry.champion_model_dir() == champion["model_uri"]
    version = champion["model_uri"]
    assert storage.list_files(version) == [
        COMPLETE_MARKER,
        "assets/classes.txt",
        "metrics.json",
        "model.keras",
    ]
    assert storage.read_bytes(storage.join(version, "model.keras")) == b"weights"

    second = registry.promote("run-2", _model_dir(tmp_path, "better", b"v2"), 0.95)
    assert second["generation"] == 2 and second["previous_version"] == "run-1"
    assert ModelRegistry(root).champion()["run_id"] == "run-2"
    # The previous version stays, so a rollback is a pointer switch.
    assert storage.read_bytes(storage.join(root, "versions", "run-1", "model.keras")) == b"weights"


def test_promote_writes_complete_marker_last(root, tmp_path, monkeypatch):
    written = []
    real_copy = storage.copy_file
    monkeypatch.setattr(
        storage, "copy_file", lambda s, d, **kw: (written.append(d), real_copy(s, d, **kw))
    )

    ModelRegistry(root).promote("run-1", _model_dir(tmp_path, "candidate"), 0.9)

    assert len(written) == 4
    assert written[-1].endswith(f"versions{'/' if root.startswith('gs://') else '/'}run-1/COMPLETE")


def test_promote_crash_between_version_and_pointer_keeps_old_champion(root, tmp_path, monkeypatch):
    registry = ModelRegistry(root)
    registry.promote("run-1", _model_dir(tmp_path, "first"), 0.90)

    def crash(self, record, token):
        raise RuntimeError("preempted")

    monkeypatch.setattr(ModelRegistry, "_switch_pointer", crash)
    with pytest.raises(RuntimeError, match="preempted"):
        registry.promote("run-2", _model_dir(tmp_path, "second", b"v2"), 0.95)

    assert registry.champion()["run_id"] == "run-1"
    assert registry.champion_model_dir() == storage.join(root, "versions", "run-1")
    # The copied version is complete but unreferenced; a retry promotes it.
    assert storage.exists(storage.join(root, "versions", "run-2", COMPLETE_MARKER))
    monkeypatch.undo()
    assert registry.promote("run-2", _model_dir(tmp_path, "second"), 0.95)["generation"] == 2


def test_promote_refuses_stale_expected_generation(root, tmp_path):
    registry = ModelRegistry(root)
    registry.promote("run-1", _model_dir(tmp_path, "first"), 0.90, expected_generation=0)

    with pytest.raises(ConcurrentUpdateError, match="champion is at generation 1.*generation 0"):
        registry.promote("run-2", _model_dir(tmp_path, "second"), 0.95, expected_generation=0)

    assert registry.champion()["run_id"] == "run-1"
    assert not storage.exists(storage.join(root, "versions", "run-2"))
    assert registry.promote("run-2", _model_dir(tmp_path, "second"), 0.95, expected_generation=1)


def test_promote_concurrent_promotion_loses_compare_and_swap(root, tmp_path, monkeypatch):
    """Two pipelines decide against the same champion; the one that switches second loses."""
    registry = ModelRegistry(root)
    registry.promote("run-0", _model_dir(tmp_path, "zero"), 0.80)
    rival_source = _model_dir(tmp_path, "rival", b"rival")
    real_copy_tree = storage.copy_tree
    calls = []

    def copy_then_rival_promotes(source, destination, **kwargs):
        copied = real_copy_tree(source, destination, **kwargs)
        if not calls:
            calls.append(destination)
            ModelRegistry(root).promote("run-rival", rival_source, 0.93)
        return copied

    monkeypatch.setattr(storage, "copy_tree", copy_then_rival_promotes)
    with pytest.raises(ConcurrentUpdateError, match="champion changed while promoting run-1"):
        registry.promote("run-1", _model_dir(tmp_path, "mine"), 0.92, expected_generation=1)

    champion = registry.champion()
    assert champion["run_id"] == "run-rival" and champion["generation"] == 2


def test_promote_refuses_incomplete_or_missing_model(root, tmp_path):
    registry = ModelRegistry(root)
    with pytest.raises(FileNotFoundError, match="no COMPLETE marker"):
        registry.promote("run-1", _model_dir(tmp_path, "half", complete=False), 0.9)
    with pytest.raises(FileNotFoundError, match="empty or missing"):
        registry.promote("run-1", str(tmp_path / "nothing"), 0.9)
    assert registry.champion() is None
    assert not storage.exists(storage.join(root, "versions"))

    record = registry.promote(
        "run-1", _model_dir(tmp_path, "half", complete=False), 0.9, require_complete=False
    )
    assert storage.exists(storage.join(record["model_uri"], COMPLETE_MARKER))


@pytest.mark.parametrize("run_id", ["../escape", "", "a/b", ".hidden", "x" * 129])
def test_promote_refuses_unsafe_run_id(run_id, tmp_path):
    with pytest.raises(ValueError, match="run_id must be"):
        ModelRegistry(tmp_path / "root").promote(run_id, _model_dir(tmp_path, "m"), 0.9)


def test_promote_refuses_non_finite_score(tmp_path):
    with pytest.raises(ValueError, match="score must be a finite number"):
        ModelRegistry(tmp_path / "root").promote("run-1", _model_dir(tmp_path, "m"), math.nan)


def test_champion_record_decision(root):
    registry = ModelRegistry(root)
    decision = decide(0.85, 0.9, 0.01)

    uri = registry.record_decision("run-7", decision)
    registry.record_decision(
        "run-8", {"promote": True, "reason": "first", "candidate_score": 0.9, "generation": 0}
    )

    assert uri == storage.join(root, "decisions", "run-7.json")
    recorded = registry.decision("run-7")
    assert recorded["run_id"] == "run-7"
    assert recorded["promote"] is False
    assert recorded["reason"] == decision.reason
    assert recorded["decided_at"].endswith("Z")
    assert registry.decision("run-8")["candidate_score"] == 0.9
    assert registry.decision("run-9") is None
    with pytest.raises(ValueError, match="needs 'promote' and 'reason'"):
        registry.record_decision("run-9", {"promote": True})
    assert isinstance(decision, Decision)


def test_champion_gcs_pointer_switch_is_conditional(gcs, tmp_path):
    registry = ModelRegistry(gcs.prefix)
    registry.promote("run-1", _model_dir(tmp_path, "first"), 0.9)
    _, generation = storage.read_with_generation(registry.champion_uri)
    registry.promote("run-2", _model_dir(tmp_path, "second"), 0.95)

    pointer = registry.champion_uri[len(f"gs://{gcs.bucket}/") :]
    assert [g for name, g in gcs.preconditions if name == pointer] == [0, generation]


def test_champion_registry_on_gcs_copies_a_gcs_model_server_side(gcs, tmp_path):
    source = gcs.prefix + "/runs/run-1/model"
    storage.copy_tree(_model_dir(tmp_path, "m"), source, last=COMPLETE_MARKER)

    record = ModelRegistry(gcs.prefix + "/registry/").promote("run-1", source, 0.9)

    assert record["model_uri"] == gcs.prefix + "/registry/versions/run-1"
    assert storage.list_files(record["model_uri"]) == storage.list_files(source)
