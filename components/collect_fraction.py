"""collect_fraction: one labelled fraction's evaluations added to the label-efficiency curve.

A template (`components.branches`): `branches` stands for one evaluation per method compiled
in, the inputs `<method>_evaluation`."""

from kfp.dsl import Artifact, Input, Output

# What each method's branch hands over: input suffix -> (annotation, what it is).
BRANCH_INPUTS = {"evaluation": ("Input[Artifact]", "evaluation at this labelled fraction")}


def collect_fraction(
    curve: Output[Artifact],
    labeled_subset_fraction: float,
    branches: dict,
    previous_curve: Input[Artifact] = None,
):
    """Extend `previous_curve` (none: a new curve) with this fraction's test figures."""
    from contrastive import tasks

    evaluations = {method: inputs["evaluation"].path for method, inputs in branches.items()}
    previous = previous_curve.path if previous_curve is not None else None
    tasks.run_collect_fraction(previous, labeled_subset_fraction, evaluations, curve.path)
