"""Configuration: profiles load, overrides apply, bad values are refused with their name."""

import dataclasses

import pytest
import yaml

from contrastive.config import Config, ConfigError, available_profiles, load_config, resolve_config

SHIPPED = [
    "full",
    "quick",
    "seed-cifar10-resnet50v2",
    "seed-small-cnn",
    "seed-stl10-simclr",
    "tiny",
]


def test_every_shipped_profile_loads_and_validates():
    assert set(SHIPPED) <= set(available_profiles())
    for name in SHIPPED:
        config = load_config(name)
        assert config.profile == name
        assert config.train.epochs >= 1


def test_seed_profiles_reproduce_the_seed_settings():
    seed = load_config("seed-cifar10-resnet50v2")
    assert (seed.train.batch_size, seed.train.temperature, seed.train.epochs) == (265, 0.05, 50)
    assert (seed.train.optimizer, seed.train.learning_rate) == ("adam", 0.001)
    assert (seed.train.method, seed.train.num_views) == ("npairs", 1)
    assert (seed.model.encoder, seed.model.classifier_head) == ("resnet50v2", "seed")
    stl = load_config("seed-stl10-simclr")
    assert (stl.train.method, stl.train.batch_size, stl.model.width) == ("simclr", 525, 128)
    assert stl.train.use_unlabeled and stl.train.classifier_mode == "finetune"
    full = load_config("full")
    assert full.model.encoder == "resnet18" and full.train.batch_size >= 512
    assert full.train.epochs >= 100


def test_tiny_inherits_from_quick_and_overrides():
    quick, tiny = load_config("quick"), load_config("tiny")
    assert tiny.model.encoder == quick.model.encoder
    assert tiny.data.limit == 512 and tiny.train.epochs == 1


def test_overrides_as_strings_and_dict():
    config = load_config(
        "quick", ["train.epochs=5", "train.learning_rate=1e-2", "data.image_size=[32,32]"]
    )
    assert config.train.epochs == 5  # quick has 7
    assert config.train.learning_rate == pytest.approx(0.01)
    assert config.data.image_size == (32, 32)
    assert load_config("quick", {"model.encoder": "resnet18"}).model.encoder == "resnet18"


def test_round_trip_through_dict_and_yaml():
    config = load_config("full", ["train.base_temperature=0.07"])
    assert Config.from_dict(config.to_dict()) == config
    assert Config.from_dict(yaml.safe_load(config.to_yaml())) == config


def test_config_is_frozen():
    config = load_config("quick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.encoder=vgg", "model.encoder=vgg"),
        ("train.epochs=0", "train.epochs=0"),
        ("train.batch_size=1", "train.batch_size=1"),
        ("train.temperature=0", "train.temperature=0"),
        ("train.temperature=-1", "train.temperature=-1"),
        ("train.method=moco", "train.method=moco"),
        ("train.classifier_mode=probe", "train.classifier_mode=probe"),
        ("model.dropout=1.5", "model.dropout=1.5"),
        ("augment.strong.min_area=0", "augment.strong.min_area=0"),
        ("train.epochs=abc", "train.epochs=abc"),
        ("train.probe_repeats=0", "train.probe_repeats=0"),
        ("train.probe_repeats=often", "train.probe_repeats=often"),
        ("train.probe_repeats=true", "train.probe_repeats=True"),
        ("train.probe_pool_tolerance=-1", "train.probe_pool_tolerance=-1"),
        ("train.probe_pool_tolerance=.nan", "train.probe_pool_tolerance=nan"),
        ("train.probe_pool_tolerance=wide", "train.probe_pool_tolerance=wide"),
    ],
)
def test_invalid_values_name_the_field_and_value(override, fragment):
    with pytest.raises(ConfigError) as error:
        load_config("quick", [override])
    field, value = fragment.split("=")
    assert field in str(error.value)
    assert value in str(error.value)


def test_unknown_field_and_profile_and_malformed_override():
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config("quick", ["train.epochz=1"])
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config("quick", ["epochs"])


def test_profile_from_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: quick\ntrain:\n  epochs: 9\n")
    config = load_config(path)
    assert config.train.epochs == 9 and config.profile == "mine"
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(loop)


def test_the_reader_buffer_fields_are_checked_and_in_memory_is_gone():
    for field in ("shuffle_buffer", "shuffle_buffer_mib"):
        with pytest.raises(ConfigError) as error:
            resolve_config("tiny", overrides=[f"data.{field}=0"])
        assert str(error.value) == f"data.{field} must be >= 1. Received: data.{field}=0"
    with pytest.raises(ConfigError, match="unknown config field 'data.in_memory'"):
        resolve_config("tiny", overrides=["data.in_memory=true"])


def test_overrides_mapping_keeps_commas_inside_values():
    from contrastive.config import encode_overrides, resolve_config

    text = encode_overrides(["data.image_size=[64, 48]", "train.epochs=2"])
    config = resolve_config("tiny", overrides=text)
    assert config.data.image_size == (64, 48) and config.train.epochs == 2


def test_profile_digest_follows_every_profile_file_of_the_chain(tmp_path):
    from contrastive.config import profile_digest

    assert profile_digest("quick") == ""  # shipped: the library's fingerprint covers it
    base, mine = tmp_path / "base.yaml", tmp_path / "mine.yaml"
    base.write_text("base: tiny\ntrain: {epochs: 2}\n")
    mine.write_text(f"base: {base}\ntrain: {{batch_size: 8}}\n")
    first = profile_digest(str(mine))
    assert len(first) == 12 and profile_digest(str(mine)) == first
    base.write_text("base: tiny\ntrain: {epochs: 3}\n")  # only the base file changed
    assert profile_digest(str(mine)) != first
    assert load_config(str(mine)).train.epochs == 3  # the chain still merges as before
    assert load_config(str(mine)).train.batch_size == 8


def test_unusual_temperatures_and_learning_rates_are_named_with_their_range():
    from contrastive.config import available_profiles, load_config, unusual_settings

    assert all(not unusual_settings(load_config(name)) for name in available_profiles())
    config = load_config("tiny", {"train.temperature": 1e-9, "train.learning_rate": 3.0})
    assert unusual_settings(config) == [
        "train.temperature=1e-09 is outside the usual range [0.01, 1]; training may diverge "
        "or not learn",
        "train.learning_rate=3 is outside the usual range [1e-06, 0.1] for optimizer adam; "
        "training may diverge or not learn",
    ]
    sgd = config.replace({"train.optimizer": "sgd", "train.temperature": 5.0})
    assert unusual_settings(sgd, fields={"train.temperature"}) == [
        "train.temperature=5 is outside the usual range [0.01, 1]; training may diverge or not "
        "learn"
    ]
    assert unusual_settings(sgd, fields={"train.learning_rate"}) == []  # 3 is usual for SGD
