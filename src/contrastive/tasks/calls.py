"""A training step handed over to run elsewhere, as one value: `TrainingCall`.

When the pipeline's target runs a training step outside the component's own process
(`contrastive.environment.launcher`: on Kubeflow, a TrainJob of several nodes), the
component hands the target this value: what the step reads and writes, at URIs every node
reaches, and how it is configured. The target turns it into the command its nodes run; the
command's spelling lives with the CLI that reads it back (`pipelines.cli.steps`), so the
library writes no command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contrastive import validation
from contrastive.tasks.sinks import StepSinks

# The pipeline's training steps: pretrain an encoder, a classifier on it, the baseline.
PRETRAIN_STEP, CLASSIFIER_STEP, BASELINE_STEP = "pretrain", "classifier", "baseline"
STEPS = (PRETRAIN_STEP, CLASSIFIER_STEP, BASELINE_STEP)


@dataclass(frozen=True)
class TrainingCall:
    """One training step, everything it needs to run in another process.

    Args:
        step: one of `STEPS`.
        data: the dataset's URI (`contrastive ingest`'s output).
        output: the model directory to write (the encoder for "pretrain").
        profile: the configuration profile.
        overrides: every dotted-key override (`config.pipeline_overrides`: the pipeline's
            `overrides` and shortcuts as one mapping).
        method, mode: the pretraining method, the classifier mode ("" keeps the profile's).
        encoder_model: "classifier": the pretrained encoder's model directory.
        sinks: where TensorBoard logs, durable checkpoints and progress go.
        name: the step's name in the pipeline (`pretrain-supcon`); names a job that runs it.
    """

    step: str
    data: str
    output: str
    profile: str = "quick"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    method: str = ""
    mode: str = ""
    encoder_model: str = ""
    sinks: StepSinks = field(default_factory=StepSinks)
    name: str = ""

    def __post_init__(self):
        validation.check_choice("step", self.step, STEPS)
        if (self.step == CLASSIFIER_STEP) != bool(self.encoder_model):
            raise ValueError(
                "a classifier step, and only it, reads an encoder model. "
                f"Received: step={self.step!r}, encoder_model={self.encoder_model!r}"
            )

    def replace(self, **changes) -> TrainingCall:
        return dataclasses.replace(self, **changes)
