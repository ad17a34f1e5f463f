"""explain_neighbours: the best classifier's nearest-neighbour explanations and suspect labels.

A template (`components.branches`): `branches` stands for one evaluation and one classifier
per method compiled in, the inputs `<method>_evaluation` and `<method>_model`, as
`compare_and_report` takes them."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output  # noqa: F401  (BRANCH_INPUTS)

from components.compare_and_report import BRANCH_INPUTS  # noqa: F401  (branches.for_methods)


def explain_neighbours(
    dataset: Input[Dataset],
    neighbours: Output[Artifact],
    suspect_labels: Output[Dataset],
    branches: dict,
) -> int:
    """In the best method's encoder space: test mistakes beside their nearest training images,
    and training images whose neighbours carry another label; returns how many are suspect."""
    from contrastive import tasks

    candidates = {
        method: (inputs["evaluation"].path, inputs["model"].path)
        for method, inputs in branches.items()
    }
    result = tasks.run_explain_neighbours(
        dataset, candidates, output_path=neighbours.path, suspects_path=suspect_labels.path
    )
    suspect_labels.metadata.update(count=result["suspects"]["count"], format="csv")
    return result["suspects"]["count"]
