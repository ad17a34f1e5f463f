"""explain_neighbours: the best classifier's nearest-neighbour explanations and suspect labels."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def explain_neighbours(
    dataset: Input[Dataset],
    neighbours: Output[Artifact],
    suspect_labels: Output[Dataset],
    baseline_evaluation: Input[Artifact] = None,
    baseline_model: Input[Model] = None,
    supcon_evaluation: Input[Artifact] = None,
    supcon_model: Input[Model] = None,
    simclr_evaluation: Input[Artifact] = None,
    simclr_model: Input[Model] = None,
    npairs_evaluation: Input[Artifact] = None,
    npairs_model: Input[Model] = None,
) -> int:
    """In the best method's encoder space: test mistakes beside their nearest training images,
    and training images whose neighbours carry another label; returns how many are suspect."""
    from contrastive import tasks

    candidates = tasks.branch_candidates(
        baseline=(baseline_evaluation, baseline_model),
        supcon=(supcon_evaluation, supcon_model),
        simclr=(simclr_evaluation, simclr_model),
        npairs=(npairs_evaluation, npairs_model),
    )
    result = tasks.run_explain_neighbours(
        dataset, candidates, output_path=neighbours.path, suspects_path=suspect_labels.path
    )
    suspect_labels.metadata.update(count=result["suspects"]["count"], format="csv")
    return result["suspects"]["count"]
