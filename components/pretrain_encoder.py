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
    tensorboard_root: str = "",
    tensorboard_name: str = "pretrain",
    checkpoint_root: str = "",
    pipeline_root: str = "",
    job_id: str = "",
):
    """Pretrain into the Model artifact; metrics: loss, contrastive and kNN accuracy."""
    import os

    from contrastive import durable, tasks
    from contrastive.config import resolve_config
    from contrastive.training.distribution import join_processes

    logs = tasks.step_logs(os.environ, tensorboard_root, tensorboard_name)
    state = durable.step_folder(checkpoint_root, pipeline_root, job_id, tensorboard_name)
    with durable.recording_failures(state):  # a retry fails at once on a permanent failure
        config = resolve_config(
            profile,
            overrides=overrides,
            epochs=epochs,
            batch_size=batch_size,
            temperature=temperature,
            encoder=encoder,
            seed=seed,
            distribution=distribution,
        )
        join_processes(os.environ, config.train)  # Vertex CLUSTER_SPEC, Kubeflow JAX_*
        result = tasks.run_pretrain(
            dataset,
            encoder_model.path,
            config,
            method=method,
            **logs,
            durable_dir=state,
        )
    encoder_model.metadata.update(method=method, kind="encoder", framework="keras")
    tasks.log_metrics(metrics, result)
