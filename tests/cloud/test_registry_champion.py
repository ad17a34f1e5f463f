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
        (0.50, 0.90, 0.0, False, "keep champion: candidate 0.5 <= champion 0.9 + margin 0"),
        # A candidate a hair above the bound wins; one exactly on it does not (ties keep).
        (0.9 + 1e-9, 0.90, 0.0, True, "promote: candidate 0.9 > champion 0.9 + margin 0"),
        (0.0, 0.0, 0.0, False, "keep champion: candidate 0 <= champion 0 + margin 0"),
        (0.123456789, None, 0.5, True, "no champion yet; candidate scores 0.123457"),
    ],
)
def test_champion_decide(candidate, champion, margin, promote, reason):
    decision = decide(candidate, champion, margin)
    assert isinstance(decision, Decision)
    assert decision == (promote, reason)
    promoted, said = decision  # unpacks as the gate reads it
    assert promoted is promote and said == reason


def test_champion_decide_lower_is_better_and_bad_values():
    assert decide(0.2, 0.3, 0.05, higher_is_better=False) == (
        True,
        "promote: candidate 0.2 < champion 0.3 - margin 0.05",
    )
    assert decide(0.28, 0.3, 0.05, higher_is_better=False) == (
        False,
        "keep champion: candidate 0.28 >= champion 0.3 - margin 0.05",
    )
    assert decide(0.25, 0.3, 0.05, higher_is_better=False).promote is False  # on the bound
    assert decide(0.9, None, higher_is_better=False).promote is True
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

    version = storage.join(root, "versions", "run-1")
    assert written[-1] == storage.join(version, COMPLETE_MARKER)
    assert sorted(written[:-1]) == [
        storage.join(version, name)
        for name in ("assets/classes.txt", "metrics.json", "model.keras")
    ]


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


# ---------------------------------------------------------------- the gate a pipeline runs


@pytest.fixture
def trained(tmp_path):
    """`trained(name)`: a complete classifier model directory, as a training step leaves it."""
    import keras
    import numpy as np

    from contrastive.config import load_config
    from contrastive.modeldir import save_model_dir

    def make(name: str) -> str:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
        model.predict(np.zeros((1, 8, 8, 1), np.uint8), verbose=0)
        save_model_dir(
            tmp_path / name,
            model,
            config=load_config("tiny"),
            history={},
            metrics={},
            info={"kind": "classifier", "num_classes": 3, "image_shape": [8, 8, 1]},
        )
        return str(tmp_path / name)

    return make


def test_champion_gate_reevaluates_the_champion_and_applies_the_margin(tmp_path, trained):
    """Run 1 becomes champion; run 2 beats the champion's re-evaluated 0.80 but not by the
    margin; run 3 does. Only the champion is evaluated, once per later run."""
    from contrastive.registry import gate_champion

    root = str(tmp_path / "registry")
    evaluated = []

    def evaluate(model_dir):
        evaluated.append(model_dir)
        return 0.80

    gate = dict(candidate="supcon", margin=0.05, evaluate=evaluate)
    first = gate_champion(
        root, candidate_accuracy=0.7, candidate_dir=trained("a"), run_id="run-1", **gate
    )
    kept = gate_champion(
        root, candidate_accuracy=0.84, candidate_dir=trained("b"), run_id="run-2", **gate
    )
    third = gate_champion(
        root, candidate_accuracy=0.86, candidate_dir=trained("c"), run_id="run-3", **gate
    )

    assert first == {
        "promoted": True,
        "promote": True,
        "candidate": "supcon",
        "candidate_accuracy": 0.7,
        "champion_accuracy": None,
        "margin": 0.05,
        "reason": "no champion yet; candidate scores 0.7",
        "outcome": "promoted",
        "champion_run_id": None,
        "inference_service": storage.join(root, "inferenceservice.yaml"),
    }
    assert kept == {
        "promoted": False,
        "promote": False,
        "candidate": "supcon",
        "candidate_accuracy": 0.84,
        "champion_accuracy": 0.80,
        "margin": 0.05,
        "reason": "keep champion: candidate 0.84 <= champion 0.8 + margin 0.05",
        "outcome": "kept",
        "champion_run_id": "run-1",
    }
    assert third["promoted"] is True and third["champion_run_id"] == "run-1"
    assert third["reason"] == "promote: candidate 0.86 > champion 0.8 + margin 0.05"
    versions = storage.join(root, "versions")
    assert evaluated == [storage.join(versions, "run-1"), storage.join(versions, "run-1")]

    registry = ModelRegistry(root)
    champion = registry.champion()
    assert (champion["run_id"], champion["generation"], champion["previous_version"]) == (
        "run-3",
        2,
        "run-1",
    )
    assert champion["score"] == 0.86 and champion["extra"] == {"method": "supcon"}
    assert not storage.exists(storage.join(versions, "run-2"))
    assert storage.exists(storage.join(versions, "run-3", COMPLETE_MARKER))
    for run_id, decision in (("run-1", first), ("run-2", kept), ("run-3", third)):
        recorded = registry.decision(run_id)
        assert recorded.pop("decided_at").endswith("Z")
        assert recorded == {"run_id": run_id, **decision}


def test_champion_gate_refuses_when_the_champion_changes_during_its_evaluation(tmp_path, trained):
    """The decision was made against generation 1; a rival promoted meanwhile wins (here during
    the retry against the new champion too: the race is lost and recorded, nothing promoted)."""
    from contrastive.registry import gate_champion

    root = str(tmp_path / "registry")
    ModelRegistry(root).promote("run-1", _model_dir(tmp_path, "first"), 0.5)

    def evaluate_while_a_rival_promotes(model_dir):
        ModelRegistry(root).promote("rival", _model_dir(tmp_path, "rival", b"rival"), 0.99)
        return 0.5

    decision = gate_champion(
        root,
        "supcon",
        0.9,
        trained("candidate"),
        run_id="run-2",
        margin=0.0,
        evaluate=evaluate_while_a_rival_promotes,
    )
    assert (decision["outcome"], decision["promoted"]) == ("lost_race", False)
    assert "champion is at generation 3" in decision["reason"]

    registry = ModelRegistry(root)
    assert registry.decision("run-2")["outcome"] == "lost_race"
    assert registry.champion()["run_id"] == "rival"
    assert not storage.exists(registry.version_dir("run-2"))


def test_champion_gate_evaluates_a_gcs_champion_from_a_local_copy(gcs, trained):
    """`evaluate` reads local folders: a champion in GCS is copied down first, then removed."""
    import os

    from contrastive.registry import gate_champion

    root = gcs.prefix + "/registry"
    seen = []

    def evaluate(model_dir):
        seen.append((model_dir, sorted(storage.list_files(model_dir))))
        return 0.5

    gate = dict(candidate="supcon", margin=0.0, evaluate=evaluate)
    gate_champion(root, candidate_accuracy=0.6, candidate_dir=trained("a"), run_id="run-1", **gate)
    decision = gate_champion(
        root, candidate_accuracy=0.7, candidate_dir=trained("b"), run_id="run-2", **gate
    )

    ((local, files),) = seen
    assert not storage.is_gcs(local)
    assert files == storage.list_files(storage.join(root, "versions", "run-1"))
    assert "model.keras" in files and COMPLETE_MARKER in files
    assert not os.path.exists(local)  # the copy is a temporary folder
    assert decision["champion_accuracy"] == 0.5 and decision["promoted"] is True


def test_champion_gate_leaves_training_checkpoints_behind(tmp_path, trained):
    from contrastive.registry import gate_champion

    candidate = trained("a")
    (tmp_path / "a" / "checkpoints").mkdir()
    (tmp_path / "a" / "checkpoints" / "epoch-1.weights.h5").write_bytes(b"w")
    root = str(tmp_path / "registry")

    gate_champion(
        root, "supcon", 0.9, candidate, run_id="run-1", margin=0.0, evaluate=lambda _: 0.0
    )

    promoted = storage.list_files(storage.join(root, "versions", "run-1"))
    assert "model.keras" in promoted
    assert [name for name in promoted if name.startswith("checkpoints")] == []
