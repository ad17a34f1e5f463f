"""compare_and_report: pick the best classifier, gate it against the champion, write the report."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def compare_and_report(
    dataset: Input[Dataset],
    report: Output[HTML],
    summary: Output[Markdown],
    results: Output[Artifact],
    decision: Output[Metrics],
    baseline_evaluation: Input[Artifact] = None,
    baseline_model: Input[Model] = None,
    supcon_evaluation: Input[Artifact] = None,
    supcon_model: Input[Model] = None,
    simclr_evaluation: Input[Artifact] = None,
    simclr_model: Input[Model] = None,
    npairs_evaluation: Input[Artifact] = None,
    npairs_model: Input[Model] = None,
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
    from contrastive import tasks

    vertex = dict(model_id=vertex_model, project=vertex_project, region=vertex_region)

    candidates = tasks.branch_candidates(
        baseline=(baseline_evaluation, baseline_model),
        supcon=(supcon_evaluation, supcon_model),
        simclr=(simclr_evaluation, simclr_model),
        npairs=(npairs_evaluation, npairs_model),
    )
    outcome = tasks.run_compare_and_report(
        dataset,
        candidates,
        report_path=report.path,
        markdown_path=summary.path,
        results_path=results.path,
        registry=registry,
        promotion_margin=promotion_margin,
        run_id=run_id,
        vertex_model=vertex if vertex_model else None,
        curve_path=curve.path if curve is not None else None,
        neighbours_path=neighbours.path if neighbours is not None else None,
        drift_path=drift.path if drift is not None else None,
    )
    for name, value in outcome["scalars"].items():
        decision.log_metric(name, value)
    return outcome["best"]
