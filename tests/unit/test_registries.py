"""Each list of names has one home: the registries and the configuration agree."""

import dataclasses

import pytest

from contrastive import augment, config, methods, models
from contrastive.report import formatting


def test_encoder_registry_is_the_configs_list():
    assert sorted(models.ENCODERS) == sorted(config.ENCODER_NAMES)


def test_each_pretraining_method_builds_the_loss_it_names():
    import keras

    for method in methods.all_methods():
        if not method.pretrains or method.control:  # a control's encoder step trains nothing
            assert method.loss is None
            with pytest.raises(ValueError, match=f"method {method.name} has no pretraining loss"):
                method.build_loss(0.1)
            continue
        loss = method.build_loss(0.3, 0.07)
        assert isinstance(loss, keras.losses.Loss)
        assert f"{type(loss).__module__}:{type(loss).__name__}" == method.loss
        assert (loss.temperature, loss.base_temperature) == (0.3, 0.07)


def test_train_method_accepts_exactly_the_pretraining_methods():
    for method in methods.all_methods():
        overrides = [f"train.method={method.name}"]
        if method.pretrains:
            assert config.resolve_config("tiny", overrides=overrides).train.method == method.name
        else:
            with pytest.raises(config.ConfigError, match=f"Received: train.method='{method.name}'"):
                config.resolve_config("tiny", overrides=overrides)


def test_augmentation_defaults_come_from_the_config():
    defaults = config.AugmentConfig()
    assert augment.STRONG == dataclasses.asdict(defaults.strong)
    assert augment.WEAK == dataclasses.asdict(defaults.weak)
    # The keyword arguments build an augmenter (no name the builder does not know).
    augment.build_augmenter((8, 8, 1), **augment.STRONG, seed=0)


def test_the_report_names_and_orders_methods_as_the_registry_does():
    names = methods.names()
    assert formatting.in_method_order(["zeta", *reversed(names), "alpha"]) == [
        *names,
        "alpha",
        "zeta",
    ]
    for method in methods.all_methods():
        assert formatting.method_label(method.name) == method.label
    assert formatting.method_label("not-a-method") == "not-a-method"
