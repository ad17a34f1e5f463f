"""pretrain_encoder: contrastive pretraining (supcon | simclr | npairs) of an encoder."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def pretrain_encoder(
    dataset: Input[Dataset],
    encoder_model: Output[Model],
    metrics: Output[Metrics],
    method: str = "supcon",
    profile: str = "quick",
    overrides: str = "",
    epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    seed: int = 0,
    distribution: str = "",
    labeled_subset_fraction: float = 0.0,
    tensorboard_root: str = "",
    tensorboard_name: str = "pretrain",
    checkpoint_root: str = "",
    job_id: str = "",
):
    """Pretrain into the Model artifact; metrics: loss, contrastive and kNN accuracy."""
    inputs = dict(locals())  # every input and output above, by name
    import os

    from contrastive import tasks

    tasks.run_training_component("pretrain", os.environ, **inputs)
