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
):
    """Pretrain into the Model artifact; metrics: final loss, contrastive and kNN accuracy."""
    from contrastive import tasks
    from contrastive.config import resolve_config

    config = resolve_config(
        profile,
        overrides=overrides,
        epochs=epochs,
        batch_size=batch_size,
        temperature=temperature,
        encoder=encoder,
        seed=seed,
    )
    result = tasks.run_pretrain(dataset, encoder_model.path, config, method=method)
    encoder_model.metadata.update(method=method, kind="encoder", framework="keras")
    for name, value in tasks.numeric_metrics(result).items():
        metrics.log_metric(name, value)
