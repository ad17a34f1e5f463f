"""What a training step was asked for, and when a finished output may stand in for it.

A step that finds its output complete (a retried task, a rerun command) returns it instead of
training again, but only when the output's recorded request equals the current one:

    step      pretrain | classifier | baseline
    method    the pretraining method (a classifier: its encoder's; the baseline: baseline)
    mode      the classifier mode (linear | finetune), else None
    settings  the configuration fields that shape this step's model (`shaping_settings`)
    inputs    a digest of each input: the dataset's content (`data.dataset_digest`), the
              encoder's model file (`modeldir.model_digest`)

Otherwise the step refuses (`OutputConflictError`, exit 2 from the CLI) naming every field
that differs, unless it is told to overwrite. The same request guards the checkpoints a step
resumes from (`<output>/checkpoints/request.json`), so an interrupted SupCon run is never
resumed as SimCLR. An output may never be one of the step's inputs, nor lie inside one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from contrastive import storage

# Fields of `Config` that say how a step runs or what it reports, not what it learns.
_NOT_SHAPING = (
    "profile",
    "train.verbose",
    "train.checkpoint_every",
    "train.jit_compile",
    "train.distribution",
    "train.knn_k",
    "train.knn_temperature",
    "train.knn_max_examples",
    "train.labeled_fractions",
)
# Self-distillation after a fitted head: the classifier step's alone.
_DISTILL = (
    "train.distill_epochs",
    "train.distill_learning_rate",
    "train.distill_temperature",
    "train.distill_augment",
)
# Fields only the classifier and the baseline read.
_CLASSIFIER_ONLY = _DISTILL + (
    "train.classifier_epochs",
    "train.classifier_mode",
    "train.classifier_learning_rate",
    "train.finetune_learning_rate",
    "train.labeled_steps_per_epoch",
    "model.classifier_head",
    "model.classifier_hidden_dim",
    "model.dropout",
    "augment.weak",
)
# Fields only contrastive pretraining reads.
_PRETRAIN_ONLY = (
    "train.method",
    "train.temperature",
    "train.base_temperature",
    "train.num_views",
    "train.online_probe",
    "train.use_unlabeled",
    "model.projection_head",
    "model.projection_dim",
    "model.projection_hidden_dim",
    "augment.strong",
)
# What each step leaves out of its settings: a classifier's encoder is an input (its digest),
# the baseline trains its encoder itself for `epochs + classifier_epochs` at `learning_rate`.
_IGNORED = {
    "pretrain": _NOT_SHAPING + _CLASSIFIER_ONLY,
    "classifier": _NOT_SHAPING
    + _PRETRAIN_ONLY
    + ("train.epochs", "train.learning_rate", "model.encoder", "model.width"),
    "baseline": _NOT_SHAPING
    + _PRETRAIN_ONLY
    + _DISTILL
    + ("train.classifier_mode", "train.classifier_learning_rate", "train.finetune_learning_rate"),
}
STEPS = tuple(_IGNORED)
REQUEST_FILE = "request.json"  # in a checkpoint folder; a model directory keeps it in info.json


class OutputConflictError(ValueError):
    """The output holds something else than what the step was asked for, or overlaps an
    input."""


def shaping_settings(config, step: str) -> dict[str, Any]:
    """The dotted configuration fields that shape `step`'s model, with their values."""
    ignored = _IGNORED[step]
    return {
        key: value
        for key, value in flatten(config.to_dict()).items()
        if not any(key == name or key.startswith(name + ".") for name in ignored)
    }


def step_request(
    step: str, config, *, method: str, inputs: Mapping[str, str], mode: str | None = None
) -> dict:
    """The request a step records with its output and compares before reusing one."""
    if step not in _IGNORED:
        raise ValueError(f"step must be one of {list(STEPS)}. Received: step={step!r}")
    return {
        "step": step,
        "method": method,
        "mode": mode,
        "settings": shaping_settings(config, step),
        "inputs": dict(inputs),
    }


def differences(recorded: Mapping | None, asked: Mapping) -> list[str]:
    """`field: <recorded> there, <asked> now` for every field that differs (all of them when
    nothing was recorded)."""
    if not isinstance(recorded, Mapping):
        return ["request: none recorded there (written by an older contrastive or by hand)"]
    there, now = flatten(recorded), flatten(_plain(asked))
    lines = []
    for key in sorted(set(there) | set(now)):
        if there.get(key, _MISSING) != now.get(key, _MISSING):
            lines.append(
                f"{key}: {_show(there.get(key, _MISSING))} there, "
                f"{_show(now.get(key, _MISSING))} now"
            )
    return lines


def refuse(output: str, what: str, recorded: Mapping | None, asked: Mapping) -> None:
    """OutputConflictError naming what `output` holds and every field that differs."""
    changed = differences(recorded, asked)
    shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
    raise OutputConflictError(
        f"{output} holds {what} asked for something else: {shown}. Pass --overwrite "
        "(overwrite=True) to replace it, or choose another --output"
    )


def check_apart(outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """OutputConflictError when an output is an input, lies inside one, or holds one.

    Args:
        outputs, inputs: flag name (`--output`) -> path or URI; None or "" are skipped.
    """
    for out_name, output in outputs.items():
        for in_name, given in inputs.items():
            if not output or not given:
                continue
            output, given = str(output), str(given)
            if storage.within(given, output):
                where = "is" if storage.within(output, given) else "lies inside"
                raise OutputConflictError(
                    f"{out_name} {output} {where} the step's own input {in_name} {given}; "
                    f"choose an {out_name} outside it"
                )
            if storage.within(output, given):
                raise OutputConflictError(
                    f"{out_name} {output} holds the step's own input {in_name} {given}; "
                    f"choose an {out_name} of its own"
                )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (lists stay values)."""
    if not isinstance(value, Mapping):
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, name))
        else:
            flat[name] = item
    return flat


_MISSING = object()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256 {value[:12]}"
    return repr(value)


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples as lists), so equal requests compare equal."""
    return json.loads(json.dumps(value))
