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
):
    """Train a classifier end to end with cross-entropy into the Model artifact."""
    from contrastive import tasks
    from contrastive.config import resolve_config

    config = resolve_config(
        profile,
        overrides=overrides,
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        encoder=encoder,
        seed=seed,
    )
    result = tasks.run_train_baseline(dataset, model.path, config)
    model.metadata.update(method="baseline", framework="keras")
    for name, value in tasks.numeric_metrics(result).items():
        metrics.log_metric(name, value)
