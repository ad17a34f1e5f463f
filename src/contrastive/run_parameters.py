"""The pipeline's parameter set, checked as one before any request or task.

`contrastive run`, `compile`, `submit` and `schedule` all call `check_run_parameters` on the
values a run will get (a package's defaults merged with the user's), so a misspelt profile, a
negative epoch count or an unknown encoder costs an error message, not a queued run that fails
in its first training task. The names and their conventions are the pipeline's (0 / "" keep
the profile's value); a name this module does not know is left to the caller (the package's
own parameter list refuses unknown names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from contrastive import validation
from contrastive.config import CLASSIFIER_MODES, ENCODER_NAMES, Config, ConfigError, resolve_config
from contrastive.data.sources import CLASS_NAME_VARIANTS
from contrastive.drift import RETRAIN_POLICIES

ON_ERROR = ("skip", "fail")


def check_run_parameters(values: Mapping[str, Any]) -> Config:
    """Check every known pipeline parameter in `values`; return the configuration the
    training tasks will resolve from them.

    Raises:
        ConfigError: the first invalid value, as `name ... Received: name=value`.
    """
    for name, minimum in (
        ("epochs", 0),
        ("classifier_epochs", 0),
        ("batch_size", 0),
        ("limit", 0),
        ("seed", 0),  # ingest's split and sample take a seed >= 0
    ):
        if name in values:
            _integer(name, values[name], minimum)
    if "batch_size" in values and values["batch_size"] == 1:
        raise ConfigError("batch_size must be 0 (profile's) or >= 2. Received: batch_size=1")
    _number("temperature", values, lambda v: v >= 0, "must be >= 0 (0 keeps the profile's)")
    _number("promotion_margin", values, lambda v: v >= 0, "must be >= 0")
    # The ranges ingest accepts (`contrastive.data.ingest`).
    _number("validation_fraction", values, lambda v: 0 <= v < 1, "must be in [0, 1)")
    _number("labeled_fraction", values, lambda v: 0 <= v <= 1, "must be in [0, 1] (0 = all)")
    for name in ("max_upscale", "max_aspect_ratio"):
        if name in values:
            validation.check(
                name,
                values[name],
                lambda v: validation.is_number(v) and v >= 1,
                "must be a number >= 1 (inf: no limit)",
                error=ConfigError,
            )
    for name, choices in (
        ("encoder", ("", *ENCODER_NAMES)),
        ("classifier_mode", ("", *CLASSIFIER_MODES)),
        ("on_error", ON_ERROR),
        ("class_name_variants", CLASS_NAME_VARIANTS),
        ("retrain_when", RETRAIN_POLICIES),
    ):
        if name in values:
            validation.check_choice(name, values[name], choices, error=ConfigError)
    for name in ("profile", "overrides", "source", "image_size", "registry", "checkpoint_root"):
        if name in values and not isinstance(values[name], str):
            raise ConfigError(f"{name} must be a string. Received: {name}={values[name]!r}")
    if "source" in values and not values["source"].strip():
        raise ConfigError("source must name the images to ingest. Received: source=''")
    if values.get("image_size"):
        _image_size(values["image_size"])
    if "ingest_runner" in values or "ingest_beam_options" in values:
        _ingest_engine(values.get("ingest_runner", ""), values.get("ingest_beam_options", ""))
    if values.get("retrain_when", "always") != "always" and not values.get("registry"):
        raise ConfigError(
            "retrain_when compares this run with the champion: set registry too. "
            f"Received: retrain_when={values['retrain_when']!r}, registry=''"
        )
    return training_config(
        values.get("profile", "quick"),
        overrides=values.get("overrides", ""),
        classifier_mode=values.get("classifier_mode", ""),
        epochs=values.get("epochs", 0),
        classifier_epochs=values.get("classifier_epochs", 0),
        batch_size=values.get("batch_size", 0),
        temperature=values.get("temperature", 0.0),
        encoder=values.get("encoder", ""),
        seed=values.get("seed"),
    )


def training_config(
    profile: str,
    *,
    overrides: str = "",
    classifier_mode: str = "",
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    seed: int | None = None,
) -> Config:
    """The configuration the pipeline's training steps resolve from its parameters
    (`config.resolve_config`), with the classifier mode the classifier steps get."""
    config = resolve_config(
        profile,
        overrides=overrides,
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        temperature=temperature,
        encoder=encoder,
        seed=seed,
    )
    return config.replace({"train.classifier_mode": classifier_mode}) if classifier_mode else config


def _integer(name: str, value: Any, minimum: int | None) -> None:
    if minimum is None:
        validation.check(name, value, validation.is_int, "must be an integer", error=ConfigError)
    else:
        validation.check_int(name, value, minimum=minimum, error=ConfigError)


def _number(name: str, values: Mapping[str, Any], predicate, requirement: str) -> None:
    if name in values:
        validation.check(
            name,
            values[name],
            lambda v: validation.is_number(v) and math.isfinite(v) and predicate(v),
            requirement,
            error=ConfigError,
        )


def _ingest_engine(runner: Any, beam_options: Any) -> None:
    """The ingest step's runner and Beam flags, as the step will check them."""
    from contrastive.data.runners import check_engine

    for name, value in (("ingest_runner", runner), ("ingest_beam_options", beam_options)):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string. Received: {name}={value!r}")
    try:
        check_engine(runner, beam_options)
    except ValueError as error:
        raise ConfigError(f"ingest_runner={runner!r}: {error}") from None


def _image_size(text: str) -> None:
    from contrastive.data.images import parse_image_size  # the rule ingest applies

    try:
        parse_image_size(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None
