"""Each contrastive method against the random-init control (`contrastive.controls`): the
comparison in results.json, and the report saying plainly when a method does not beat it."""

from contrastive import controls, label_efficiency
from contrastive.report import build_report, render_markdown


def test_each_contrastive_method_is_set_against_the_control():
    compared = controls.against_controls(
        {"baseline": 0.80, "supcon": 0.78, "simclr": 0.74, "random_init": 0.75, "npairs": None}
    )
    assert set(compared) == {"supcon", "simclr"}  # the baseline has no loss; None is skipped
    assert compared["supcon"] == {
        "control": "random_init",
        "accuracy": 0.78,
        "control_accuracy": 0.75,
        "difference": 0.03,
        "beats_control": True,
    }
    assert compared["simclr"]["beats_control"] is False
    assert compared["simclr"]["difference"] == -0.01
    assert controls.against_controls({"supcon": 0.9, "baseline": 0.8}) == {}  # no control branch


def test_a_tie_with_the_control_does_not_beat_it():
    compared = controls.against_controls({"simclr": 0.75, "random_init": 0.75})
    assert compared["simclr"]["beats_control"] is False
    (sentence,) = controls.sentences(compared)
    assert sentence == (
        "SimCLR does not beat its control (Random-init control): 75.00 % against 75.00 % "
        "(+0.00 points)."
    )


def test_the_curve_is_compared_at_every_fraction():
    curve = None
    for fraction, accuracies in ((0.01, (0.72, 0.75)), (1.0, (0.88, 0.85))):
        curve = label_efficiency.add_fraction(
            curve,
            fraction,
            {
                "simclr": {"accuracy": accuracies[0]},
                "random_init": {"accuracy": accuracies[1]},
                "baseline": {"accuracy": 0.8},
            },
        )
    compared = controls.curve_against_controls(curve)
    assert list(compared) == ["0.01", "1"]
    assert compared["0.01"]["simclr"]["beats_control"] is False
    assert compared["1"]["simclr"]["beats_control"] is True


def _summary(methods, curve=None):
    summary = {
        "run_id": "r1",
        "dataset": {"class_names": ["a", "b"], "image_shape": [8, 8, 1]},
        "methods": {
            name: {"test_accuracy": accuracy, "macro_f1": accuracy}
            for name, accuracy in methods.items()
        },
        "best": max(methods, key=methods.get),
    }
    if curve is not None:
        summary["label_efficiency"] = curve
    return summary


def test_the_report_says_plainly_when_a_method_does_not_beat_its_control(tmp_path):
    summary = _summary({"baseline": 0.80, "supcon": 0.79, "simclr": 0.70, "random_init": 0.72})
    html = build_report(summary, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Against the random-init control" in html
    assert (
        "<strong>SimCLR does not beat its control (Random-init control): 70.00 % against "
        "72.00 % (-2.00 points).</strong>"
    ) in html
    assert "SupCon beats its control (Random-init control): 79.00 % against 72.00 %" in html
    markdown = render_markdown(summary)
    assert "- SimCLR does not beat its control (Random-init control)" in markdown


def test_the_report_compares_at_every_labelled_fraction(tmp_path):
    curve = label_efficiency.add_fraction(
        None, 0.01, {"supcon": {"accuracy": 0.70}, "random_init": {"accuracy": 0.74}}
    )
    curve = label_efficiency.add_fraction(
        curve, 1.0, {"supcon": {"accuracy": 0.90}, "random_init": {"accuracy": 0.86}}
    )
    summary = _summary({"supcon": 0.90, "random_init": 0.86}, curve)
    html = build_report(summary, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "SupCon does not beat its control (Random-init control) at 1 % labels" in html
    assert "SupCon beats its control (Random-init control) at 100 % labels" in html


def test_no_control_section_without_a_control_branch(tmp_path):
    summary = _summary({"baseline": 0.80, "supcon": 0.79})
    html = build_report(summary, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Against the random-init control" not in html
    assert "Against the random-init control" not in render_markdown(summary)


def test_the_run_folders_results_json_keeps_the_controls():
    """`contrastive run`'s results.json (`pipelines.local.compact_results`) carries the
    comparison the compare step wrote."""
    from pipelines.local.run import compact_results

    methods = {"supcon": 0.79, "random_init": 0.80}
    summary = {
        **_summary(methods),
        "controls": controls.against_controls(methods),
    }
    results = compact_results(summary, run_id="r1")
    assert results["controls"]["supcon"]["beats_control"] is False
    assert "controls_by_fraction" not in results


def test_the_best_method_is_never_a_control_while_a_method_was_evaluated():
    from contrastive.tasks.evaluating import best_method

    scores = {"baseline": 0.80, "random_init": 0.90, "supcon": 0.85}
    evaluations = {name: {"accuracy": accuracy} for name, accuracy in scores.items()}
    assert best_method(evaluations) == "supcon"  # the control scored highest: not shipped
    assert best_method({"random_init": {"accuracy": 0.5}}) == "random_init"  # nothing else
