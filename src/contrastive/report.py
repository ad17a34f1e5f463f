"""The run report: one self-contained HTML file, and a short Markdown summary for KFP.

`build_report(summary, path)` writes a single HTML page that opens with no network: every
figure is a base64 PNG data URI, the CSS is inline, there is no script, no font and no link to
any other host (a Content-Security-Policy meta tag forbids loading anything but data: images).
Every string taken from the summary is HTML-escaped.

The summary is the dict written by the pipeline's compare step (see `build_report`). Only
`methods` and `dataset` are expected; every other field may be missing and its section then
says so instead of failing. matplotlib is imported inside the plotting functions and drives a
bare `Figure` (Agg canvas), so no GUI backend and no pyplot global state are involved.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contrastive.evaluation import metrics_from_confusion_matrix, top_confusions


@dataclass(frozen=True)
class SeedReference:
    """A published accuracy from the seed projects or the literature, for orientation only."""

    source: str
    setup: str
    method: str
    accuracy_percent: float
    approximate: bool = False


# Test accuracies of the seed projects and the SupCon paper. They come from other datasets,
# encoders and budgets than a run of this pipeline; the report shows them beside its own numbers
# as a sense of scale, never as a target to compare against.
SEED_REFERENCES: tuple[SeedReference, ...] = (
    SeedReference("seeds 000/001", "keras-io SupCon, CIFAR-10, ResNet50V2, 50 epochs",
                  "cross-entropy", 78.24),
    SeedReference("seeds 000/001", "keras-io SupCon, CIFAR-10, ResNet50V2, 50 epochs",
                  "SupCon (npairs)", 81.62),
    SeedReference("seed 002", "small CNN, CIFAR-10", "cross-entropy", 71.14),
    SeedReference("seed 002", "small CNN, CIFAR-10", "SupCon (npairs)", 72.9),
    SeedReference("seed 003", "SimCLR, STL-10", "supervised baseline", 59.90),
    SeedReference("seed 003", "SimCLR, STL-10", "linear probe (pretraining)", 56.65),
    SeedReference("seed 003", "SimCLR, STL-10", "fine-tuned", 65.32),
    SeedReference("SupCon paper", "Khosla et al. 2020, CIFAR-10, ResNet-50", "SupCon", 96.0),
    SeedReference("SupCon paper", "Khosla et al. 2020, CIFAR-10, ResNet-50", "cross-entropy",
                  95.0),
    SeedReference("literature", "Fashion-MNIST, ResNet-18", "cross-entropy", 94.9,
                  approximate=True),
)  # fmt: skip

METHOD_LABELS = {
    "baseline": "Cross-entropy baseline",
    "supcon": "SupCon",
    "simclr": "SimCLR",
    "npairs": "N-pairs (seeds' SupCon)",
}
_METHOD_ORDER = ("baseline", "supcon", "simclr", "npairs")
_PHASE_ORDER = ("pretrain", "classifier")
# Keras logs the schedule's learning rate per epoch; on the accuracy axis it would flatten the
# curves that matter.
_UNPLOTTED_KEYS = frozenset({"learning_rate", "lr"})
_DPI = 90
_MAX_ANNOTATED_CLASSES = 20
_MISSING = "—"


def build_report(
    summary: dict, output_path: str | Path, *, preview_png: str | Path | None = None
) -> Path:
    """Write the run report as one self-contained HTML file and return its path.

    Args:
        summary: the compare step's dict: `run_id`, `created_at`, `profile`, `config`,
            `parameters`, `dataset` (`source`, `class_names`, `image_shape`, `splits`),
            `methods` (`{name: {test_accuracy, macro_f1, knn_accuracy, train_seconds, history,
            confusion_matrix, per_class, embedding_2d}}`), `best` and `decision`. Any field but
            `methods` and `dataset` may be absent; absent method fields show as "—".
        output_path: where to write the HTML; parent folders are created. Written atomically
            (a temp file renamed into place), so a reader never sees half a report.
        preview_png: optional augmentation preview image (PNG or JPEG) to embed.

    Returns:
        The path of the written file.
    """
    summary = summary if isinstance(summary, dict) else {}
    methods = _ordered_methods(summary)
    dataset = _as_dict(summary.get("dataset"))
    class_names = [str(name) for name in _as_list(dataset.get("class_names"))]
    best = _best_method(summary, methods)

    sections = [
        ("accuracy", "Accuracy", _accuracy_section(methods, best)),
        ("decision", "Promotion decision", _decision_section(summary.get("decision"))),
        ("curves", "Training curves", _curves_section(methods)),
        ("confusion", "Confusion matrices", _confusion_section(methods, class_names)),
        ("per-class", "Per-class metrics", _per_class_section(methods, class_names)),
        ("augmentation", "Augmentation preview", _preview_section(preview_png)),
        ("embeddings", "Test embeddings (2-D)", _embedding_section(methods, class_names)),
        ("parameters", "Run parameters", _parameters_section(summary)),
        ("dataset", "Dataset", _dataset_section(dataset)),
    ]
    page = _page(summary, best, sections)

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
        os.chmod(temp_name, 0o644)  # mkstemp makes it owner-only; a report is meant to be read
        os.replace(temp_name, output_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return output_path


def render_markdown(summary: dict) -> str:
    """A short Markdown summary (accuracy table and promotion decision) for a KFP artifact."""
    summary = summary if isinstance(summary, dict) else {}
    methods = _ordered_methods(summary)
    best = _best_method(summary, methods)
    dataset = _as_dict(summary.get("dataset"))

    heading = f"### Contrastive run {_md(summary.get('run_id', 'unnamed'))}"
    facts = [
        f"profile **{_md(summary['profile'])}**" if summary.get("profile") else None,
        f"dataset **{_md(dataset['source'])}**" if dataset.get("source") else None,
        _md(summary["created_at"]) if summary.get("created_at") else None,
    ]
    lines = [heading, ""]
    if any(facts):
        lines += [" · ".join(fact for fact in facts if fact), ""]
    lines += [
        "| Method | Test accuracy (%) | Macro F1 | kNN accuracy (%) | Train time |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in methods.items():
        label = _md(_method_label(name))
        label = f"**{label}** (best)" if name == best else label
        lines.append(
            f"| {label} | {_percent(result.get('test_accuracy'))} "
            f"| {_fraction(result.get('macro_f1'))} | {_percent(result.get('knn_accuracy'))} "
            f"| {_duration(result.get('train_seconds'))} |"
        )
    if not methods:
        lines.append(f"| {_MISSING} | {_MISSING} | {_MISSING} | {_MISSING} | {_MISSING} |")
    lines += ["", f"**Decision:** {_md(_decision_sentence(summary.get('decision')))}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Sections. Each returns an HTML fragment; every summary string passes through `_e`.


def _accuracy_section(methods: dict[str, dict], best: str | None) -> str:
    if not methods:
        ours = _note("No method results in this summary.")
    else:
        rows = []
        for name, result in methods.items():
            badge = ' <span class="badge">best</span>' if name == best else ""
            row_class = ' class="best"' if name == best else ""
            rows.append(
                f"<tr{row_class}><td>{_e(_method_label(name))} <code>{_e(name)}</code>{badge}"
                f"</td><td class=num>{_percent(result.get('test_accuracy'))}</td>"
                f"<td class=num>{_fraction(result.get('macro_f1'))}</td>"
                f"<td class=num>{_percent(result.get('knn_accuracy'))}</td>"
                f"<td class=num>{_duration(result.get('train_seconds'))}</td></tr>"
            )
        ours = (
            "<table><caption>This run (test split)</caption><thead><tr><th>Method</th>"
            "<th>Test accuracy (%)</th><th>Macro F1</th><th>kNN accuracy (%)</th>"
            "<th>Train time</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    references = _reference_table()
    note = _note(
        "The reference figures come from the seed projects and the literature, measured on "
        "other datasets, encoders and training budgets than this run: they give a sense of "
        "scale, not a target this run should match."
    )
    return f'<div class="side-by-side">{ours}{references}</div>{note}'


def _reference_table() -> str:
    """SEED_REFERENCES grouped by source and setup (one cell spanning the group's rows)."""
    groups: dict[tuple[str, str], list[SeedReference]] = {}
    for reference in SEED_REFERENCES:
        groups.setdefault((reference.source, reference.setup), []).append(reference)
    rows = []
    for (source, setup), references in groups.items():
        for position, reference in enumerate(references):
            head = ""
            if position == 0:
                head = (
                    f'<td rowspan="{len(references)}">{_e(source)}'
                    f"<br><span class=small>{_e(setup)}</span></td>"
                )
            prefix = "~" if reference.approximate else ""
            rows.append(
                f"<tr>{head}<td>{_e(reference.method)}</td>"
                f"<td class=num>{prefix}{reference.accuracy_percent:.2f}</td></tr>"
            )
    return (
        "<table class=reference><caption>Reference figures (other datasets and encoders, "
        "for orientation only)</caption><thead><tr><th>Source</th><th>Method</th>"
        "<th>Accuracy (%)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _decision_section(decision: Any) -> str:
    if not isinstance(decision, dict) or not decision:
        return _note("No promotion decision was recorded for this run.")
    promoted = decision.get("promoted")
    verdict = {True: "Promoted", False: "Not promoted"}.get(promoted, "Undecided")
    style = {True: "promoted", False: "kept"}.get(promoted, "undecided")
    champion = decision.get("champion_accuracy")
    candidate = decision.get("candidate")
    champion_text = "none (no champion yet)" if _number(champion) is None else _percent(champion)
    rows = [
        ("Candidate", _e(_method_label(candidate)) if candidate else _MISSING),
        ("Candidate accuracy (%)", _percent(decision.get("candidate_accuracy"))),
        ("Champion accuracy (%)", champion_text),
        ("Difference (points)", _points(_difference(decision))),
        ("Required margin (points)", _margin(decision.get("margin"))),
        ("Reason", _e(decision.get("reason") or _MISSING)),
    ]
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    return f'<div class="decision {style}"><strong>{verdict}</strong><table>{table}</table></div>'


def _curves_section(methods: dict[str, dict]) -> str:
    parts = []
    for name, result in methods.items():
        phases = _history_phases(result.get("history"))
        title = f"<h3>{_e(_method_label(name))}</h3>"
        if not phases:
            parts.append(title + _note("No training history recorded."))
            continue
        parts.append(title + _image(_plot_history(_method_label(name), phases), name))
    return "".join(parts) or _note("No method results in this summary.")


def _confusion_section(methods: dict[str, dict], class_names: list[str]) -> str:
    cards = []
    for name, result in methods.items():
        title = f"<h3>{_e(_method_label(name))}</h3>"
        confusion = _confusion(result.get("confusion_matrix"))
        if confusion is None:
            cards.append(f'<div class="card">{title}{_note("No confusion matrix.")}</div>')
            continue
        names = _names_for(class_names, len(confusion))
        figure = _image(_plot_confusion(_method_label(name), confusion, names), name)
        mistakes = top_confusions(confusion, names, k=5)
        if mistakes:
            items = "".join(
                f"<li>{_e(m['true'])} → {_e(m['predicted'])}: {m['count']} "
                f"({100 * m['rate']:.1f} % of {_e(m['true'])})</li>"
                for m in mistakes
            )
            figure += f"<p class=small>Most frequent confusions:</p><ol class=small>{items}</ol>"
        cards.append(f'<div class="card">{title}{figure}</div>')
    caption = _note(
        "Rows are true classes, columns predicted classes; cells show counts and are shaded by "
        "the fraction of the true class (recall per row)."
    )
    return (
        (f'<div class="cards">{"".join(cards)}</div>' + caption)
        if cards
        else _note("No method results in this summary.")
    )


def _per_class_section(methods: dict[str, dict], class_names: list[str]) -> str:
    cards = []
    for name, result in methods.items():
        title = f"<h3>{_e(_method_label(name))}</h3>"
        per_class = _per_class(result)
        if per_class is None:
            cards.append(f'<div class="card">{title}{_note("No per-class metrics.")}</div>')
            continue
        count = len(per_class["f1"])
        names = _names_for(class_names, count)
        rows = []
        for index in range(count):
            f1 = per_class["f1"][index]
            shade = "" if f1 is None else f' style="background:{_heat(f1)}"'
            rows.append(
                f"<tr><td>{_e(names[index])}</td>"
                f"<td class=num>{_fraction(per_class['precision'][index])}</td>"
                f"<td class=num>{_fraction(per_class['recall'][index])}</td>"
                f"<td class=num{shade}>{_fraction(f1)}</td>"
                f"<td class=num>{_count(per_class['support'][index])}</td></tr>"
            )
        table = (
            "<table><thead><tr><th>Class</th><th>Precision</th><th>Recall</th><th>F1</th>"
            "<th>Support</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
        cards.append(f'<div class="card">{title}{table}</div>')
    return (
        f'<div class="cards">{"".join(cards)}</div>'
        if cards
        else _note("No method results in this summary.")
    )


def _preview_section(preview_png: str | Path | None) -> str:
    if preview_png is None:
        return _note("No augmentation preview was given.")
    path = Path(preview_png)
    try:
        data = path.read_bytes()
    except OSError as error:
        return _note(f"Augmentation preview {path} could not be read: {error.strerror}.")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        return _note(f"Augmentation preview {path} is neither a PNG nor a JPEG image.")
    caption = _note("Rows: original images, weak augmentation, then two strong views.")
    return _image(_data_uri(data, mime), "augmentation preview", wide=False) + caption


def _embedding_section(methods: dict[str, dict], class_names: list[str]) -> str:
    cards = []
    for name, result in methods.items():
        title = f"<h3>{_e(_method_label(name))}</h3>"
        embedding = _embedding(result.get("embedding_2d"))
        if embedding is None:
            cards.append(f'<div class="card">{title}{_note("No embedding map.")}</div>')
            continue
        figure = _plot_embedding(_method_label(name), *embedding, class_names)
        cards.append(f'<div class="card">{title}{_image(figure, name)}</div>')
    caption = _note(
        "Test-set encoder features projected onto their first two principal components, "
        "coloured by true class. Well-separated clusters mean a linear classifier has an easy job."
    )
    return (
        (f'<div class="cards">{"".join(cards)}</div>' + caption)
        if cards
        else _note("No method results in this summary.")
    )


def _parameters_section(summary: dict) -> str:
    parts = []
    parameters = _as_dict(summary.get("parameters"))
    if parameters:
        rows = "".join(
            f"<tr><th>{_e(key)}</th><td><code>{_e(_plain(value))}</code></td></tr>"
            for key, value in parameters.items()
        )
        parts.append(f"<h3>Pipeline parameters</h3><table class=kv>{rows}</table>")
    config = summary.get("config")
    if config:
        parts.append(f"<h3>Configuration</h3><pre>{_e(_yaml(config))}</pre>")
    return "".join(parts) or _note("No run parameters were recorded.")


def _dataset_section(dataset: dict) -> str:
    if not dataset:
        return _note("No dataset description in this summary.")
    rows = []
    if dataset.get("source") is not None:
        rows.append(("Source", f"<code>{_e(dataset['source'])}</code>"))
    shape = _as_list(dataset.get("image_shape"))
    if shape:
        rows.append(("Image shape", _e(" × ".join(str(size) for size in shape))))
    names = _as_list(dataset.get("class_names"))
    if names:
        rows.append(("Classes", f"{len(names)}: " + ", ".join(_e(name) for name in names)))
    splits = _as_dict(dataset.get("splits"))
    for split, count in splits.items():
        rows.append((f"{_e(split)} examples", _count(count)))
    numbers = [_number(count) for count in splits.values()]
    if splits and all(number is not None for number in numbers):
        rows.append(("Total examples", _count(sum(numbers))))
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    return f"<table class=kv>{table}</table>"


def _page(summary: dict, best: str | None, sections: list[tuple[str, str, str]]) -> str:
    run_id = summary.get("run_id", "unnamed run")
    facts = [("Run", run_id)]
    for key, label in (("profile", "Profile"), ("created_at", "Created")):
        if summary.get(key) is not None:
            facts.append((label, summary[key]))
    source = _as_dict(summary.get("dataset")).get("source")
    if source is not None:
        facts.append(("Dataset", source))
    if best is not None:
        facts.append(("Best", _method_label(best)))
    header = " · ".join(f"{label} <strong>{_e(value)}</strong>" for label, value in facts)
    navigation = " ".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{title}</h2>{content}</section>'
        for key, title, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Contrastive run report: {_e(run_id)}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>Contrastive run report</h1><p>{header}</p>"
        f"<nav>{navigation}</nav></header>{body}"
        "<footer>Generated by <code>contrastive.report</code>. Self-contained: no network "
        "access needed.</footer></body></html>\n"
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1440px;padding:0 24px 40px;color:#1f2328;background:#fff;font-size:14px}
header{border-bottom:2px solid #d0d7de;padding:12px 0 8px}
h1{margin:8px 0 4px;font-size:24px}h2{margin:28px 0 10px;font-size:19px;
 border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{margin:14px 0 6px;font-size:15px}
nav a{margin-right:12px;color:#0969da;text-decoration:none;font-size:13px}
table{border-collapse:collapse;margin:4px 0 10px}caption{text-align:left;font-weight:600;
 padding:4px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#dafbe1;font-weight:600}
.badge{background:#1a7f37;color:#fff;border-radius:8px;padding:1px 7px;font-size:11px}
.side-by-side{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
table.reference{font-size:12px;color:#57606a}
.note{color:#57606a;font-size:12px;margin:4px 0 8px}.small{font-size:12px;margin:4px 0}
span.small{font-size:11px;color:#6e7781}
ol.small{padding-left:22px}
.cards{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.card{border:1px solid #d0d7de;border-radius:6px;padding:4px 12px 8px;max-width:100%}
img{max-width:100%;height:auto}img.wide{display:block}
.decision{border-left:5px solid #8c959f;background:#f6f8fa;padding:8px 14px;border-radius:4px}
.decision.promoted{border-color:#1a7f37;background:#f0fff4}
.decision.kept{border-color:#bf8700;background:#fff8e5}
.decision strong{font-size:16px}.decision table{margin-top:6px}
table.kv th{background:#f6f8fa;font-weight:600;white-space:nowrap}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:10px;font-size:12px;overflow:auto;
 max-height:480px}
footer{margin-top:32px;color:#8c959f;font-size:12px}
"""


# ---------------------------------------------------------------------------------------------
# Figures. Each builds a matplotlib Figure and returns it as a PNG data URI.


def _plot_history(method_label: str, phases: list[tuple[str, dict[str, list[float]]]]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.9 * len(phases)), dpi=_DPI, layout="constrained")
    axes = figure.subplots(len(phases), 2, squeeze=False)
    for row, (phase, series) in enumerate(phases):
        loss_axis, metric_axis = axes[row]
        panels = ((loss_axis, "loss", True), (metric_axis, "metrics", False))
        for axis, kind, wants_loss in panels:
            plotted = False
            for key, values in series.items():
                if ("loss" in key) != wants_loss:
                    continue
                epochs = range(1, len(values) + 1)
                marker = "o" if len(values) <= 30 else None
                axis.plot(epochs, values, marker=marker, markersize=3, label=_mpl_text(key))
                plotted = True
            if not plotted:
                axis.set_axis_off()
                continue
            axis.set_title(f"{_mpl_text(phase)}: {kind}", fontsize=10)
            axis.set_xlabel("epoch", fontsize=9)
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.tick_params(labelsize=8)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    return _figure_uri(figure)


def _plot_confusion(method_label: str, confusion, class_names: list[str]) -> str:
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    num_classes = counts.shape[0]
    support = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    side = min(max(3.0, 0.42 * num_classes + 1.6), 12.0)
    figure = Figure(figsize=(side + 0.6, side), dpi=_DPI, layout="constrained")
    axis = figure.subplots()
    axis.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    if num_classes <= 40:
        labels = [_mpl_text(name) for name in class_names]
        axis.set_xticks(range(num_classes), labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(num_classes), labels, fontsize=8)
    if num_classes <= _MAX_ANNOTATED_CLASSES:
        font_size = 8 if num_classes <= 12 else 6
        for true_index in range(num_classes):
            for predicted_index in range(num_classes):
                dark = fraction[true_index, predicted_index] > 0.55
                axis.text(
                    predicted_index,
                    true_index,
                    str(counts[true_index, predicted_index]),
                    ha="center",
                    va="center",
                    fontsize=font_size,
                    color="white" if dark else "#1f2328",
                )
    axis.set_xlabel("predicted class", fontsize=9)
    axis.set_ylabel("true class", fontsize=9)
    return _figure_uri(figure)


def _plot_embedding(method_label: str, x, y, labels, class_names: list[str]) -> str:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    # Integer labels first, in order, then any string labels; a mixed list must still sort.
    classes = sorted(
        set(labels), key=lambda v: (isinstance(v, str), 0 if isinstance(v, str) else v, str(v))
    )
    if len(classes) <= 10:
        colours = colormaps["tab10"].colors
    elif len(classes) <= 20:
        colours = colormaps["tab20"].colors
    else:
        colours = colormaps["turbo"](np.linspace(0.0, 1.0, len(classes)))
    figure = Figure(figsize=(5.6, 3.9), dpi=_DPI, layout="constrained")
    axis = figure.subplots()
    x, y = np.asarray(x), np.asarray(y)
    for position, label in enumerate(classes):
        mask = np.array([value == label for value in labels])
        name = _label_name(label, class_names)
        axis.scatter(
            x[mask], y[mask], s=6, alpha=0.7, color=colours[position], label=_mpl_legend(name)
        )
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("PC 1", fontsize=9)
    axis.set_ylabel("PC 2", fontsize=9)
    if len(classes) <= 30:
        axis.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8,
            markerscale=2.5,
            frameon=False,
        )
    return _figure_uri(figure)


def _figure_uri(figure) -> str:
    buffer = io.BytesIO()
    # No "Software" text chunk: it would carry matplotlib's web address into the file.
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return _data_uri(buffer.getvalue(), "image/png")


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _image(uri: str, alt: str, wide: bool = True) -> str:
    css_class = ' class="wide"' if wide else ""
    return f'<img src="{uri}" alt="{_e(alt)}"{css_class}>'


# ---------------------------------------------------------------------------------------------
# Reading the summary defensively: a malformed field degrades to "missing", never an exception.


def _ordered_methods(summary: dict) -> dict[str, dict]:
    methods = _as_dict(summary.get("methods"))
    known = [name for name in _METHOD_ORDER if name in methods]
    others = sorted((name for name in methods if name not in _METHOD_ORDER), key=str)
    return {str(name): _as_dict(methods[name]) for name in known + others}


def _best_method(summary: dict, methods: dict[str, dict]) -> str | None:
    best = summary.get("best")
    if best is not None and str(best) in methods:
        return str(best)
    scored = [
        (_number(result.get("test_accuracy")), name)
        for name, result in methods.items()
        if _number(result.get("test_accuracy")) is not None
    ]
    return max(scored)[1] if scored else None


def _history_phases(history: Any) -> list[tuple[str, dict[str, list[float]]]]:
    """`[(phase, {metric: [float per epoch]})]`, known phases first, empty ones dropped."""
    history = _as_dict(history)
    names = [p for p in _PHASE_ORDER if p in history] + sorted(
        (p for p in history if p not in _PHASE_ORDER), key=str
    )
    phases = []
    for phase in names:
        series = {}
        for key, values in _as_dict(history[phase]).items():
            if str(key) in _UNPLOTTED_KEYS:
                continue
            numbers = [_number(value) for value in _as_list(values)]
            if any(number is not None for number in numbers):
                series[str(key)] = [math.nan if n is None else n for n in numbers]
        if series:
            phases.append((str(phase), series))
    return phases


def _confusion(value: Any) -> np.ndarray | None:
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


def _per_class(result: dict) -> dict[str, list] | None:
    """The method's per-class lists, or ones derived from its confusion matrix."""
    keys = ("precision", "recall", "f1", "support")
    per_class = _as_dict(result.get("per_class"))
    lists = {key: _as_list(per_class.get(key)) for key in keys}
    count = max(len(values) for values in lists.values())
    if count:
        return {key: values + [None] * (count - len(values)) for key, values in lists.items()}
    confusion = _confusion(result.get("confusion_matrix"))
    if confusion is None:
        return None
    metrics = metrics_from_confusion_matrix(confusion)
    return {key: metrics[key] for key in keys}


def _embedding(value: Any) -> tuple[list, list, list] | None:
    """`(x, y, labels)` of the points with finite coordinates, or None when there are none."""
    embedding = _as_dict(value)
    x = [_number(v) for v in _as_list(embedding.get("x"))]
    y = [_number(v) for v in _as_list(embedding.get("y"))]
    labels = [_label(v) for v in _as_list(embedding.get("label"))]
    count = min(len(x), len(y), len(labels))
    keep = [i for i in range(count) if x[i] is not None and y[i] is not None]
    if not keep:
        return None
    return [x[i] for i in keep], [y[i] for i in keep], [labels[i] for i in keep]


def _label(value: Any) -> int | str:
    """An integer class index when the value is one (JSON may give 3.0), else its text."""
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else str(value)


def _label_name(label: Any, class_names: list[str]) -> str:
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(class_names):
        return class_names[label]
    return str(label)


def _names_for(class_names: list[str], count: int) -> list[str]:
    return class_names if len(class_names) == count else [str(i) for i in range(count)]


def _method_label(name: Any) -> str:
    return METHOD_LABELS.get(str(name), str(name))


def _difference(decision: dict) -> float | None:
    candidate = _number(decision.get("candidate_accuracy"))
    champion = _number(decision.get("champion_accuracy"))
    if candidate is None or champion is None:
        return None
    return candidate - champion


def _decision_sentence(decision: Any) -> str:
    if not isinstance(decision, dict) or not decision:
        return "none recorded."
    promoted = decision.get("promoted")
    verdict = {True: "promoted", False: "not promoted"}.get(promoted, "undecided")
    candidate = _method_label(decision.get("candidate", "candidate"))
    text = f"{candidate} {verdict}: {_percent(decision.get('candidate_accuracy'))} %"
    champion = _number(decision.get("champion_accuracy"))
    if champion is None:
        text += " (no champion yet)"
    else:
        text += f" vs champion {_percent(champion)} %"
    margin = _number(decision.get("margin"))
    if margin is not None:
        text += f", required margin {_margin(margin)} points"
    reason = decision.get("reason")
    return text + (f" ({reason})." if reason else ".")


# ---------------------------------------------------------------------------------------------
# Formatting.


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _percent(value: Any) -> str:
    number = _number(value)
    return _MISSING if number is None else f"{100 * number:.2f}"


def _fraction(value: Any) -> str:
    number = _number(value)
    return _MISSING if number is None else f"{number:.3f}"


def _points(value: float | None) -> str:
    return _MISSING if value is None else f"{100 * value:+.2f}"


def _margin(value: Any) -> str:
    number = _number(value)
    return _MISSING if number is None else f"{100 * number:.2f}"


def _count(value: Any) -> str:
    number = _number(value)
    return _MISSING if number is None else f"{int(number):,}"


def _duration(value: Any) -> str:
    seconds = _number(value)
    if seconds is None:
        return _MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _heat(f1: Any) -> str:
    """Cell background: white at F1 = 1, light red as F1 falls to 0."""
    number = _number(f1)
    if number is None:
        return "transparent"
    deficit = min(max(1.0 - number, 0.0), 1.0)
    return f"rgba(207,34,46,{0.45 * deficit:.2f})"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _md(value: Any) -> str:
    """Text safe inside a Markdown table cell (and inert if the viewer renders HTML)."""
    return html.escape(str(value), quote=True).replace("|", "\\|").replace("\n", " ")


def _mpl_text(value: Any) -> str:
    # A "$" would start matplotlib's math mode and may fail to parse.
    return str(value).replace("$", r"\$")


def _mpl_legend(value: Any) -> str:
    # matplotlib hides legend entries whose label starts with "_".
    text = _mpl_text(value)
    return " " + text if text.startswith("_") else text


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _yaml(config: Any) -> str:
    import yaml

    # Through JSON first: tuples and non-YAML objects become lists and strings.
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, allow_unicode=True)
