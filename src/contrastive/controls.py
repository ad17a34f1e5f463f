"""Each contrastive method against its control (`contrastive.methods`, `Method.control`: the
same encoder, untrained, the same classifier): does pretraining add anything the architecture
does not give for free?

`against_controls` compares test accuracies of one run (or one labelled fraction);
`curve_against_controls` does so at every fraction of a label-efficiency curve; `sentences`
says the result plainly, one sentence per method, for the report. Plain dicts, JSON as they
are (results.json's `controls` and `controls_by_fraction`).
"""

from __future__ import annotations

import math

from contrastive import label_efficiency
from contrastive import methods as method_registry


def against_controls(accuracies: dict[str, float | None]) -> dict[str, dict]:
    """`{method: comparison}` for every method of `accuracies` that pretrains with a loss,
    when a control is among them (else `{}`).

    Args:
        accuracies: method name -> test accuracy in [0, 1] (None or non-numbers skipped).

    Returns:
        Per method: `control` (its name), `accuracy`, `control_accuracy`, `difference`
        (accuracy - control accuracy, in [-1, 1]) and `beats_control` (difference > 0).
    """
    numbers = {name: value for name, value in accuracies.items() if _is_number(value)}
    control = next((name for name in method_registry.controls() if name in numbers), None)
    if control is None:
        return {}
    out = {}
    for name, accuracy in numbers.items():
        method = method_registry.find(name)
        if method is None or method.loss is None:
            continue
        difference = accuracy - numbers[control]
        out[name] = {
            "control": control,
            "accuracy": round(accuracy, 4),
            "control_accuracy": round(numbers[control], 4),
            "difference": round(difference, 4),
            "beats_control": difference > 0,
        }
    return out


def curve_against_controls(curve: dict | None) -> dict[str, dict[str, dict]]:
    """`{fraction key: against_controls(mean test accuracy per method)}` of a label-efficiency
    curve (`contrastive.label_efficiency`); fractions without a control left out."""
    out = {}
    for key, figures in label_efficiency.by_fraction(curve or {}).items():
        compared = against_controls(
            {method: values.get("test_accuracy") for method, values in figures.items()}
        )
        if compared:
            out[key] = compared
    return out


def sentences(comparison: dict[str, dict], where: str = "") -> list[str]:
    """One plain sentence per method of `against_controls`' result, e.g. "SimCLR does not
    beat its random-init control: 76.10 % against 76.50 % (-0.40 points)." `where` ("at 1 %
    labels") is inserted after the verb phrase when given."""
    out = []
    for name, entry in comparison.items():
        label = _label(name)
        control = _label(entry["control"])
        at = f" {where}" if where else ""
        figures = (
            f"{100 * entry['accuracy']:.2f} % against {100 * entry['control_accuracy']:.2f} % "
            f"({100 * entry['difference']:+.2f} points)"
        )
        verdict = "beats" if entry["beats_control"] else "does not beat"
        out.append(f"{label} {verdict} its control ({control}){at}: {figures}.")
    return out


def _label(name: str) -> str:
    method = method_registry.find(name)
    return method.label if method is not None else str(name)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
