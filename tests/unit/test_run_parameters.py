"""The pipeline's parameter set checked as one (contrastive.run_parameters), overrides as a
mapping that a comma cannot split, YAML errors as messages, compile options."""

import pytest

from contrastive.config import (
    ConfigError,
    encode_overrides,
    load_config,
    parse_overrides_text,
    resolve_config,
)
from contrastive.run_parameters import check_run_parameters


@pytest.mark.parametrize(
    "values, message",
    [
        ({"profile": "fulll"}, "unknown profile 'fulll'"),
        ({"epochs": -3}, "epochs must be an integer >= 0. Received: epochs=-3"),
        ({"epochs": 2.5}, "epochs must be an integer >= 0. Received: epochs=2.5"),
        # Ingest takes a seed >= 0; -1 used to pass here and fail inside ingest (issue 24).
        ({"seed": -1}, "seed must be an integer >= 0. Received: seed=-1"),
        ({"overrides": '{"train.seed": -1}'}, "train.seed must be >= 0. Received: train.seed=-1"),
        (
            {"encoder": "resnet19"},
            "encoder must be one of ['', 'small_cnn', 'simclr_cnn', 'resnet18', 'resnet50v2']. "
            "Received: encoder='resnet19'",
        ),
        (
            {"classifier_mode": "probe"},
            "classifier_mode must be one of ['', 'fitted', 'linear', 'finetune']. "
            "Received: classifier_mode='probe'",
        ),
        ({"batch_size": 1}, "batch_size must be 0 (profile's) or >= 2. Received: batch_size=1"),
        ({"temperature": -0.1}, "temperature must be >= 0 (0 keeps the profile's)."),
        ({"validation_fraction": 1.0}, "validation_fraction must be in [0, 1). Received: "),
        ({"labeled_fraction": 1.5}, "labeled_fraction must be in [0, 1] (0 = all)."),
        ({"promotion_margin": float("nan")}, "promotion_margin must be >= 0."),
        ({"promotion_margin": -0.1}, "promotion_margin must be >= 0. Received: "),
        ({"promotion_margin": float("inf")}, "promotion_margin must be >= 0. Received: "),
        ({"on_error": "ignore"}, "on_error must be one of ['skip', 'fail']. Received: "),
        ({"registry": 3}, "registry must be a string. Received: registry=3"),
        ({"limit": -1}, "limit must be an integer >= 0. Received: limit=-1"),
        (
            {"image_size": "0,64"},
            "image_size must be 'H,W' (or an int, or a (height, width) pair) of positive integers.",
        ),
        ({"source": " "}, "source must name the images to ingest. Received: source=''"),
        (
            {"retrain_when": "sometimes"},
            "retrain_when must be one of ['always', 'changed', 'drifted']. "
            "Received: retrain_when='sometimes'",
        ),
        (
            {"retrain_when": "drifted", "registry": ""},
            "retrain_when compares this run with the champion: set registry too. "
            "Received: retrain_when='drifted', registry=''",
        ),
        ({"overrides": "train.epochs=3"}, "overrides must be a JSON or YAML mapping"),
        ({"overrides": '{"train.epochs": -1}'}, "train.epochs must be >= 1. Received: "),
        ({"overrides": '{"train.nope": 1}'}, "unknown config field 'train.nope'"),
    ],
)
def test_each_bad_value_is_refused_naming_it(values, message):
    with pytest.raises(ConfigError) as caught:
        check_run_parameters({"profile": "quick", **values})
    assert message in str(caught.value)


def test_a_valid_set_resolves_to_the_config_the_tasks_build():
    config = check_run_parameters(
        {
            "profile": "quick",
            "overrides": '{"train.learning_rate": 0.01}',
            "epochs": 3,
            "classifier_epochs": 0,
            "batch_size": 0,
            "temperature": 0.0,
            "encoder": "",
            "classifier_mode": "finetune",
            "seed": 4,
            "limit": 0,
            "image_size": "32,32",
        }
    )
    base = load_config("quick")
    assert (config.train.epochs, config.train.learning_rate, config.train.seed) == (3, 0.01, 4)
    assert config.train.classifier_mode == "finetune"
    assert config.train.batch_size == base.train.batch_size  # 0 keeps the profile's


def test_unset_classifier_mode_keeps_the_profiles():
    config = check_run_parameters({"profile": "seed-stl10-simclr", "classifier_mode": ""})
    assert config.train.classifier_mode == "finetune"


def test_override_value_with_a_comma_survives_the_round_trip():
    # The comma-joined form split "data.image_size=[32, 32]" into "[32" and " 32]".
    text = encode_overrides(["data.image_size=[32, 32]", "train.learning_rate=0.01"])
    config = resolve_config("quick", overrides=text)
    assert config.data.image_size == (32, 32)
    assert config.train.learning_rate == 0.01
    assert parse_overrides_text(text) == {"data.image_size": [32, 32], "train.learning_rate": 0.01}
    assert encode_overrides([]) == ""
    assert resolve_config("quick", overrides="") == load_config("quick")


def test_malformed_override_yaml_is_a_message_not_a_traceback():
    with pytest.raises(ConfigError) as caught:
        load_config("quick", ["train.epochs=[1"])
    assert str(caught.value) == (
        "override value of train.epochs is not valid YAML: expected ',' or ']', but got "
        "'<stream end>' at column 3. Received: 'train.epochs=[1'"
    )
    with pytest.raises(ConfigError, match=r"overrides must be a JSON or YAML mapping .*column"):
        parse_overrides_text('{"train.epochs": [1')


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(retries=-1), "retries must be an integer >= 0. Received: retries=-1"),
        (
            dict(accelerator_count=-2),
            "accelerator_count must be an integer >= 0. Received: accelerator_count=-2",
        ),
    ],
)
def test_compile_refuses_negative_retries_and_accelerators(options, message):
    from pipelines.dag import build_pipeline

    with pytest.raises(ValueError) as caught:
        build_pipeline(target="kubeflow", **options)
    assert str(caught.value) == message


def test_cli_malformed_override_and_bad_compile_options_exit_2(tmp_path, capsys):
    from pipelines.cli import main

    argv = ["pretrain", "--data", str(tmp_path / "d"), "--output", str(tmp_path / "o")]
    assert main([*argv, "--override", "train.epochs=[1"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "error: override value of train.epochs is not valid YAML: expected ',' or ']', but got "
        "'<stream end>' at column 3. Received: 'train.epochs=[1'"
    )
    output = tmp_path / "p.yaml"
    for flags, message in (
        (["--retries", "-1"], "retries must be an integer >= 0. Received: retries=-1"),
        (["--accelerator-count", "-2"], "Received: accelerator_count=-2"),
    ):
        assert main(["compile", "--target", "kubeflow", "--output", str(output), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not output.exists()
