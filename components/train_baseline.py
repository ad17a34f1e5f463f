"""train_baseline: the cross-entropy baseline (same encoder, augmentation and epoch budget)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_baseline(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    profile: str = "quick",
    overrides: str = "",
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    encoder: str = "",
    seed: int = 0,
    distribution: str = "",
    labeled_subset_fraction: float = 0.0,
    tensorboard_root: str = "",
    tensorboard_name: str = "train-baseline",
    checkpoint_root: str = "",
    job_id: str = "",
):
    """Train a classifier end to end with cross-entropy into the Model artifact. TensorBoard
    logs, checkpoints and progress where `contrastive.tasks.StepSinks` says."""
    import os

    from contrastive import tasks

    tasks.run_training_component(
        "baseline",
        os.environ,
        dataset=dataset,
        output=model,
        metrics=metrics,
        profile=profile,
        overrides=overrides,
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        encoder=encoder,
        seed=seed,
        distribution=distribution,
        labeled_subset_fraction=labeled_subset_fraction,
        tensorboard_root=tensorboard_root,
        tensorboard_name=tensorboard_name,
        checkpoint_root=checkpoint_root,
        job_id=job_id,
    )
