"""The report page: sections, page frame and CSS, and the Markdown summary.

Each section returns an HTML fragment; every summary string passes through `fmt.escape`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastive import label_efficiency, storage
from contrastive.evaluation import top_confusions
from contrastive.report import embedding, plots
from contrastive.report import formatting as fmt


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
# Seed 003's semi-supervised STL-10 figures (5,000 labelled of 105,000 images, about 5 %):
# beside the label-efficiency curve as reference, measured on another dataset and encoder.
SEED_003_FEW_LABELS: tuple[SeedReference, ...] = tuple(
    reference for reference in SEED_REFERENCES if reference.source == "seed 003"
)


def build_report(
    summary: dict,
    output_path: str | Path,
    *,
    preview_png: str | Path | None = None,
    neighbours: dict | None = None,
    drift: dict | None = None,
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
        neighbours: `tasks.inspecting.run_explain_neighbours`' result (explanations with
            their thumbnails, suspect labels); None: those sections say so.
        drift: `tasks.inspecting.run_check_drift`'s result (with its permutation null and 2-D
            map); None: the drift section says so.

    Returns:
        The path of the written file.
    """
    summary = summary if isinstance(summary, dict) else {}
    methods = fmt.ordered_methods(summary)
    dataset = fmt.as_dict(summary.get("dataset"))
    class_names = [str(name) for name in fmt.as_list(dataset.get("class_names"))]
    best = fmt.best_method(summary, methods)

    sections = [
        ("accuracy", "Accuracy", _accuracy_section(methods, best)),
        *_label_efficiency_sections(summary.get("label_efficiency")),
        ("decision", "Promotion decision", _decision_section(summary.get("decision"))),
        ("curves", "Training curves", _curves_section(methods)),
        ("confusion", "Confusion matrices", _confusion_section(methods, class_names)),
        ("per-class", "Per-class metrics", _per_class_section(methods, class_names)),
        ("augmentation", "Augmentation preview", _preview_section(preview_png)),
        ("embeddings", "Test embeddings (2-D)", _embedding_section(methods, class_names)),
        (
            "explanations",
            "Nearest-neighbour explanations",
            embedding.explanations_section(neighbours),
        ),
        ("suspect-labels", "Suspect labels", embedding.suspects_section(neighbours)),
        ("drift", "Drift", embedding.drift_section(drift)),
        ("parameters", "Run parameters", _parameters_section(summary)),
        ("dataset", "Dataset", _dataset_section(dataset)),
    ]
    page = _page(summary, best, sections)

    output_path = Path(output_path)
    storage.write_text(output_path, page)
    return output_path


def render_markdown(summary: dict) -> str:
    """A short Markdown summary (accuracy table and promotion decision) for a KFP artifact."""
    summary = summary if isinstance(summary, dict) else {}
    methods = fmt.ordered_methods(summary)
    best = fmt.best_method(summary, methods)
    dataset = fmt.as_dict(summary.get("dataset"))

    heading = f"### Contrastive run {fmt.markdown_cell(summary.get('run_id', 'unnamed'))}"
    facts = [
        f"profile **{fmt.markdown_cell(summary['profile'])}**" if summary.get("profile") else None,
        f"dataset **{fmt.markdown_cell(dataset['source'])}**" if dataset.get("source") else None,
        fmt.markdown_cell(summary["created_at"]) if summary.get("created_at") else None,
    ]
    lines = [heading, ""]
    if any(facts):
        lines += [" · ".join(fact for fact in facts if fact), ""]
    lines += [
        "| Method | Test accuracy (%) | Macro F1 | kNN accuracy (%) | Train time |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in methods.items():
        label = fmt.markdown_cell(fmt.method_label(name))
        label = f"**{label}** (best)" if name == best else label
        lines.append(
            f"| {label} | {fmt.percent(result.get('test_accuracy'))} "
            f"| {fmt.fraction(result.get('macro_f1'))} | {fmt.percent(result.get('knn_accuracy'))} "
            f"| {fmt.duration(result.get('train_seconds'))} |"
        )
    if not methods:
        lines.append(
            f"| {fmt.MISSING} | {fmt.MISSING} | {fmt.MISSING} | {fmt.MISSING} | {fmt.MISSING} |"
        )
    rows = label_efficiency.summary_rows(fmt.as_dict(summary.get("label_efficiency")))
    if rows:
        lines += ["", "**Label efficiency** (test accuracy %, by labelled fraction)", ""]
        lines += _curve_table_lines(rows, markdown=True)
    lines += [
        "",
        f"**Decision:** {fmt.markdown_cell(fmt.decision_sentence(summary.get('decision')))}",
    ]
    return "\n".join(lines) + "\n"


def _curve_table_lines(rows: list[dict], *, markdown: bool) -> list[str]:
    """The curve as a table: one row per fraction, one column per method (mean ± std)."""
    methods = fmt.in_method_order(r["method"] for r in rows)
    cells = {(r["fraction"], r["method"]): r for r in rows}

    def cell(row: dict | None) -> str:
        if row is None:
            return fmt.MISSING
        text = f"{100 * row['mean']:.2f}"
        return text + (f" ± {100 * row['std']:.2f}" if row["n"] > 1 else "")

    fractions = sorted({r["fraction"] for r in rows})
    if markdown:
        labels = [fmt.markdown_cell(fmt.method_label(m)) for m in methods]
        lines = ["| Labelled | " + " | ".join(labels) + " |", "|---" + "|---:" * len(methods) + "|"]
        for fraction in fractions:
            values = [cell(cells.get((fraction, m))) for m in methods]
            lines.append(
                f"| {label_efficiency.percent_label(fraction)} | " + " | ".join(values) + " |"
            )
        return lines
    head = "".join(f"<th>{fmt.escape(fmt.method_label(m))}</th>" for m in methods)
    body = "".join(
        f"<tr><td>{fmt.escape(label_efficiency.percent_label(fraction))}</td>"
        + "".join(f"<td class=num>{cell(cells.get((fraction, m)))}</td>" for m in methods)
        + "</tr>"
        for fraction in fractions
    )
    return [
        "<table><caption>Test accuracy (%) by labelled fraction (mean ± std over runs)"
        f"</caption><thead><tr><th>Labelled</th>{head}</tr></thead><tbody>{body}</tbody></table>"
    ]


def _label_efficiency_sections(curve: Any) -> list[tuple[str, str, str]]:
    """The label-efficiency chart and table beside seed 003's figures; none without a curve."""
    rows = label_efficiency.summary_rows(fmt.as_dict(curve))
    if not rows:
        return []
    chart = plots.image_tag(plots.plot_label_efficiency(rows), "label-efficiency chart")
    references = "".join(
        f"<tr><td>{fmt.escape(r.method)}</td><td class=num>{r.accuracy_percent:.2f}</td></tr>"
        for r in SEED_003_FEW_LABELS
    )
    reference_table = (
        "<table class=reference><caption>Seed 003: SimCLR on STL-10, 5,000 labels of "
        "105,000 images (about 5 %)</caption><thead><tr><th>Method</th><th>Accuracy (%)</th>"
        f"</tr></thead><tbody>{references}</tbody></table>"
    )
    table = "".join(_curve_table_lines(rows, markdown=False))
    note = fmt.note(
        "Every method sees the same nested, stratified labelled subset at each fraction; "
        "SimCLR pretrains once on every training image, SupCon uses the unlabelled ones as "
        "anchors of their own views. The accuracy table above and the champion gate are at "
        "the largest fraction. Seed 003's figures come from another dataset and encoder: "
        "a sense of scale, not a target."
    )
    body = f'{chart}<div class="side-by-side">{table}{reference_table}</div>{note}'
    return [("label-efficiency", "Label efficiency", body)]


def _accuracy_section(methods: dict[str, dict], best: str | None) -> str:
    if not methods:
        ours = fmt.note("No method results in this summary.")
    else:
        rows = []
        for name, result in methods.items():
            badge = ' <span class="badge">best</span>' if name == best else ""
            row_class = ' class="best"' if name == best else ""
            rows.append(
                f"<tr{row_class}><td>{fmt.escape(fmt.method_label(name))} "
                f"<code>{fmt.escape(name)}</code>{badge}</td>"
                f"<td class=num>{fmt.percent(result.get('test_accuracy'))}</td>"
                f"<td class=num>{fmt.fraction(result.get('macro_f1'))}</td>"
                f"<td class=num>{fmt.percent(result.get('knn_accuracy'))}</td>"
                f"<td class=num>{fmt.duration(result.get('train_seconds'))}</td></tr>"
            )
        ours = (
            "<table><caption>This run (test split)</caption><thead><tr><th>Method</th>"
            "<th>Test accuracy (%)</th><th>Macro F1</th><th>kNN accuracy (%)</th>"
            "<th>Train time</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    references = _reference_table()
    note = fmt.note(
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
                    f'<td rowspan="{len(references)}">{fmt.escape(source)}'
                    f"<br><span class=small>{fmt.escape(setup)}</span></td>"
                )
            prefix = "~" if reference.approximate else ""
            rows.append(
                f"<tr>{head}<td>{fmt.escape(reference.method)}</td>"
                f"<td class=num>{prefix}{reference.accuracy_percent:.2f}</td></tr>"
            )
    return (
        "<table class=reference><caption>Reference figures (other datasets and encoders, "
        "for orientation only)</caption><thead><tr><th>Source</th><th>Method</th>"
        "<th>Accuracy (%)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _decision_section(decision: Any) -> str:
    if not isinstance(decision, dict) or not decision:
        return fmt.note("No promotion decision was recorded for this run.")
    promoted = decision.get("promoted")
    verdict = {True: "Promoted", False: "Not promoted"}.get(promoted, "Undecided")
    style = {True: "promoted", False: "kept"}.get(promoted, "undecided")
    champion = decision.get("champion_accuracy")
    candidate = decision.get("candidate")
    champion_text = (
        "none (no champion yet)" if fmt.as_number(champion) is None else fmt.percent(champion)
    )
    rows = [
        ("Candidate", fmt.escape(fmt.method_label(candidate)) if candidate else fmt.MISSING),
        ("Candidate accuracy (%)", fmt.percent(decision.get("candidate_accuracy"))),
        ("Champion accuracy (%)", champion_text),
        ("Difference (points)", fmt.points(fmt.difference(decision))),
        ("Required margin (points)", fmt.percent(decision.get("margin"))),
        ("Reason", fmt.escape(decision.get("reason") or fmt.MISSING)),
    ]
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    return f'<div class="decision {style}"><strong>{verdict}</strong><table>{table}</table></div>'


def _per_method(
    methods: dict[str, dict],
    render: Callable[[str, dict], str | None],
    *,
    missing: str,
    cards: bool = True,
    caption: str | None = None,
) -> str:
    """One block per method: its title, then `render(name, result)`, or the `missing` note
    where that returns None; as cards side by side (with an optional caption below)."""
    blocks = []
    for name, result in methods.items():
        body = render(name, result)
        block = f"<h3>{fmt.escape(fmt.method_label(name))}</h3>"
        block += fmt.note(missing) if body is None else body
        blocks.append(f'<div class="card">{block}</div>' if cards else block)
    if not blocks:
        return fmt.note("No method results in this summary.")
    if not cards:
        return "".join(blocks)
    return f'<div class="cards">{"".join(blocks)}</div>' + (fmt.note(caption) if caption else "")


def _curves_section(methods: dict[str, dict]) -> str:
    def render(name: str, result: dict) -> str | None:
        phases = fmt.history_phases(result.get("history"))
        if not phases:
            return None
        return plots.image_tag(plots.plot_history(fmt.method_label(name), phases), name)

    return _per_method(methods, render, missing="No training history recorded.", cards=False)


def _confusion_section(methods: dict[str, dict], class_names: list[str]) -> str:
    def render(name: str, result: dict) -> str | None:
        confusion = fmt.confusion_matrix(result.get("confusion_matrix"))
        if confusion is None:
            return None
        names = fmt.names_for(class_names, len(confusion))
        figure = plots.image_tag(
            plots.plot_confusion(fmt.method_label(name), confusion, names), name
        )
        mistakes = top_confusions(confusion, names, k=5)
        if mistakes:
            items = "".join(
                f"<li>{fmt.escape(m['true'])} → {fmt.escape(m['predicted'])}: {m['count']} "
                f"({100 * m['rate']:.1f} % of {fmt.escape(m['true'])})</li>"
                for m in mistakes
            )
            figure += f"<p class=small>Most frequent confusions:</p><ol class=small>{items}</ol>"
        return figure

    caption = (
        "Rows are true classes, columns predicted classes; cells show counts and are shaded by "
        "the fraction of the true class (recall per row)."
    )
    return _per_method(methods, render, missing="No confusion matrix.", caption=caption)


def _per_class_section(methods: dict[str, dict], class_names: list[str]) -> str:
    def render(name: str, result: dict) -> str | None:
        per_class = fmt.per_class_metrics(result)
        if per_class is None:
            return None
        count = len(per_class["f1"])
        names = fmt.names_for(class_names, count)
        rows = []
        for index in range(count):
            f1 = per_class["f1"][index]
            shade = "" if f1 is None else f' style="background:{fmt.heat(f1)}"'
            rows.append(
                f"<tr><td>{fmt.escape(names[index])}</td>"
                f"<td class=num>{fmt.fraction(per_class['precision'][index])}</td>"
                f"<td class=num>{fmt.fraction(per_class['recall'][index])}</td>"
                f"<td class=num{shade}>{fmt.fraction(f1)}</td>"
                f"<td class=num>{fmt.count(per_class['support'][index])}</td></tr>"
            )
        return (
            "<table><thead><tr><th>Class</th><th>Precision</th><th>Recall</th><th>F1</th>"
            "<th>Support</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )

    return _per_method(methods, render, missing="No per-class metrics.")


def _preview_section(preview_png: str | Path | None) -> str:
    if preview_png is None:
        return fmt.note("No augmentation preview was given.")
    path = Path(preview_png)
    try:
        data = path.read_bytes()
    except OSError as error:
        return fmt.note(f"Augmentation preview {path} could not be read: {error.strerror}.")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        return fmt.note(f"Augmentation preview {path} is neither a PNG nor a JPEG image.")
    caption = fmt.note("Rows: original images, weak augmentation, then two strong views.")
    return plots.image_tag(plots.data_uri(data, mime), "augmentation preview", wide=False) + caption


def _embedding_section(methods: dict[str, dict], class_names: list[str]) -> str:
    def render(name: str, result: dict) -> str | None:
        embedding = fmt.embedding_points(result.get("embedding_2d"))
        if embedding is None:
            return None
        figure = plots.plot_embedding(fmt.method_label(name), *embedding, class_names)
        return plots.image_tag(figure, name)

    caption = (
        "Test-set encoder features projected onto their first two principal components, "
        "coloured by true class. Well-separated clusters mean a linear classifier has an easy job."
    )
    return _per_method(methods, render, missing="No embedding map.", caption=caption)


def _parameters_section(summary: dict) -> str:
    parts = []
    parameters = fmt.as_dict(summary.get("parameters"))
    if parameters:
        rows = "".join(
            f"<tr><th>{fmt.escape(key)}</th>"
            f"<td><code>{fmt.escape(fmt.plain_text(value))}</code></td></tr>"
            for key, value in parameters.items()
        )
        parts.append(f"<h3>Pipeline parameters</h3><table class=kv>{rows}</table>")
    config = summary.get("config")
    if config:
        parts.append(f"<h3>Configuration</h3><pre>{fmt.escape(fmt.yaml_text(config))}</pre>")
    return "".join(parts) or fmt.note("No run parameters were recorded.")


def _dataset_section(dataset: dict) -> str:
    if not dataset:
        return fmt.note("No dataset description in this summary.")
    rows = []
    if dataset.get("source") is not None:
        rows.append(("Source", f"<code>{fmt.escape(dataset['source'])}</code>"))
    shape = fmt.as_list(dataset.get("image_shape"))
    if shape:
        rows.append(("Image shape", fmt.escape(" × ".join(str(size) for size in shape))))
    if dataset.get("image_size") is not None:
        height, width = fmt.as_list(dataset["image_size"])
        channels = dataset.get("channels")
        kind = {1: "grey", 3: "RGB"}.get(channels, f"{channels} channels")
        rows.append(
            ("Trained and served at", fmt.escape(f"{height} × {width} px, {channels} ({kind})"))
        )
    resize = fmt.as_dict(dataset.get("resize"))
    if resize:
        how = "median of a mixed folder" if resize.get("chosen") == "median" else "given"
        rows.append(
            (
                "Resized at ingest",
                fmt.escape(f"{resize.get('resized', 0)} images ({how} size; {resize['method']})"),
            )
        )
    names = fmt.as_list(dataset.get("class_names"))
    if names:
        listed = ", ".join(fmt.escape(name) for name in names)
        rows.append(("Classes", f"{len(names)}: {listed}"))
    splits = fmt.as_dict(dataset.get("splits"))
    for split, count in splits.items():
        rows.append((f"{fmt.escape(split)} examples", fmt.count(count)))
    numbers = [fmt.as_number(count) for count in splits.values()]
    if splits and all(number is not None for number in numbers):
        rows.append(("Total examples", fmt.count(sum(numbers))))
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    return f"<table class=kv>{table}</table>"


def _page(summary: dict, best: str | None, sections: list[tuple[str, str, str]]) -> str:
    run_id = summary.get("run_id", "unnamed run")
    facts = [("Run", run_id)]
    for key, label in (("profile", "Profile"), ("created_at", "Created")):
        if summary.get(key) is not None:
            facts.append((label, summary[key]))
    source = fmt.as_dict(summary.get("dataset")).get("source")
    if source is not None:
        facts.append(("Dataset", source))
    if best is not None:
        facts.append(("Best", fmt.method_label(best)))
    header = " · ".join(f"{label} <strong>{fmt.escape(value)}</strong>" for label, value in facts)
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
        f"<title>Contrastive run report: {fmt.escape(run_id)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>Contrastive run report</h1><p>{header}</p>"
        f"<nav>{navigation}</nav></header>{body}"
        "<footer>Generated by <code>contrastive.report</code>. Self-contained: no network "
        "access needed.</footer></body></html>\n"
    )


CSS = """
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
img.thumb{width:56px;height:auto;image-rendering:pixelated;display:block;margin:0 auto}
.explained{display:flex;flex-wrap:wrap;align-items:flex-start;gap:6px;margin:6px 0;
 padding-bottom:6px;border-bottom:1px solid #eaeef2}
.explained figure{margin:0;padding:2px;text-align:center;font-size:11px;width:76px;
 border:2px solid transparent;border-radius:4px}
.explained figure.query{width:120px;background:#f6f8fa}
.explained figure.predicted{border-color:#0969da}.explained figure.true{border-color:#1a7f37}
.explained .arrow{align-self:center;font-size:18px;color:#8c959f}
table.suspects td{vertical-align:middle}
"""
