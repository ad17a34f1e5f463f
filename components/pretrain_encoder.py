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
    """Pretrain into the Model artifact; metrics: loss, contrastive and kNN accuracy.
    TensorBoard logs, checkpoints and progress where `contrastive.tasks.StepSinks` says."""
    import os

    from contrastive import tasks

    tasks.run_training_component(
        "pretrain",
        os.environ,
        dataset=dataset,
        output=encoder_model,
        metrics=metrics,
        method=method,
        profile=profile,
        overrides=overrides,
        epochs=epochs,
        batch_size=batch_size,
        temperature=temperature,
        encoder=encoder,
        seed=seed,
        distribution=distribution,
        labeled_subset_fraction=labeled_subset_fraction,
        tensorboard_root=tensorboard_root,
        tensorboard_name=tensorboard_name,
        checkpoint_root=checkpoint_root,
        job_id=job_id,
    )
