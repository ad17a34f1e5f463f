"""Numbers and text as the report shows them, and the summary read defensively.

A malformed summary field degrades to "missing" (shown as `MISSING`), never an exception.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import numpy as np

from contrastive import methods as method_registry
from contrastive import validation
from contrastive.evaluation import metrics_from_confusion_matrix

PHASE_ORDER = ("pretrain", "classifier")
# Keras logs the schedule's learning rate per epoch; on the accuracy axis it would flatten the
# curves that matter.
UNPLOTTED_KEYS = frozenset({"learning_rate", "lr"})
MISSING = "—"


def method_summary(result: dict) -> dict:
    """One method's entry of the summary, from its evaluation result."""
    return {
        "test_accuracy": result["accuracy"],
        "macro_f1": result.get("macro_f1"),
        "train_seconds": result.get("train_seconds"),
        # the compute precision the classifier was trained in (None: recorded before it was)
        "mixed_precision": result.get("mixed_precision"),
        "knn_accuracy": result.get("knn_accuracy"),
        "history": result.get("history", {}),
        "confusion_matrix": result.get("confusion_matrix"),
        "per_class": {k: result.get(k) for k in ("precision", "recall", "f1", "support")},
        "embedding_2d": result.get("embedding_2d"),
    }


def as_number(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def percent(value: Any) -> str:
    number = as_number(value)
    return MISSING if number is None else f"{100 * number:.2f}"


def fraction(value: Any) -> str:
    number = as_number(value)
    return MISSING if number is None else f"{number:.3f}"


def points(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:+.2f}"


def count(value: Any) -> str:
    number = as_number(value)
    return MISSING if number is None else f"{int(number):,}"


def duration(value: Any) -> str:
    seconds = as_number(value)
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def heat(f1: Any) -> str:
    """Cell background: white at F1 = 1, light red as F1 falls to 0."""
    number = as_number(f1)
    if number is None:
        return "transparent"
    deficit = min(max(1.0 - number, 0.0), 1.0)
    return f"rgba(207,34,46,{0.45 * deficit:.2f})"


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def markdown_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (and inert if the viewer renders HTML)."""
    return html.escape(str(value), quote=True).replace("|", "\\|").replace("\n", " ")


def mpl_text(value: Any) -> str:
    # A "$" would start matplotlib's math mode and may fail to parse.
    return str(value).replace("$", r"\$")


def mpl_legend(value: Any) -> str:
    # matplotlib hides legend entries whose label starts with "_".
    text = mpl_text(value)
    return " " + text if text.startswith("_") else text


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def plain_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def yaml_text(config: Any) -> str:
    import yaml

    # Through JSON first: tuples and non-YAML objects become lists and strings.
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, allow_unicode=True)


def in_method_order(names) -> list:
    """`names` in the registry's order (`contrastive.methods`), unknown ones after, sorted."""
    present = set(names)
    known = [name for name in method_registry.names() if name in present]
    return known + sorted(present - set(known), key=str)


def ordered_methods(summary: dict) -> dict[str, dict]:
    methods = as_dict(summary.get("methods"))
    return {str(name): as_dict(methods[name]) for name in in_method_order(methods)}


def best_method(summary: dict, methods: dict[str, dict]) -> str | None:
    best = summary.get("best")
    if best is not None and str(best) in methods:
        return str(best)
    scored = [
        (as_number(result.get("test_accuracy")), name)
        for name, result in methods.items()
        if as_number(result.get("test_accuracy")) is not None
    ]
    return max(scored)[1] if scored else None


def history_phases(history: Any) -> list[tuple[str, dict[str, list[float]]]]:
    """`[(phase, {metric: [float per epoch]})]`, known phases first, empty ones dropped."""
    history = as_dict(history)
    names = [p for p in PHASE_ORDER if p in history] + sorted(
        (p for p in history if p not in PHASE_ORDER), key=str
    )
    phases = []
    for phase in names:
        series = {}
        for key, values in as_dict(history[phase]).items():
            if str(key) in UNPLOTTED_KEYS:
                continue
            numbers = [as_number(value) for value in as_list(values)]
            if any(number is not None for number in numbers):
                series[str(key)] = [math.nan if n is None else n for n in numbers]
        if series:
            phases.append((str(phase), series))
    return phases


def confusion_matrix(value: Any) -> np.ndarray | None:
    try:
        confusion = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if (
        confusion.ndim != 2
        or confusion.size == 0
        or confusion.shape[0] != confusion.shape[1]
        or not np.all(np.isfinite(confusion))
        or np.any(confusion < 0)
    ):
        return None
    return confusion.astype(np.int64)


def per_class_metrics(result: dict) -> dict[str, list] | None:
    """The method's per-class lists, or ones derived from its confusion matrix."""
    keys = ("precision", "recall", "f1", "support")
    per_class = as_dict(result.get("per_class"))
    lists = {key: as_list(per_class.get(key)) for key in keys}
    count = max(len(values) for values in lists.values())
    if count:
        return {key: values + [None] * (count - len(values)) for key, values in lists.items()}
    confusion = confusion_matrix(result.get("confusion_matrix"))
    if confusion is None:
        return None
    metrics = metrics_from_confusion_matrix(confusion)
    return {key: metrics[key] for key in keys}


def embedding_points(value: Any) -> tuple[list, list, list] | None:
    """`(x, y, labels)` of the points with finite coordinates, or None when there are none."""
    embedding = as_dict(value)
    x = [as_number(v) for v in as_list(embedding.get("x"))]
    y = [as_number(v) for v in as_list(embedding.get("y"))]
    labels = [label_value(v) for v in as_list(embedding.get("label"))]
    count = min(len(x), len(y), len(labels))
    keep = [i for i in range(count) if x[i] is not None and y[i] is not None]
    if not keep:
        return None
    return [x[i] for i in keep], [y[i] for i in keep], [labels[i] for i in keep]


def label_value(value: Any) -> int | str:
    """An integer class index when the value is one (JSON may give 3.0), else its text."""
    number = as_number(value)
    return int(number) if number is not None and number.is_integer() else str(value)


def label_name(label: Any, class_names: list[str]) -> str:
    if validation.is_int(label) and 0 <= label < len(class_names):
        return class_names[label]
    return str(label)


def names_for(class_names: list[str], count: int) -> list[str]:
    return class_names if len(class_names) == count else [str(i) for i in range(count)]


def method_label(name: Any) -> str:
    """How the report names a method: its registered label, else its name."""
    method = method_registry.find(str(name))
    return method.label if method is not None else str(name)


def difference(decision: dict) -> float | None:
    candidate = as_number(decision.get("candidate_accuracy"))
    champion = as_number(decision.get("champion_accuracy"))
    if candidate is None or champion is None:
        return None
    return candidate - champion


def decision_sentence(decision: Any) -> str:
    if not isinstance(decision, dict) or not decision:
        return "none recorded."
    promoted = decision.get("promoted")
    verdict = {True: "promoted", False: "not promoted"}.get(promoted, "undecided")
    candidate = method_label(decision.get("candidate", "candidate"))
    text = f"{candidate} {verdict}: {percent(decision.get('candidate_accuracy'))} %"
    champion = as_number(decision.get("champion_accuracy"))
    if champion is None:
        text += " (no champion yet)"
    else:
        text += f" vs champion {percent(champion)} %"
    margin = as_number(decision.get("margin"))
    if margin is not None:
        text += f", required margin {percent(margin)} points"
    reason = decision.get("reason")
    return text + (f" ({reason})." if reason else ".")
