"""contrastive.label_efficiency (the curve, keyed by fraction) and its report section."""

import base64
import re

import pytest

from contrastive import label_efficiency
from contrastive.report import build_report, render_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _evaluations(baseline, simclr):
    return {
        "baseline": {"accuracy": baseline, "macro_f1": baseline - 0.01, "knn_accuracy": None},
        "simclr": {"accuracy": simclr, "macro_f1": simclr - 0.01, "knn_accuracy": 0.5},
    }


def _curve(seed_offset=0.0):
    curve = None
    for fraction, baseline, simclr in ((1.0, 0.88, 0.82), (0.01, 0.70, 0.74), (0.1, 0.80, 0.79)):
        curve = label_efficiency.add_fraction(
            curve, fraction, _evaluations(baseline + seed_offset, simclr + seed_offset)
        )
    return curve


def test_a_curve_is_keyed_and_ordered_by_fraction():
    curve = _curve()
    assert list(curve["fractions"]) == ["0.01", "0.1", "1"]
    assert curve["fractions"]["0.01"]["simclr"]["test_accuracy"] == [0.74]
    assert label_efficiency.by_fraction(curve)["0.1"] == {
        "baseline": {"test_accuracy": 0.8, "macro_f1": 0.79},
        "simclr": {"test_accuracy": 0.79, "macro_f1": 0.78, "knn_accuracy": 0.5},
    }
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]. Received: fraction=0"):
        label_efficiency.add_fraction(curve, 0, {})


def test_merged_runs_give_mean_and_sample_std():
    merged = label_efficiency.merge([_curve(0.0), _curve(0.02), _curve(0.04)])
    rows = {(row["fraction"], row["method"]): row for row in label_efficiency.summary_rows(merged)}
    row = rows[(0.01, "simclr")]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.76)
    assert row["std"] == pytest.approx(0.02)  # sample std of 0.74, 0.76, 0.78
    assert [key[0] for key in rows] == [0.01, 0.01, 0.1, 0.1, 1.0, 1.0]


def test_the_report_has_the_chart_and_the_table_beside_seed_003(tmp_path):
    merged = label_efficiency.merge([_curve(0.0), _curve(0.02)])
    summary = {
        "run_id": "few",
        "methods": {"baseline": {"test_accuracy": 0.89}, "simclr": {"test_accuracy": 0.83}},
        "dataset": {"class_names": ["a", "b"]},
        "label_efficiency": merged,
    }
    page = build_report(summary, tmp_path / "report.html").read_text()
    section = page[page.index('<section id="label-efficiency">') :]
    section = section[: section.index("</section>")]
    (chart,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section)
    assert base64.b64decode(chart).startswith(PNG_MAGIC)
    for label, cell in (("1 %", "75.00 ± 1.41"), ("10 %", "81.00 ± 1.41"), ("100 %", "89.00")):
        assert f"<td>{label}</td>" in section
        assert cell in section
    assert "STL-10" in section and "59.90" in section and "65.32" in section
    markdown = render_markdown(summary)
    assert "| 1 % | 71.00 ± 1.41 | 75.00 ± 1.41 |" in markdown
    no_curve = build_report({**summary, "label_efficiency": None}, tmp_path / "plain.html")
    assert "label-efficiency" not in no_curve.read_text()
