"""One frozen configuration tree (data, augmentation, model, training) loaded from YAML profiles.

Profiles ship in `contrastive/profiles/*.yaml`. A profile may name a `base` profile whose values it
overrides. Command-line overrides are dotted keys (`train.epochs=3`). Everything is validated
once, here, before any expensive work starts; errors name the field and echo the value.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from contrastive import methods, validation

if TYPE_CHECKING:
    from contrastive.sizing import DataSize

# The encoder names the configuration accepts, the key set of `models.ENCODERS`
# (tests/unit/test_registries.py checks they agree), spelled here so that a configuration
# validates without Keras. Methods: `contrastive.methods` (Keras-free itself).
ENCODER_NAMES = ("small_cnn", "simclr_cnn", "resnet18", "resnet50v2")
PROJECTION_HEADS = ("linear", "mlp")
CLASSIFIER_HEADS = ("linear", "seed")
# "fitted": a head fitted on frozen features (`training.probe`); "linear": a linear head trained
# by gradient descent on frozen features; "finetune": the fitted head, then encoder and head
# fine-tuned, the better of the two on validation kept.
CLASSIFIER_MODES = ("fitted", "linear", "finetune")
# `model.feature_layer`: the encoder's output, or the input of its last Dense layer (`small_cnn`'s
# 1,600-d flatten; encoders ending in pooling have no other).
FEATURE_LAYERS = ("encoder", "flatten")
# `train.probe_candidates`: the classifiers `training.probe.select_classifier` chooses from.
PROBE_CANDIDATES = ("ridge", "logistic", "knn", "label_spreading", "spread_ridge")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
# `train.distribution`: one device, or data-parallel over every device of every process.
DISTRIBUTIONS = ("none", "data_parallel")
# `train.lr_scaling`: how the learning rate follows the global batch (see TrainConfig).
LR_SCALINGS = ("none", "linear", "sqrt")
# `train.mixed_precision`: "auto" resolves per machine; None is the older spelling of float32.
MIXED_PRECISIONS = ("auto", "float32", "bfloat16", "float16", None)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


@dataclass(frozen=True)
class DataConfig:
    # (height, width) images are stored and trained at: ingest resizes to it (aspect ratio
    # kept, centred crop; `data.images.RESIZE_METHOD`). None: a source whose images share one
    # size keeps it; a folder of mixed sizes is resized to the median height x median width.
    image_size: tuple[int, int] | None = None
    # Use only the first N training examples (fast experiments and tests); None = all.
    limit: int | None = None
    # Shuffle buffer of the streaming reader: at most this many examples and this many MiB of
    # records. Every step streams its splits; memory is bounded by this buffer, not by the
    # dataset (docs/BENCHMARKS.md).
    shuffle_buffer: int = 20_000
    shuffle_buffer_mib: int = 64


@dataclass(frozen=True)
class AugmentStrength:
    # Smallest crop area as a fraction of the image (random resized crop).
    min_area: float = 0.25
    # Brightness scale is drawn from [1 - brightness, 1 + brightness].
    brightness: float = 0.6
    # Amplitude of the per-image channel-mixing (RGB) or contrast (grayscale) jitter.
    jitter: float = 0.2
    # Max rotation as a fraction of a full turn (keras RandomRotation's factor).
    rotation: float = 0.0
    # Random horizontal flip.
    flip: bool = True
    # Probability of turning an RGB image gray (ignored for one channel).
    grayscale: float = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    # The one home of the augmentation defaults (`augment.STRONG` / `WEAK` derive from it).
    # Strong: contrastive pretraining views, after the SimCLR keras-io example (min_area 0.25,
    # brightness 0.6, jitter 0.2) plus the SupCon example's light rotation (0.02 of a turn)
    # and SimCLR's random grayscale.
    strong: AugmentStrength = AugmentStrength(
        min_area=0.25, brightness=0.6, jitter=0.2, rotation=0.02, grayscale=0.2
    )
    # Weak: classifier and cross-entropy baseline training (SimCLR example: min_area 0.75,
    # brightness 0.3, jitter 0.1).
    weak: AugmentStrength = AugmentStrength(min_area=0.75, brightness=0.3, jitter=0.1)


@dataclass(frozen=True)
class ModelConfig:
    # Encoder backbone, one of ENCODER_NAMES.
    encoder: str = "small_cnn"
    # Width of `simclr_cnn` (ignored by the other encoders).
    width: int = 128
    # Projection head used for contrastive pretraining: "mlp" (SimCLR/SupCon) or "linear".
    projection_head: str = "mlp"
    projection_dim: int = 128
    projection_hidden_dim: int = 512
    # Classifier head on the encoder: "linear" or the seeds' "seed" head (dropout-512-dropout).
    classifier_head: str = "linear"
    classifier_hidden_dim: int = 512
    dropout: float = 0.5
    # The features a classifier on a pretrained (or untrained) encoder reads, one of
    # FEATURE_LAYERS: small_cnn's 1,600-d flatten beats its 128-d output by 2-5 points at
    # 1 / 10 / 100 % labels (SimCLR, ridge; docs/BENCHMARKS.md). The cross-entropy baseline
    # always uses the whole encoder.
    feature_layer: str = "flatten"


@dataclass(frozen=True)
class TrainConfig:
    # Contrastive objective for pretraining: a pretraining method of `contrastive.methods`.
    method: str = "supcon"
    # Pretraining epochs (and the cross-entropy baseline's epochs: same budget).
    epochs: int = 10
    # Epochs for the classifier trained on the pretrained encoder.
    classifier_epochs: int = 5
    # One of CLASSIFIER_MODES: "fitted" fits a head on the frozen encoder's features (chosen
    # among probe_candidates by cross-validation on the labelled training images), "linear"
    # trains a linear head by gradient descent for classifier_epochs, "finetune" starts from
    # the fitted head and updates the encoder too, keeping whichever of the two scores better
    # on the validation split.
    classifier_mode: str = "fitted"
    # "fitted": the candidates and the cross-validation folds.
    probe_candidates: tuple[str, ...] = PROBE_CANDIDATES
    probe_folds: int = 5
    # How many times the k-fold split is drawn, every setting scored over all of them: an
    # int >= 1, or "auto" (more draws the fewer labelled images: 3 at 200, 1 from 600;
    # `training.probe.cv_repeats`).
    probe_repeats: int | str = "auto"
    # Standard errors of the best head's CV accuracy within which a head that reads the
    # unlabelled pool (ridge on spread labels, then label spreading) is chosen instead: at
    # 200 labels the CV's error (about 3 points) is larger than the heads' differences. Set
    # on validation data (docs/BENCHMARKS.md 4c: 0.25 best of 0-2 over 3 seeds x 3 encoders
    # at 1 % and 10 %). 0: the best CV accuracy always (`select_classifier`'s `pool_tolerance`).
    probe_pool_tolerance: float = 0.25
    batch_size: int = 256
    # Softmax temperature of the contrastive losses.
    temperature: float = 0.1
    # If set, the SupCon loss is scaled by temperature / base_temperature (paper's code).
    base_temperature: float | None = None
    # Augmented views per image in a pretraining step.
    num_views: int = 2
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    classifier_learning_rate: float = 1e-3
    # Learning rate of the whole classifier (encoder and head) in classifier_mode finetune.
    finetune_learning_rate: float = 1e-4
    # Self-distillation after the fitted head (classifier_mode fitted; 0: off): a student
    # (the encoder and a linear head from the fitted one) trained for distill_epochs on every
    # pool image against the fitted head's class distribution at distill_temperature (the
    # label where there is one), kept only if its validation accuracy is at least the fitted
    # head's (`contrastive.training.distill`). Does nothing where every image is labelled.
    distill_epochs: int = 0
    distill_learning_rate: float = 1e-3
    distill_temperature: float = 1.0
    # The student's views: "strong" (augment.strong, the noise Noisy Student finds essential:
    # a student fed the teacher's own views learns the teacher back) or "weak".
    distill_augment: str = "strong"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    # Compute precision: "float32", "bfloat16", "float16" (the loss stays float32), or "auto":
    # bfloat16 on a CPU with native bfloat16 under TensorFlow and on a GPU from Ampere on,
    # float32 elsewhere (`training.optim.resolve_mixed_precision`). null means float32.
    mixed_precision: str | None = "auto"
    # XLA compilation of the train step: True, False or "auto" (Keras decides).
    jit_compile: bool | str = "auto"
    seed: int = 0
    # kNN monitor: neighbours, softmax temperature, and how many labelled examples it uses.
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_max_examples: int = 10_000
    # Train the online linear probe on stop-gradient features during pretraining.
    online_probe: bool = True
    # Semi-supervised (seed 003): pretrain on labelled + unlabelled images, ignoring labels.
    use_unlabeled: bool = False
    # Few labels: the share of the train split's labels a step sees, in (0, 1]; a stratified,
    # seeded (train.seed), nested subset (`data.splits.labeled_subset`). The classifier and the
    # baseline train on that subset only; SupCon pretrains on every train image with the
    # others unlabelled (their only positives are their own views); SimCLR ignores labels.
    labeled_fraction: float = 1.0
    # Batches per epoch of a step trained on a labelled subset (labeled_fraction < 1): the
    # subset is repeated to fill them when one pass is shorter, so that 1 % of the labels
    # still gets this many updates an epoch; 0 = one pass over the subset.
    labeled_steps_per_epoch: int = 0
    # SupCon at few labels (labeled_fraction < 1): every pretraining batch ends with this
    # many labelled images of each class, drawn from the labelled subset (each class
    # reshuffled on every pass over it), the rest of the batch from the whole pool as
    # before; 0 = random batches, which at 1 % carry about 2.6 labelled images in 256.
    labeled_per_class: int = 0
    # Batches per epoch at least: a shorter pass over the train split is repeated (in a new
    # shuffled order) to fill them; 0 = one pass. Set by `fit_to_data` on small data.
    min_steps_per_epoch: int = 0
    # Fit batch_size, min_steps_per_epoch and knn_k to the training set's size where the user
    # did not set them (`contrastive.sizing`: a batch at most 1/4 of the set, 16 steps an
    # epoch, k at most half a class); false: the profile's values as they are.
    fit_to_data: bool = True
    # The label-efficiency curve a run draws: the fractions `contrastive run` trains when no
    # --labeled-fractions is given (one branch each, compiled into the DAG); empty = one run
    # at train.labeled_fraction.
    labeled_fractions: tuple[float, ...] = ()
    # Checkpoint every N epochs during training; 0 disables checkpoints.
    checkpoint_every: int = 1
    # Keras progress output: 0 silent, 1 bar, 2 one line per epoch.
    verbose: int = 2
    # "none": one device. "data_parallel": every device of every process (JAX backend only),
    # `batch_size` is then the global batch, split evenly over the devices.
    distribution: str = "none"
    # Learning rate for the global batch: "none" keeps it, "linear" multiplies it by
    # batch_size / lr_reference_batch, "sqrt" by the square root of that ratio (use a
    # warm-up, `warmup_epochs`, with large scaled rates).
    lr_scaling: str = "none"
    # The batch size the configured learning rates were tuned for.
    lr_reference_batch: int = 256


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Name of the profile this came from (for reports and lineage).
    profile: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) that `from_dict` and YAML accept."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build and validate a Config from a nested dict; unknown keys are errors."""
        config = _build(cls, values, prefix="")
        validate(config)
        return config

    def replace(self, overrides: dict[str, Any] | list[str]) -> Config:
        """Return a copy with dotted-key overrides applied, validated."""
        values = self.to_dict()
        for key, value in _parse_overrides(overrides).items():
            _set_dotted(values, key, value)
        return Config.from_dict(values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    folder = importlib.resources.files("contrastive") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(
    profile: str | Path = "quick", overrides: dict[str, Any] | list[str] | None = None
) -> Config:
    """Load a profile by name (or a YAML file path) and apply dotted-key overrides.

    Args:
        profile: a shipped profile name (`quick`, `full`, ...) or a path to a YAML file.
        overrides: `{"train.epochs": 3}` or `["train.epochs=3"]`; values given as strings are
            parsed as YAML scalars.

    Raises:
        ConfigError: unknown profile, unknown key, or an invalid value.
    """
    values = _load_profile_values(str(profile), seen=())
    values.setdefault("profile", Path(str(profile)).stem)
    for key, value in _parse_overrides(overrides or {}).items():
        _set_dotted(values, key, value)
    return Config.from_dict(values)


def resolve_config(
    profile: str = "quick",
    *,
    overrides: Sequence[str] | str = (),
    fit_to: DataSize | None = None,
    **shortcuts: Any,
) -> Config:
    """A profile plus explicit overrides (the pipeline-parameter conventions).

    Args:
        profile: a profile name (`available_profiles()`).
        overrides: `section.field=value` strings, a mapping of dotted keys to values, or a
            string holding a JSON/YAML mapping (the form a pipeline parameter carries; see
            `parse_overrides_text`).
        fit_to: the size of the data the run trains on: the fields the user did not set
            (`explicit_fields`) are fitted to it (`sizing.fit_to_data`, each change logged).
        shortcuts: `epochs`, `classifier_epochs`, `batch_size`, `temperature`, `encoder`,
            `limit`, `seed`, `distribution`, `labeled_fraction`: the common overrides; 0 / "" /
            None (the defaults) keep the profile's value.

    Returns:
        The validated `Config`.
    """
    if isinstance(overrides, str):
        overrides = parse_overrides_text(overrides)
    values = _shortcut_values(**shortcuts)
    config = load_config(profile, overrides if isinstance(overrides, dict) else list(overrides))
    config = config.replace(values) if values else config
    if fit_to is not None:
        from contrastive import sizing

        explicit = explicit_fields(profile, overrides, **shortcuts)
        config, notes = sizing.fit_to_data(config, fit_to, explicit)
        for note in notes:
            logging.getLogger("contrastive.sizing").info("fitted to the data: %s", note)
    return config


def explicit_fields(
    profile: str = "quick", overrides: Sequence[str] | str | dict = (), **shortcuts: Any
) -> frozenset[str]:
    """The dotted fields the user set, as `resolve_config` takes them: the `overrides`, the
    shortcuts that are not 0 / "" / None, and every field a profile *file* of the `base`
    chain sets (a shipped profile's values are defaults that `sizing` may fit)."""
    if isinstance(overrides, str):
        overrides = parse_overrides_text(overrides)
    fields = set(pipeline_overrides(overrides, **shortcuts))
    for shipped, _, values in _profile_layers(str(profile)):
        if not shipped:
            fields.update(_dotted_keys(values))
    return frozenset(fields)


def _dotted_keys(values: dict, prefix: str = "") -> list[str]:
    """`{"train": {"epochs": 2}}` -> `["train.epochs"]` (no field's value is a mapping)."""
    keys = []
    for key, value in values.items():
        if isinstance(value, dict):
            keys += _dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def pipeline_overrides(overrides: Sequence[str] | str = (), **shortcuts: Any) -> dict[str, Any]:
    """Every dotted-key override `resolve_config(profile, overrides=..., **shortcuts)` applies,
    as one mapping (the shortcuts win): `load_config(profile, pipeline_overrides(...))` gives
    the same configuration, e.g. a command line of `--override key=<JSON value>` flags."""
    if isinstance(overrides, str):
        overrides = parse_overrides_text(overrides)
    return {**_parse_overrides(overrides), **_shortcut_values(**shortcuts)}


def _shortcut_values(
    *,
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    limit: int = 0,
    seed: int | None = None,
    distribution: str = "",
    labeled_fraction: float = 0.0,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in (
        ("train.epochs", epochs),
        ("train.classifier_epochs", classifier_epochs),
        ("train.batch_size", batch_size),
        ("train.temperature", temperature),
        ("data.limit", limit),
        ("train.labeled_fraction", labeled_fraction),
    ):
        _check(name, value, lambda v: v >= 0, "must be > 0 (0 keeps the profile's value)")
        if value:
            values[name] = value
    if encoder:
        values["model.encoder"] = encoder
    if seed is not None:
        values["train.seed"] = seed
    if distribution:
        values["train.distribution"] = distribution
    return values


def validate(config: Config) -> None:
    """Raise ConfigError naming the first invalid field and its value."""
    t, m, d = config.train, config.model, config.data
    _check_choice("model.encoder", m.encoder, ENCODER_NAMES)
    _check_choice("model.projection_head", m.projection_head, PROJECTION_HEADS)
    _check_choice("model.classifier_head", m.classifier_head, CLASSIFIER_HEADS)
    _check_choice("train.method", t.method, methods.pretraining_names())
    _check_choice("train.classifier_mode", t.classifier_mode, CLASSIFIER_MODES)
    _check_choice("model.feature_layer", m.feature_layer, FEATURE_LAYERS)
    _check(
        "train.probe_candidates",
        t.probe_candidates,
        lambda v: len(v) >= 1 and all(name in PROBE_CANDIDATES for name in v),
        f"must be a non-empty list of {list(PROBE_CANDIDATES)}",
    )
    _check("train.probe_folds", t.probe_folds, lambda v: v >= 2, "must be >= 2")
    _check(
        "train.probe_repeats",
        t.probe_repeats,
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        'must be "auto" or an int >= 1',
    )
    validation.check_non_negative(
        "train.probe_pool_tolerance", t.probe_pool_tolerance, error=ConfigError
    )
    _check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _check_choice("train.schedule", t.schedule, SCHEDULES)
    _check_choice("train.mixed_precision", t.mixed_precision, MIXED_PRECISIONS)
    _check_choice("train.jit_compile", t.jit_compile, (True, False, "auto"))
    _check_choice("train.distribution", t.distribution, DISTRIBUTIONS)
    _check_choice("train.lr_scaling", t.lr_scaling, LR_SCALINGS)
    _check("train.lr_reference_batch", t.lr_reference_batch, lambda v: v >= 1, "must be >= 1")
    for name in ("epochs", "classifier_epochs", "num_views", "knn_k", "knn_max_examples"):
        _check(f"train.{name}", getattr(t, name), lambda v: v >= 1, "must be >= 1")
    _check("train.batch_size", t.batch_size, lambda v: v >= 2, "must be >= 2")
    min_views = methods.get(t.method).min_views
    _check(
        "train.num_views",
        t.num_views,
        lambda v: v >= min_views,
        f"must be >= {min_views} for train.method={t.method} (an image's only positives are "
        "its other views)",
    )
    _check("train.seed", t.seed, lambda v: v >= 0, "must be >= 0")  # ingest's splits take >= 0
    for name in ("temperature", "knn_temperature", "learning_rate"):
        _check(f"train.{name}", getattr(t, name), lambda v: v > 0, "must be > 0")
    for name in (
        "classifier_learning_rate",
        "finetune_learning_rate",
        "distill_learning_rate",
        "distill_temperature",
    ):
        _check(f"train.{name}", getattr(t, name), lambda v: v > 0, "must be > 0")
    _check("train.distill_epochs", t.distill_epochs, lambda v: v >= 0, "must be >= 0")
    _check_choice("train.distill_augment", t.distill_augment, ("weak", "strong"))
    _check(
        "train.distill_epochs",
        t.distill_epochs,
        lambda v: v == 0 or t.classifier_mode == "fitted",
        f"distils from the fitted head: it needs train.classifier_mode fitted, not "
        f"{t.classifier_mode!r} (or 0)",
    )
    if t.base_temperature is not None:
        _check("train.base_temperature", t.base_temperature, lambda v: v > 0, "must be > 0")
    _check("train.weight_decay", t.weight_decay, lambda v: v >= 0, "must be >= 0")
    _check("train.momentum", t.momentum, lambda v: 0 <= v < 1, "must be in [0, 1)")
    _check(
        "train.warmup_epochs",
        t.warmup_epochs,
        lambda v: 0 <= v < t.epochs,
        "must be in [0, epochs)",
    )
    _check("train.checkpoint_every", t.checkpoint_every, lambda v: v >= 0, "must be >= 0")
    _check("train.labeled_fraction", t.labeled_fraction, lambda v: 0 < v <= 1, "must be in (0, 1]")
    _check(
        "train.labeled_fractions",
        t.labeled_fractions,
        lambda v: all(validation.is_number(f) and 0 < f <= 1 for f in v),
        "must be fractions in (0, 1]",
    )
    for name in ("labeled_steps_per_epoch", "min_steps_per_epoch", "labeled_per_class"):
        _check(f"train.{name}", getattr(t, name), lambda v: v >= 0, "must be >= 0")
    _check_choice("train.fit_to_data", t.fit_to_data, (True, False))
    _check("train.verbose", t.verbose, lambda v: v in (0, 1, 2), "must be 0, 1 or 2")
    for name in ("width", "projection_dim", "projection_hidden_dim", "classifier_hidden_dim"):
        _check(f"model.{name}", getattr(m, name), lambda v: v >= 1, "must be >= 1")
    _check("model.dropout", m.dropout, lambda v: 0 <= v < 1, "must be in [0, 1)")
    if d.limit is not None:
        _check("data.limit", d.limit, lambda v: v >= 1, "must be >= 1")
    _check("data.shuffle_buffer", d.shuffle_buffer, lambda v: v >= 1, "must be >= 1")
    _check("data.shuffle_buffer_mib", d.shuffle_buffer_mib, lambda v: v >= 1, "must be >= 1")
    if d.image_size is not None:
        _check(
            "data.image_size",
            d.image_size,
            lambda v: len(v) == 2 and all(int(s) >= 8 for s in v),
            "must be [height, width], each >= 8",
        )
    for strength in ("strong", "weak"):
        a = getattr(config.augment, strength)
        prefix = f"augment.{strength}"
        _check(f"{prefix}.min_area", a.min_area, lambda v: 0 < v <= 1, "must be in (0, 1]")
        for name in ("brightness", "jitter"):
            _check(f"{prefix}.{name}", getattr(a, name), lambda v: 0 <= v < 1, "must be in [0, 1)")
        _check(f"{prefix}.rotation", a.rotation, lambda v: 0 <= v <= 0.5, "must be in [0, 0.5]")
        _check(f"{prefix}.grayscale", a.grayscale, lambda v: 0 <= v <= 1, "must be in [0, 1]")


# Valid but unusual: settings outside these ranges are accepted with a warning that gives the
# range (`unusual_settings`). Temperature: SimCLR's ablation spans 0.05-1 (Chen et al. 2020,
# table 5), SupCon uses 0.07-0.1; below 0.01 the logits (cosine / temperature) reach 100+ and
# the loss 1e7 at 1e-9, above 1 the softmax over similarities is nearly flat. Learning rates,
# by optimizer: Adam is used from 1e-5 to ~1e-2 (a linear head on frozen features up to 0.1);
# SGD with the linear scaling rule reaches 0.3 x batch / 256 (4.8 at batch 4096).
TEMPERATURE_RANGE = (0.01, 1.0)
LEARNING_RATE_RANGES = {"adam": (1e-6, 0.1), "sgd": (1e-5, 10.0)}
_LEARNING_RATES = (
    "learning_rate",
    "classifier_learning_rate",
    "finetune_learning_rate",
    "distill_learning_rate",
)


def unusual_settings(config: Config, fields=None) -> list[str]:
    """One line per setting outside its usual range, naming the value and the range.

    Args:
        fields: the dotted fields to look at (e.g. those a step uses); None: all.
    """
    ranges = {"train.temperature": TEMPERATURE_RANGE}
    for name in _LEARNING_RATES:
        ranges[f"train.{name}"] = LEARNING_RATE_RANGES[config.train.optimizer]
    lines = []
    for name, (low, high) in ranges.items():
        if fields is not None and name not in fields:
            continue
        value = getattr(config.train, name.split(".", 1)[1])
        if not low <= value <= high:
            usual = f"usual range [{low:g}, {high:g}]"
            if name != "train.temperature":
                usual += f" for optimizer {config.train.optimizer}"
            lines.append(
                f"{name}={value:g} is outside the {usual}; training may diverge or not learn"
            )
    return lines


# --------------------------------------------------------------------------------------------
# internals


def _check(name: str, value: Any, predicate, requirement: str) -> None:
    validation.check(name, value, predicate, requirement, error=ConfigError)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    validation.check_choice(name, value, choices, error=ConfigError)


def profile_digest(profile: str) -> str:
    """12 hex digits of the text of every profile *file* `profile` reads (itself and the
    files its `base` chain names), "" for a shipped profile on a shipped base (the library's
    own code and profiles are fingerprinted apart). Raises ConfigError as `load_config`."""
    import hashlib

    texts = [text for shipped, text, _ in _profile_layers(str(profile)) if not shipped]
    if not texts:
        return ""
    return hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:12]


def _profile_layers(profile: str, seen: tuple[str, ...] = ()) -> list[tuple[bool, str, dict]]:
    """`(shipped, text, values)` of `profile` and of each `base` it names, the profile first."""
    shipped, text, values = _read_profile(profile, seen)
    base = values.pop("base", None)
    layers = [(shipped, text, values)]
    if base is not None:
        layers += _profile_layers(str(base), seen + (profile,))
    return layers


def _load_profile_values(profile: str, seen: tuple[str, ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, _, values in reversed(_profile_layers(profile, seen)):
        _deep_update(merged, values)
    return merged


def _read_profile(profile: str, seen: tuple[str, ...]) -> tuple[bool, str, dict[str, Any]]:
    """`(shipped, text, values)` of one profile: a `.yaml` file, else a shipped name."""
    if profile in seen:
        raise ConfigError(f"profile inheritance loops: {' -> '.join(seen + (profile,))}")
    path = Path(profile)
    shipped = not (path.suffix in (".yaml", ".yml") and path.is_file())
    if not shipped:
        text = path.read_text()
    else:
        resource = importlib.resources.files("contrastive") / "profiles" / f"{profile}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown profile {profile!r}; shipped profiles: {available_profiles()} "
                "(or pass a path to a .yaml file)"
            )
        text = resource.read_text()
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"profile {profile!r} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"profile {profile!r} must be a mapping, got {type(values).__name__}")
    return shipped, text, values


def _deep_update(target: dict, updates: dict) -> None:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def parse_overrides_text(text: str) -> dict[str, Any]:
    """Overrides as a pipeline parameter carries them: a JSON or YAML mapping of dotted keys
    to values (`{"train.epochs": 3, "data.image_size": [32, 32]}`), or "" for none.

    A mapping cannot be split wrongly, unlike a comma-joined `k=v,k=v` string (a value may
    hold a comma). Raises ConfigError for text that is not a mapping.
    """
    if not text.strip():
        return {}
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"overrides must be a JSON or YAML mapping of section.field to value: "
            f"{_yaml_problem(error)}. Received: overrides={text!r}"
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise ConfigError(
            "overrides must be a JSON or YAML mapping of section.field to value, e.g. "
            f'{{"train.epochs": 3}}. Received: overrides={text!r}'
        )
    return values


def encode_overrides(overrides: dict[str, Any] | list[str]) -> str:
    """Overrides as the JSON mapping that `parse_overrides_text` reads back ("" for none)."""
    parsed = _parse_overrides(overrides)
    return json.dumps(parsed, sort_keys=True) if parsed else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at column {mark.column + 1}" if mark is not None else problem


def _parse_overrides(overrides: dict[str, Any] | list[str]) -> dict[str, Any]:
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override must look like section.field=value. Received: {item!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(
                f"override value of {key.strip()} is not valid YAML: {_yaml_problem(error)}. "
                f"Received: {item!r}"
            ) from None
    return parsed


def _set_dotted(values: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _build(cls, values: Any, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping. Received: {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        name = f"{prefix}{unknown[0]}"
        raise ConfigError(f"unknown config field {name!r}; known fields: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name) if _has_default(cls) else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{prefix}{name}.")
        elif name in ("image_size", "labeled_fractions", "probe_candidates") and value is not None:
            kwargs[name] = tuple(value) if isinstance(value, (list, tuple)) else value
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, default)
    return cls(**kwargs)


def _has_default(cls) -> bool:
    try:
        cls()
    except TypeError:
        return False
    return True


def _coerce(name: str, value: Any, default: Any) -> Any:
    # YAML reads 1e-3 as a string; accept it as a float where a float is expected.
    if isinstance(default, float) and (isinstance(value, str) or validation.is_int(value)):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number. Received: {name}={value!r}") from None
    if validation.is_int(default) and isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ConfigError(f"{name} must be an integer. Received: {name}={value!r}")
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
