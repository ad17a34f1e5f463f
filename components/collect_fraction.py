"""collect_fraction: one labelled fraction's evaluations added to the label-efficiency curve."""

from kfp.dsl import Artifact, Input, Output


def collect_fraction(
    curve: Output[Artifact],
    labeled_subset_fraction: float,
    previous_curve: Input[Artifact] = None,
    baseline_evaluation: Input[Artifact] = None,
    supcon_evaluation: Input[Artifact] = None,
    simclr_evaluation: Input[Artifact] = None,
    npairs_evaluation: Input[Artifact] = None,
):
    """Extend `previous_curve` (none: a new curve) with this fraction's test figures."""
    from contrastive import tasks

    evaluations = {
        name: evaluation.path
        for name, evaluation in (
            ("baseline", baseline_evaluation),
            ("supcon", supcon_evaluation),
            ("simclr", simclr_evaluation),
            ("npairs", npairs_evaluation),
        )
        if evaluation is not None
    }
    previous = previous_curve.path if previous_curve is not None else None
    tasks.run_collect_fraction(previous, labeled_subset_fraction, evaluations, curve.path)
