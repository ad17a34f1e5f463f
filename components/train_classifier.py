"""train_classifier: a classifier on a pretrained encoder (frozen linear probe or fine-tune)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_classifier(
    dataset: Input[Dataset],
    encoder_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    mode: str = "",
    profile: str = "quick",
    overrides: str = "",
    classifier_epochs: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    distribution: str = "",
    labeled_subset_fraction: float = 0.0,
    tensorboard_root: str = "",
    tensorboard_name: str = "classifier",
    checkpoint_root: str = "",
    job_id: str = "",
):
    """Train the classifier head (and the encoder when `mode` is finetune). TensorBoard logs,
    checkpoints and progress where `contrastive.tasks.StepSinks` says."""
    import os

    from contrastive import tasks

    tasks.run_training_component(
        "classifier",
        os.environ,
        dataset=dataset,
        output=model,
        metrics=metrics,
        encoder_model=encoder_model,
        mode=mode,
        profile=profile,
        overrides=overrides,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        seed=seed,
        distribution=distribution,
        labeled_subset_fraction=labeled_subset_fraction,
        tensorboard_root=tensorboard_root,
        tensorboard_name=tensorboard_name,
        checkpoint_root=checkpoint_root,
        job_id=job_id,
    )
