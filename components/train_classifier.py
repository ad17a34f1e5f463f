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
    tensorboard_root: str = "",
    tensorboard_name: str = "classifier",
    checkpoint_root: str = "",
    pipeline_root: str = "",
    job_id: str = "",
):
    """Train the classifier head (and the encoder when `mode` is finetune). TensorBoard logs
    where `contrastive.tasks.tensorboard_dir` says."""
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
            classifier_epochs=classifier_epochs,
            batch_size=batch_size,
            seed=seed,
            distribution=distribution,
        )
        join_processes(os.environ, config.train)  # Vertex CLUSTER_SPEC, Kubeflow JAX_*
        result = tasks.run_train_classifier(
            dataset,
            encoder_model.path,
            model.path,
            config,
            mode=mode,
            **logs,
            durable_dir=state,
        )
    model.metadata.update(method=result.get("method"), mode=result["mode"], framework="keras")
    tasks.log_metrics(metrics, result)
