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
    tensorboard_root: str = "",
    tensorboard_name: str = "train-baseline",
    checkpoint_root: str = "",
    pipeline_root: str = "",
    job_id: str = "",
):
    """Train a classifier end to end with cross-entropy into the Model artifact. TensorBoard
    logs where `contrastive.tasks.tensorboard_dir` says."""
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
            classifier_epochs=classifier_epochs,
            batch_size=batch_size,
            encoder=encoder,
            seed=seed,
            distribution=distribution,
        )
        join_processes(os.environ, config.train)  # Vertex CLUSTER_SPEC, Kubeflow JAX_*
        result = tasks.run_train_baseline(dataset, model.path, config, **logs, durable_dir=state)
    model.metadata.update(method="baseline", framework="keras")
    tasks.log_metrics(metrics, result)
