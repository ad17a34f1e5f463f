"""The champion gate records every outcome with its reason: promoted, kept, lost the race
(decided once more against the new champion), incompatible champion."""

from contrastive.modeldir import DataMismatchError
from contrastive.registry import ModelRegistry, gate_champion


def _gate(registry, candidate, evaluate, accuracy=0.9):
    return gate_champion(
        str(registry),
        "supcon",
        accuracy,
        candidate,
        run_id="run-2",
        margin=0.0,
        evaluate=evaluate,
    )


def test_lost_race_is_decided_again_against_the_new_champion(tmp_path, candidate):
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("run-0", candidate, 0.5)
    scores = []

    def evaluate(model_dir):  # another run promotes while this one evaluates the champion
        if not scores:
            registry.promote("rival", candidate, 0.95)
        scores.append(0.5 if len(scores) == 0 else 0.95)
        return scores[-1]

    decision = _gate(tmp_path / "registry", candidate, evaluate)

    assert scores == [0.5, 0.95]  # the champion was evaluated again: the rival
    assert (decision["outcome"], decision["promoted"], decision["champion_run_id"]) == (
        "kept",
        False,
        "rival",
    )
    assert decision["reason"] == "keep champion: candidate 0.9 <= champion 0.95 + margin 0"
    assert registry.decision("run-2")["outcome"] == "kept"
    assert registry.champion()["run_id"] == "rival"


def test_two_lost_races_record_the_loss_and_promote_nothing(tmp_path, candidate):
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("run-0", candidate, 0.5)
    rivals = []

    def evaluate(model_dir):
        rivals.append(f"rival-{len(rivals) + 1}")
        registry.promote(rivals[-1], candidate, 0.5)
        return 0.5

    decision = _gate(tmp_path / "registry", candidate, evaluate)

    assert (decision["outcome"], decision["promoted"]) == ("lost_race", False)
    assert decision["reason"] == (
        "not promoted: another run promoted while this one was gating, twice; last: champion "
        "is at generation 3, the decision was made against generation 2; evaluate again"
    )
    recorded = registry.decision("run-2")
    assert (recorded["outcome"], recorded["reason"]) == ("lost_race", decision["reason"])
    assert registry.champion()["run_id"] == "rival-2"


def test_incompatible_champion_is_recorded_not_raised(tmp_path, candidate):
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("run-0", candidate, 0.5)
    mismatch = "class count mismatch: model m predicts 3 classes, the dataset has 10 (...)"

    def evaluate(model_dir):
        raise DataMismatchError(mismatch)

    decision = _gate(tmp_path / "registry", candidate, evaluate)

    assert (decision["outcome"], decision["promoted"]) == ("incompatible_champion", False)
    assert decision["reason"] == (
        f"keep champion: it cannot be compared on this dataset ({mismatch}); nothing "
        "promoted, use another registry for this dataset"
    )
    assert registry.decision("run-2")["outcome"] == "incompatible_champion"
    assert registry.champion()["run_id"] == "run-0"


def test_promoted_and_kept_carry_their_outcome(tmp_path, candidate):
    first = _gate(tmp_path / "registry", candidate, lambda _: 0.0, accuracy=0.9)
    assert (first["outcome"], first["promoted"]) == ("promoted", True)
    assert first["reason"] == "no champion yet; candidate scores 0.9"
    again = gate_champion(
        str(tmp_path / "registry"),
        "supcon",
        0.8,
        candidate,
        run_id="run-3",
        margin=0.0,
        evaluate=lambda _: 0.9,
    )
    assert (again["outcome"], again["promoted"]) == ("kept", False)
    assert ModelRegistry(tmp_path / "registry").decision("run-3")["reason"] == again["reason"]


def test_a_lost_race_won_on_the_second_decision_promotes_and_says_so(tmp_path, candidate):
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("run-0", candidate, 0.5)

    def evaluate(model_dir):  # a weaker rival promotes while the first decision is made
        if registry.champion()["run_id"] == "run-0":
            registry.promote("rival", candidate, 0.6)
            return 0.5
        return 0.6

    decision = _gate(tmp_path / "registry", candidate, evaluate)

    assert (decision["outcome"], decision["promoted"]) == ("promoted", True)
    assert decision["champion_run_id"] == "rival" and decision["champion_accuracy"] == 0.6
    assert decision["reason"] == (
        "promote: candidate 0.9 > champion 0.6 + margin 0 (after losing a promotion race: "
        "champion is at generation 2, the decision was made against generation 1; evaluate again)"
    )
    assert registry.champion()["run_id"] == "run-2"
