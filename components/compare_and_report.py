"""compare_and_report: pick the best classifier, gate it against the champion, write the report.

A template (`components.branches`): `branches` stands for one evaluation and one classifier
per method compiled in, the inputs `<method>_evaluation` and `<method>_model`."""

from kfp.dsl import (
    HTML,
    Artifact,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,  # noqa: F401  (BRANCH_INPUTS names it)
    Output,
)

# What each method's branch hands over: input suffix -> (annotation, what it is).
BRANCH_INPUTS = {
    "evaluation": ("Input[Artifact]", "evaluation (JSON: accuracy, per-class metrics, ...)"),
    "model": ("Input[Model]", "classifier (a model directory)"),
}


def compare_and_report(
    dataset: Input[Dataset],
    report: Output[HTML],
    summary: Output[Markdown],
    results: Output[Artifact],
    decision: Output[Metrics],
    branches: dict,
    curve: Input[Artifact] = None,
    neighbours: Input[Artifact] = None,
    drift: Input[Artifact] = None,
    registry: str = "",
    promotion_margin: float = 0.0,
    run_id: str = "",
    vertex_model: str = "",
    vertex_project: str = "",
    vertex_region: str = "",
) -> str:
    """Compare the methods' evaluations; returns the name of the best method. With
    `vertex_model`, a promoted champion also becomes a version of that Vertex Model."""
    import os

    from contrastive import tasks

    vertex = dict(model_id=vertex_model, project=vertex_project, region=vertex_region)
    candidates = {
        method: (inputs["evaluation"].path, inputs["model"].path)
        for method, inputs in branches.items()
    }
    outcome = tasks.run_compare_and_report(
        dataset,
        candidates,
        report_path=report.path,
        markdown_path=summary.path,
        results_path=results.path,
        registry=registry,
        promotion_margin=promotion_margin,
        run_id=run_id,
        publish=vertex if vertex_model else None,
        environ=os.environ,
        curve_path=curve.path if curve is not None else None,
        neighbours_path=neighbours.path if neighbours is not None else None,
        drift_path=drift.path if drift is not None else None,
    )
    for name, value in outcome["scalars"].items():
        decision.log_metric(name, value)
    return outcome["best"]
