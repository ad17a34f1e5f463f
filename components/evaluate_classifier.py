"""evaluate_classifier: test accuracy, per-class metrics, confusion matrix, predictions."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate_classifier(
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    predictions: Output[Dataset],
    evaluation: Output[Artifact],
    split: str = "test",
) -> float:
    """Evaluate on `split`; returns the accuracy. `evaluation` holds the full JSON result."""
    import json

    from contrastive import tasks

    result = tasks.run_evaluate(dataset, model.path, split=split, predictions_path=predictions.path)
    tasks.log_metrics(metrics, result["scalars"])
    classification_metrics.log_confusion_matrix(result["class_names"], result["confusion_matrix"])
    tasks.log_metrics(classification_metrics)
    with open(evaluation.path, "w") as file:
        json.dump(result, file)
    return float(result["accuracy"])
