"""Each list of names has one home: the registries and the configuration agree."""

import dataclasses

from contrastive import augment, config, losses, models
from contrastive.report import formatting


def test_encoder_registry_is_the_configs_list():
    assert sorted(models.ENCODERS) == sorted(config.ENCODER_NAMES)


def test_loss_registry_is_the_configs_list_of_methods():
    assert sorted(losses.LOSSES) == sorted(config.METHODS)
    for method, loss_class in losses.LOSSES.items():
        assert isinstance(losses.get_loss(method, 0.1), loss_class)


def test_augmentation_defaults_come_from_the_config():
    defaults = config.AugmentConfig()
    assert augment.STRONG == dataclasses.asdict(defaults.strong)
    assert augment.WEAK == dataclasses.asdict(defaults.weak)
    # The keyword arguments build an augmenter (no name the builder does not know).
    augment.build_augmenter((8, 8, 1), **augment.STRONG, seed=0)


def test_every_method_has_a_report_label_and_place():
    methods = (config.BASELINE, *config.METHODS)
    assert set(formatting.METHOD_LABELS) == set(methods)
    # The report lists the baseline first, then the methods in their registry's order, then
    # any name it does not know, sorted; whatever order the summary holds them in.
    summary = {"methods": {name: {} for name in ("zeta", *reversed(methods), "alpha")}}
    assert list(formatting.ordered_methods(summary)) == [*methods, "alpha", "zeta"]
