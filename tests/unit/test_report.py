"""contrastive.report: a self-contained, escaped HTML report and the Markdown summary."""

import base64
import html
import re

import pytest

from contrastive.report import SEED_REFERENCES, build_report, render_markdown

MALICIOUS = "<script>alert(1)</script>"
CLASS_NAMES = ["cat", "dog & wolf", MALICIOUS]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _method(accuracy, *, knn=None, pretrain=False):
    history = {
        "classifier": {
            "loss": [1.0, 0.6, 0.4],
            "accuracy": [0.5, 0.7, 0.8],
            "val_accuracy": [0.5, 0.6, 0.75],
        }
    }
    if pretrain:
        history["pretrain"] = {
            "loss": [5.0, 4.5],
            "contrastive_accuracy": [0.2, 0.4],
            "probe_accuracy": [0.5, 0.6],
            "val_knn_accuracy": [0.55, 0.65],
        }
    return {
        "test_accuracy": accuracy,
        "train_seconds": 120.5,
        "knn_accuracy": knn,
        "macro_f1": 0.9,
        "history": history,
        "confusion_matrix": [[8, 1, 1], [0, 9, 1], [2, 0, 8]],
        "per_class": {
            "precision": [0.8, 0.9, 0.8],
            "recall": [0.8, 0.9, 0.8],
            "f1": [0.8, 0.9, 0.8],
            "support": [10, 10, 10],
        },
        "embedding_2d": {
            "x": [0.0, 1.0, 2.0, 3.0],
            "y": [1.0, 0.0, 1.0, 2.0],
            "label": [0, 1, 2, 1],
        },
    }


def _summary():
    return {
        "run_id": "20261122-101500-ab12",
        "created_at": "2026-11-22T10:15:00Z",
        "profile": "quick",
        "config": {"train": {"epochs": 3, "method": "supcon"}, "model": {"encoder": "small_cnn"}},
        "parameters": {"epochs": 3, "batch_size": 256, "note": "<b>bold</b>"},
        "dataset": {
            "source": "fashion_mnist",
            "class_names": CLASS_NAMES,
            "image_shape": [28, 28, 1],
            "splits": {"train": 54000, "validation": 6000, "test": 10000},
        },
        "methods": {
            "baseline": _method(0.91),
            "supcon": _method(0.9234, knn=0.88, pretrain=True),
            "simclr": _method(0.8, knn=0.75, pretrain=True),
        },
        "best": "supcon",
        "decision": {
            "promoted": True,
            "candidate": "supcon",
            "candidate_accuracy": 0.9234,
            "champion_accuracy": 0.9,
            "margin": 0.002,
            "reason": "beats the champion by more than the margin",
        },
    }


@pytest.fixture(scope="module")
def preview_png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("preview") / "preview.png"
    Image.new("RGB", (16, 8), (200, 30, 30)).save(path)
    return path


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, preview_png):
    output = tmp_path_factory.mktemp("report") / "nested" / "report.html"
    path = build_report(_summary(), output, preview_png=preview_png)
    return path, path.read_text(encoding="utf-8")


def test_writes_one_html_file_where_asked(full_report):
    path, text = full_report
    assert path.name == "report.html" and path.is_file()
    assert text.startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o644


def test_accuracy_table_values_are_formatted(full_report):
    _, text = full_report
    for value in ("91.00", "92.34", "80.00", "88.00", "75.00", "0.900", "2 min 00 s"):
        assert value in text
    assert "—" in text  # the baseline has no kNN accuracy


def test_best_method_row_is_highlighted(full_report):
    _, text = full_report
    best_rows = re.findall(r'<tr class="best">(.*?)</tr>', text)
    assert len(best_rows) == 1
    assert "supcon" in best_rows[0] and "92.34" in best_rows[0]


def test_every_method_and_class_name_appears(full_report):
    _, text = full_report
    for name in ("baseline", "supcon", "simclr", "Cross-entropy baseline", "SupCon", "SimCLR"):
        assert name in text
    visible = IMAGE_URI.sub("", text)  # the page's text, not the base64 of its images
    names = [html.escape(name) for name in CLASS_NAMES]
    assert f"3: {', '.join(names)}" in visible  # the dataset's classes, in order
    for name in names:  # each class's row in the per-class table of each of the 3 methods
        assert visible.count(f"<tr><td>{name}</td>") == 3, name


def test_seed_references_are_shown_for_orientation(full_report):
    _, text = full_report
    for reference in SEED_REFERENCES:
        assert f"{reference.accuracy_percent:.2f}" in text
    assert "~94.90" in text
    assert "orientation only" in text


def test_decision_is_shown(full_report):
    _, text = full_report
    assert "Promoted" in text
    assert "beats the champion by more than the margin" in text
    assert "+2.34" in text  # candidate minus champion, in points


def test_figures_are_embedded_pngs(full_report):
    _, text = full_report
    payloads = IMAGE_URI.findall(text)
    # 3 methods x (curves, confusion matrix, embedding map) + the augmentation preview.
    assert len(payloads) == 10
    for payload in payloads:
        assert base64.b64decode(payload, validate=True).startswith(PNG_MAGIC)
    assert text.count("<img ") == len(payloads)


def test_nothing_is_loaded_from_the_network(full_report):
    _, text = full_report
    lowered = text.lower()
    for forbidden in ("http://", "https://", 'src="//', "src='//", "url(", "@import", "<script"):
        assert forbidden not in lowered
    assert "<link" not in lowered


def test_user_strings_are_escaped(full_report):
    _, text = full_report
    assert MALICIOUS not in text
    assert html.escape(MALICIOUS) in text
    assert "<b>bold</b>" not in text
    assert html.escape("<b>bold</b>") in text


def test_parameters_and_dataset_are_listed(full_report):
    _, text = full_report
    assert "encoder: small_cnn" in text  # config as YAML
    assert "batch_size" in text and "256" in text
    assert "28 × 28 × 1" in text
    assert "54,000" in text and "70,000" in text


def test_minimal_summary_renders_with_notes(tmp_path):
    summary = {
        "dataset": {"source": "fashion_mnist"},
        "methods": {"baseline": {"test_accuracy": 0.5}, "supcon": {"test_accuracy": 0.6}},
    }
    text = build_report(summary, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "50.00" in text and "60.00" in text
    assert "No promotion decision" in text
    assert "No training history" in text
    assert "No embedding map" in text
    assert "No augmentation preview" in text
    assert "<img" not in text
    # Without `best`, the highest test accuracy is highlighted.
    assert "supcon" in re.findall(r'<tr class="best">(.*?)</tr>', text)[0]


def test_malformed_fields_degrade_instead_of_failing(tmp_path):
    summary = {
        "dataset": {"class_names": ["a", "b"]},
        "methods": {
            "npairs": {
                "test_accuracy": None,
                "knn_accuracy": float("nan"),
                "history": {"pretrain": {"loss": []}, "classifier": "oops"},
                "confusion_matrix": [[1, 2, 3]],
                "per_class": None,
                "embedding_2d": {"x": [0.0, 1.0], "y": [1.0], "label": [0, 1]},
            }
        },
        "decision": {"promoted": False, "champion_accuracy": None},
    }
    path = build_report(summary, tmp_path / "report.html", preview_png=tmp_path / "absent.png")
    text = path.read_text(encoding="utf-8")
    assert "Not promoted" in text
    assert "could not be read" in text
    assert text.count("<img") == 1  # the one valid embedding point


def test_per_class_table_falls_back_to_the_confusion_matrix(tmp_path):
    summary = {"dataset": {}, "methods": {"baseline": {"confusion_matrix": [[3, 1], [0, 4]]}}}
    text = build_report(summary, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "0.750" in text  # class 0 recall 3/4
    assert "0.800" in text  # class 1 precision 4/5


def test_markdown_has_table_rows_and_decision():
    markdown = render_markdown(_summary())
    lines = markdown.splitlines()
    assert "| Method | Test accuracy (%) | Macro F1 | kNN accuracy (%) | Train time |" in lines
    assert "| Cross-entropy baseline | 91.00 | 0.900 | — | 2 min 00 s |" in lines
    assert "| **SupCon** (best) | 92.34 | 0.900 | 88.00 | 2 min 00 s |" in lines
    assert "| SimCLR | 80.00 | 0.900 | 75.00 | 2 min 00 s |" in lines
    decision = next(line for line in lines if line.startswith("**Decision:**"))
    assert "SupCon promoted" in decision and "92.34" in decision and "90.00" in decision
    assert "20261122-101500-ab12" in markdown


def test_markdown_handles_missing_fields_and_escapes():
    markdown = render_markdown({"run_id": "a|<b>", "methods": {"baseline": {}}})
    assert "| Cross-entropy baseline | — | — | — | — |" in markdown
    assert "**Decision:** none recorded." in markdown
    assert "<b>" not in markdown and "a\\|&lt;b&gt;" in markdown
