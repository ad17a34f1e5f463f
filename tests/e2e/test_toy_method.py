"""A method added from the test suite runs through the whole pipeline: `contrastive run
--methods toy` with the toy method installed as a plugin (`tests/toy_method.py`), at
`--profile tiny`, one epoch each (the smallest run with its every step: ingest, pretrain,
classifier, evaluate, compare)."""

import json

import pytest

from tests import toy_method
from tests.e2e.cli_run import run_ok

pytestmark = pytest.mark.slow


def test_a_plugin_method_runs_end_to_end(separable_npz, tmp_path):
    runs = tmp_path / "runs"
    result = run_ok(
        f"npz:{separable_npz}",
        runs,
        "--methods",
        "toy",
        "--no-estimate",
        timeout=900,
        env=toy_method.install(tmp_path / "plugin"),
    )
    latest = runs / "latest"
    results = json.loads((latest / "results.json").read_text())
    # the random_init control runs beside every pretraining method; it is never the best
    assert list(results["methods"]) == ["random_init", "toy"] and results["best"] == "toy"
    assert 0.0 <= results["methods"]["toy"]["test_accuracy"] <= 1.0
    (run_dir,) = (latest / "artifacts").resolve().iterdir()  # named by the run id

    def by_method(pattern):
        paths = run_dir.glob(pattern)
        return {json.loads((path / "info.json").read_text())["method"]: path for path in paths}

    encoders = by_method("pretrain-encoder*/encoder_model")
    assert set(encoders) == {"toy", "random_init"}
    assert json.loads((encoders["toy"] / "metrics.json").read_text())["final_loss"] is not None
    assert set(by_method("train-classifier*/model")) == {"toy", "random_init"}
    # only the toy loss trains with Keras epochs (tiny's classifiers are fitted heads)
    steps = {path.name for path in (latest / "tensorboard").resolve().iterdir()}
    assert steps == {"pretrain-toy"}
    assert "Toy (alignment + uniformity)" in (latest / "report.html").read_text()
    assert "toy *" in result.stdout  # the results table, best marked
