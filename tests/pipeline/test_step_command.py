"""A training step handed to other machines (`contrastive.tasks.calls.TrainingCall`) is
written as the `contrastive pretrain | train` command its nodes run
(`pipelines.cli.steps.training_argv`) and read back by the same CLI as the same value
(`training_call`): the command's spelling lives in one place, next to the parser."""

import pytest

from contrastive.tasks import StepSinks
from contrastive.tasks.calls import TrainingCall
from pipelines.cli import build_parser
from pipelines.cli.steps import training_argv, training_call

OVERRIDES = {
    "data.image_size": [32, 32],
    "train.learning_rate": 1e-3,
    "train.optimizer": "sgd",
    "train.distribution": "data_parallel",
    "model.encoder": "resnet18",
    "train.labeled_fraction": 0.1,
}
SINKS = StepSinks(tensorboard="gs://b/tb/x", durable="gs://b/ckpt/run/x", progress="/p/x.jsonl")


@pytest.mark.parametrize(
    "call",
    [
        TrainingCall("pretrain", "gs://b/d", "gs://b/enc", profile="tiny", method="simclr"),
        TrainingCall("pretrain", "gs://b/d", "gs://b/enc", overrides=OVERRIDES, sinks=SINKS),
        TrainingCall(
            "classifier",
            "gs://b/d",
            "gs://b/cls",
            encoder_model="gs://b/enc",
            mode="finetune",
            overrides=OVERRIDES,
        ),
        TrainingCall("classifier", "gs://b/d", "gs://b/cls", encoder_model="gs://b/enc"),
        TrainingCall("baseline", "gs://b/d", "gs://b/base", profile="quick", sinks=SINKS),
    ],
)
def test_a_training_call_reads_back_from_the_command_it_is_written_as(call):
    argv = training_argv(call)
    assert argv[0] == "contrastive"
    assert argv[1] == ("pretrain" if call.step == "pretrain" else "train")
    args = build_parser().parse_args(argv[1:])
    assert training_call(args) == call.replace(name="")


def test_a_training_call_refuses_a_step_it_does_not_know_and_a_lone_encoder():
    with pytest.raises(ValueError, match="step must be one of"):
        TrainingCall("finetune", "d", "o")
    with pytest.raises(ValueError, match="only it, reads an encoder model"):
        TrainingCall("baseline", "d", "o", encoder_model="e")
    with pytest.raises(ValueError, match="only it, reads an encoder model"):
        TrainingCall("classifier", "d", "o")
