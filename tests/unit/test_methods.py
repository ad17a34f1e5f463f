"""The method registry (`contrastive.methods`): its entries' rules, registration, the branch
check and methods from other packages' entry points."""

import sys

import pytest

from contrastive import methods
from contrastive.methods import Method


def test_built_in_methods_and_their_rules():
    assert methods.names() == ("baseline", "supcon", "simclr", "npairs")
    assert methods.default_names() == ("baseline", "supcon", "simclr")
    assert methods.pretraining_names() == ("supcon", "simclr", "npairs")
    baseline, supcon, simclr, npairs = methods.all_methods()
    assert baseline.end_to_end and not baseline.pretrains and baseline.name == methods.BASELINE
    assert (supcon.min_views, simclr.min_views, npairs.min_views) == (1, 2, 1)
    assert simclr.pretrain_once and not supcon.pretrain_once
    assert npairs.views == 1 and supcon.views is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Sup-Con"}, "lower-case letters, digits and _. .*Received: name='Sup-Con'"),
        ({"name": "1st"}, "Received: name='1st'"),
        ({"loss": "SupConLoss"}, "loss must be 'module:Class'. Received: loss='SupConLoss'"),
        ({"end_to_end": True}, "an end-to-end method has no pretraining loss"),
        ({"pretrain_once": True}, "its loss must use no label .*uses_labels=True"),
        ({"views": 0}, "views must be >= 1. Received: 0"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_field(fields, message):
    base = {"name": "toy", "label": "Toy", "loss": "contrastive.losses:SupConLoss"}
    with pytest.raises(ValueError, match=message):
        Method(**{**base, **fields})


def test_check_branches_keeps_order_drops_repeats_and_names_the_bad_one():
    assert methods.check_branches("simclr, baseline,simclr") == ("simclr", "baseline")
    assert methods.check_branches(["npairs"]) == ("npairs",)
    message = (
        r"methods must be a non-empty subset of \['baseline', 'supcon', 'simclr', 'npairs'\]. "
        r"Received: \['supcon', 'moco'\]"
    )
    with pytest.raises(ValueError, match=message):
        methods.check_branches("supcon,moco")
    with pytest.raises(ValueError, match=r"Received: \[\]"):
        methods.check_branches("")


def test_register_adds_after_the_built_in_ones_and_refuses_a_different_twin():
    toy = Method("toy_registered", "Toy", loss="contrastive.losses:SupConLoss")
    methods.register(toy)
    try:
        assert methods.names()[-1] == "toy_registered"
        assert methods.get("toy_registered") is toy
        methods.register(toy)  # the same entry again: nothing changes
        with pytest.raises(ValueError, match="a different method is already registered"):
            methods.register(Method("toy_registered", "Other", loss=toy.loss))
        with pytest.raises(ValueError, match="built-in"):
            methods.unregister("supcon")
    finally:
        methods.unregister("toy_registered")
    assert "toy_registered" not in methods.names()
    with pytest.raises(ValueError, match="Received: method='toy_registered'"):
        methods.get("toy_registered")


def _plugin(tmp_path, value):
    """A distribution on `sys.path` whose entry point `contrastive.methods: toy` is `value`."""
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{methods.ENTRY_POINT_GROUP}]\ntoy = {value}\n")
    (tmp_path / "toy_plugin_module.py").write_text(
        "from contrastive.methods import Method\n"
        "TOY = Method('toy_plugin', 'Toy plugin', loss='contrastive.losses:SimCLRLoss', "
        "uses_labels=False)\n"
        "NOT_A_METHOD = 'toy'\n"
    )


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """The registry as a new process finds it, with `tmp_path` on `sys.path`."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(methods, "_registry", {})
    monkeypatch.setattr(methods, "_plugins_loaded", False)
    yield
    sys.modules.pop("toy_plugin_module", None)


def test_an_entry_point_adds_a_method(tmp_path, fresh_registry):
    _plugin(tmp_path, "toy_plugin_module:TOY")
    assert methods.names() == ("baseline", "supcon", "simclr", "npairs", "toy_plugin")
    assert methods.get("toy_plugin").min_views == 2


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("toy_plugin_module:NOT_A_METHOD", TypeError, "must name a contrastive.methods.Method"),
        ("missing_module:TOY", ImportError, "the method plugin toy = missing_module:TOY"),
    ],
)
def test_a_broken_entry_point_fails_naming_it(tmp_path, fresh_registry, value, error, message):
    _plugin(tmp_path, value)
    with pytest.raises(error, match=message):
        methods.names()


def test_the_configuration_refuses_too_few_views_for_a_method_without_labels():
    from contrastive.config import ConfigError, resolve_config

    assert resolve_config("tiny", overrides=["train.method=npairs", "train.num_views=1"])
    message = (
        r"train.num_views must be >= 2 for train.method=simclr \(an image's only positives are "
        r"its other views\). Received: train.num_views=1"
    )
    with pytest.raises(ConfigError, match=message):
        resolve_config("tiny", overrides=["train.method=simclr", "train.num_views=1"])
