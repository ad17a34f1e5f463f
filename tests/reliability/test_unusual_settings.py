"""Valid but unusual settings (a temperature of 1e-9 trains to a loss of 1e7) are named with
their usual range before any work: by the step itself, and by `contrastive run` on the
terminal (the tasks' logs are not shown there)."""

import logging

from pipelines.cli import main


def test_a_step_warns_about_an_unusual_temperature_before_any_work(tmp_path, caplog, capsys):
    empty = tmp_path / "no-dataset"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="contrastive.tasks"):
        code = main(
            ["pretrain", "--data", str(empty), "--output", str(tmp_path / "out")]
            + ["--profile", "tiny", "--temperature", "1e-9"]
        )
    assert code == 2 and "dataset incomplete" in capsys.readouterr().err
    assert (
        "pretrain: train.temperature=1e-09 is outside the usual range [0.01, 1]; training may "
        "diverge or not learn"
    ) in caplog.text


def test_contrastive_run_prints_unusual_settings_before_the_run(tmp_path, capsys, monkeypatch):
    import pipelines.local

    def run_local(*args, **kwargs):
        raise RuntimeError("the run itself is not needed here")

    monkeypatch.setattr(pipelines.local, "run_local", run_local)
    code = main(
        ["run", "--profile", "tiny", "--runs-dir", str(tmp_path), "--no-cache", "--no-estimate"]
        + ["--override", "train.learning_rate=5", "--override", "train.classifier_learning_rate=1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "the run itself is not needed here" in err
    assert err.index(
        "warning: train.learning_rate=5 is outside the usual range [1e-06, 0.1] for optimizer adam"
    ) < err.index("the run itself")
    assert "warning: train.classifier_learning_rate=1 is outside" in err
