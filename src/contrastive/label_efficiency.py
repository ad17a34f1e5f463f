"""The label-efficiency curve: test figures per labelled fraction and method (seed 003's
question, "when does pretraining on unlabelled images pay?").

A curve is a plain dict, JSON as it is, keyed by fraction written as text (`"0.01"`):

    {"fractions": {"0.01": {"baseline": {"test_accuracy": [0.72, ...], "macro_f1": [...],
                                         "knn_accuracy": [...]}, "supcon": {...}}, ...}}

Each figure is a list, one value per run (a pipeline run adds one; several seeds, `merge`d,
give error bars). Fractions are ordered by value wherever they are listed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

FIGURES = ("test_accuracy", "macro_f1", "knn_accuracy")


def fraction_key(fraction: float) -> str:
    """The text key of a fraction: `0.01` -> "0.01", `1.0` -> "1"."""
    return f"{float(fraction):g}"


def percent_label(fraction: float | str) -> str:
    """`0.01` -> "1 %", `0.005` -> "0.5 %"."""
    return f"{100 * float(fraction):g} %"


def add_fraction(curve: dict | None, fraction: float, evaluations: dict[str, dict]) -> dict:
    """A copy of `curve` (None: an empty one) with one run at `fraction`.

    Args:
        fraction: the labelled fraction, in (0, 1].
        evaluations: method name -> its evaluation result (`accuracy`, `macro_f1`,
            `knn_accuracy`, as `tasks.run_evaluate` returns them).
    """
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be in (0, 1]. Received: fraction={fraction!r}")
    curve = merge([curve or {}])
    methods = curve["fractions"].setdefault(fraction_key(fraction), {})
    for method, evaluation in evaluations.items():
        figures = methods.setdefault(method, {name: [] for name in FIGURES})
        values = {
            "test_accuracy": evaluation.get("accuracy"),
            "macro_f1": evaluation.get("macro_f1"),
            "knn_accuracy": evaluation.get("knn_accuracy"),
        }
        for name in FIGURES:
            figures.setdefault(name, []).append(values[name])
    return _ordered(curve)


def merge(curves: Iterable[dict]) -> dict:
    """One curve holding every run of `curves` (e.g. one pipeline run per seed)."""
    merged: dict = {"fractions": {}}
    for curve in curves:
        for key, methods in (curve or {}).get("fractions", {}).items():
            target = merged["fractions"].setdefault(fraction_key(float(key)), {})
            for method, figures in methods.items():
                into = target.setdefault(method, {name: [] for name in FIGURES})
                for name, values in figures.items():
                    into.setdefault(name, []).extend(values)
    return _ordered(merged)


def summary_rows(curve: dict, figure: str = "test_accuracy") -> list[dict]:
    """One row per fraction and method: `fraction`, `method`, `mean`, `std` (sample std,
    0 for one run), `n`; rows without a number are left out."""
    rows = []
    for key, methods in (curve or {}).get("fractions", {}).items():
        for method, figures in methods.items():
            values = [v for v in figures.get(figure, []) if _is_number(v)]
            if not values:
                continue
            rows.append(
                {
                    "fraction": float(key),
                    "method": method,
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "n": len(values),
                }
            )
    return sorted(rows, key=lambda row: row["fraction"])


def by_fraction(curve: dict) -> dict[str, dict[str, dict[str, float]]]:
    """`{fraction key: {method: {figure: mean over runs}}}`, the form of results.json."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for figure in FIGURES:
        for row in summary_rows(curve, figure):
            methods = out.setdefault(fraction_key(row["fraction"]), {})
            methods.setdefault(row["method"], {})[figure] = round(row["mean"], 4)
    return {key: out[key] for key in sorted(out, key=float)}


def _ordered(curve: dict) -> dict:
    fractions = curve.get("fractions", {})
    return {"fractions": {key: fractions[key] for key in sorted(fractions, key=float)}}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
