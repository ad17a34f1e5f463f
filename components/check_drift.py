"""check_drift: has the training data drifted from the champion's, and does this run train?"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def check_drift(
    dataset: Input[Dataset],
    drift: Output[Artifact],
    metrics: Output[Metrics],
    registry: str = "",
    retrain_when: str = "always",
    run_id: str = "",
    methods: str = "",
    profile: str = "quick",
    overrides: str = "",
    epochs: int = 0,
    classifier_epochs: int = 0,
    batch_size: int = 0,
    temperature: float = 0.0,
    encoder: str = "",
    classifier_mode: str = "",
    seed: int = 0,
) -> str:
    """Compare this run's training data and code with the champion's; returns "train" or
    "skip" (a skip is recorded in the registry as the gate's decisions are)."""
    from contrastive import tasks

    config = tasks.training_config(
        profile,
        overrides=overrides,
        classifier_mode=classifier_mode,
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch_size=batch_size,
        temperature=temperature,
        encoder=encoder,
        seed=seed,
    )
    result = tasks.run_check_drift(
        dataset,
        registry=registry,
        retrain_when=retrain_when,
        run_id=run_id,
        config=config,
        methods=[name for name in methods.split(",") if name],
        drift_path=drift.path,
    )
    tasks.log_metrics(metrics, tasks.inspection_scalars(None, result))
    return result["decision"]
