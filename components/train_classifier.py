"""train_classifier: a classifier on a pretrained encoder (frozen linear probe or fine-tune)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_classifier(
    dataset: Input[Dataset],
    encoder_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    mode: str = "linear",
    profile: str = "quick",
    overrides: str = "",
    classifier_epochs: int = 0,
    batch_size: int = 0,
    seed: int = 0,
):
    """Train the classifier head (and the encoder when `mode` is finetune)."""
    from contrastive import tasks
    from contrastive.config import resolve_config

    config = resolve_config(
        profile,
        overrides=overrides,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        seed=seed,
    )
    result = tasks.run_train_classifier(dataset, encoder_model.path, model.path, config, mode=mode)
    model.metadata.update(method=result.get("method"), mode=mode, framework="keras")
    for name, value in tasks.numeric_metrics(result).items():
        metrics.log_metric(name, value)
