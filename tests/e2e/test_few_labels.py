"""Few labels through kfp.local: three labelled fractions, SimCLR pretrained once, the
label-efficiency curve in results.json and in the report (tiny profile, one epoch)."""

import json

import pytest

from tests.e2e.cli_run import run_ok

pytestmark = pytest.mark.slow

FRACTIONS = ("0.25", "0.5", "1")
METHODS = ("baseline", "supcon", "simclr")


@pytest.fixture(scope="module")
def few_labels_run(separable_npz, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = run_ok(
        f"npz:{separable_npz}",
        runs,
        "--labeled-fractions",
        "1,0.25,0.5",  # any order: the DAG sorts them
        "--epochs",
        "1",
        "--no-estimate",
        "--registry",
        str(runs / "registry"),
        timeout=1800,
    )
    return runs / "latest", result.stdout


def test_simclr_pretrains_once_and_every_fraction_has_its_branches(few_labels_run):
    latest, _ = few_labels_run
    (run_dir,) = (latest / "artifacts").resolve().glob("contrastive-*")
    encoders = [
        json.loads((path / "info.json").read_text())
        for path in sorted(run_dir.glob("pretrain-encoder*/encoder_model"))
    ]
    methods = sorted((info["method"], info["labeled_fraction"]) for info in encoders)
    assert methods == [("simclr", 1.0), ("supcon", 0.25), ("supcon", 0.5), ("supcon", 1.0)]
    classifiers = [
        json.loads((path / "info.json").read_text())
        for path in sorted(run_dir.glob("train-*/model"))
    ]
    trained = sorted((info["method"], info["labeled_fraction"]) for info in classifiers)
    assert trained == sorted(
        (method, float(fraction)) for method in METHODS for fraction in FRACTIONS
    )
    assert len(list(run_dir.glob("collect-fraction*/curve"))) == 3


def test_results_and_the_gate_are_keyed_by_fraction(few_labels_run):
    latest, stdout = few_labels_run
    results = json.loads((latest / "results.json").read_text())
    curve = results["label_efficiency"]
    assert list(curve) == list(FRACTIONS)
    for fraction in FRACTIONS:
        assert set(curve[fraction]) == set(METHODS)
        for figures in curve[fraction].values():
            assert 0 <= figures["test_accuracy"] <= 1
    # the accuracy table and the champion gate are the largest fraction's
    for method in METHODS:
        assert results["methods"][method]["test_accuracy"] == curve["1"][method]["test_accuracy"]
    assert results["decision"]["candidate"] == results["best"]
    assert "label efficiency" in stdout


def test_report_draws_the_curve_and_its_table(few_labels_run):
    latest, _ = few_labels_run
    html = (latest / "report.html").read_text()
    section = html[html.index('id="label-efficiency"') :]
    assert 'alt="label-efficiency chart"' in section
    results = json.loads((latest / "results.json").read_text())
    for fraction, label in zip(FRACTIONS, ("25 %", "50 %", "100 %"), strict=True):
        assert f"<td>{label}</td>" in section
        accuracy = results["label_efficiency"][fraction]["simclr"]["test_accuracy"]
        assert f"{100 * accuracy:.2f}" in section
    assert "STL-10" in section and "65.32" in section
