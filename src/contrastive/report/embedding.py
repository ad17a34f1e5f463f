"""The report's sections on the encoder's space: nearest-neighbour explanations of test
mistakes, suspect training labels, and drift of the training data against the champion's.

They read what `contrastive.tasks.inspecting` wrote (`run_explain_neighbours`,
`run_check_drift`); thumbnails arrive as PNG data URIs and are embedded only when they are
exactly that. Their number is fixed by the step's settings, not by the dataset's size, so the
page stays small.
"""

from __future__ import annotations

import re
from typing import Any

from contrastive.report import formatting as fmt
from contrastive.report import plots

_PNG_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$")


def thumbnail(uri: Any, alt: str) -> str:
    """An inline thumbnail, or a dash when `uri` is not a base64 PNG data URI."""
    if not isinstance(uri, str) or not _PNG_URI.match(uri):
        return f'<span class="thumb missing">{fmt.MISSING}</span>'
    return f'<img class="thumb" src="{uri}" alt="{fmt.escape(alt)}">'


def explanations_section(neighbours: Any) -> str:
    neighbours = fmt.as_dict(neighbours)
    if not neighbours:
        return fmt.note("No nearest-neighbour explanations were computed for this run.")
    names = [str(name) for name in fmt.as_list(neighbours.get("class_names"))]
    reference = fmt.as_dict(neighbours.get("reference"))
    method = fmt.method_label(neighbours.get("method"))
    intro = fmt.note(
        f"In the encoder space of {method} (this run's best method), cosine "
        f"similarity against {fmt.count(reference.get('examples'))} training images"
        + (
            f" (a uniform sample of {fmt.count(reference.get('seen'))})"
            if reference.get("seen") != reference.get("examples")
            else ""
        )
        + "."
    )
    parts = [intro, _agreement_table(fmt.as_dict(neighbours.get("agreement")), names)]
    mistakes = [m for m in fmt.as_list(neighbours.get("mistakes")) if isinstance(m, dict)]
    if not mistakes:
        parts.append(fmt.note("No test image was misclassified: nothing to explain."))
        return "".join(parts)
    rows = []
    for mistake in mistakes:
        true = fmt.label_name(mistake.get("label"), names)
        predicted = fmt.label_name(mistake.get("predicted"), names)
        query = (
            f'<figure class="query">{thumbnail(mistake.get("thumbnail"), "test image")}'
            f"<figcaption>true <b>{fmt.escape(true)}</b><br>predicted "
            f"<b>{fmt.escape(predicted)}</b> ({fmt.percent(mistake.get('confidence'))} %)"
            "</figcaption></figure>"
        )
        figures = []
        for neighbour in fmt.as_list(mistake.get("neighbours")):
            neighbour = fmt.as_dict(neighbour)
            label = fmt.label_name(neighbour.get("label"), names)
            kind = (
                "true"
                if neighbour.get("label") == mistake.get("label")
                else "predicted"
                if neighbour.get("label") == mistake.get("predicted")
                else "other"
            )
            figures.append(
                f'<figure class="{kind}">{thumbnail(neighbour.get("thumbnail"), label)}'
                f"<figcaption>{fmt.escape(label)}<br>"
                f"{fmt.fraction(neighbour.get('similarity'))}</figcaption></figure>"
            )
        rows.append(
            f'<div class="explained">{query}<span class="arrow">→</span>{"".join(figures)}</div>'
        )
    parts.append(
        f"<h3>The {len(mistakes)} most confident test mistakes and their nearest training "
        "images</h3>" + "".join(rows)
    )
    parts.append(
        fmt.note(
            "Each row: a misclassified test image with its true and predicted class and the "
            "classifier's confidence, then its nearest training images with their labels and "
            "cosine similarity; a blue frame marks a neighbour of the predicted class, a "
            "green one of the true class. Neighbours of the predicted class explain the "
            "mistake (look-alikes, or mislabelled training images)."
        )
    )
    return "".join(parts)


def _agreement_table(agreement: dict, names: list[str]) -> str:
    shares = fmt.as_list(agreement.get("per_class"))
    support = fmt.as_list(agreement.get("support"))
    if not shares:
        return fmt.note("No test image was compared with the training images.")
    rows = "".join(
        f"<tr><td>{fmt.escape(fmt.label_name(index, names))}</td>"
        f"<td class=num>{fmt.percent(share)}</td>"
        f"<td class=num>{fmt.count(support[index] if index < len(support) else None)}</td></tr>"
        for index, share in enumerate(shares)
    )
    rows += (
        f"<tr><th>all</th><th class=num>{fmt.percent(agreement.get('overall'))}</th>"
        f"<th class=num>{fmt.count(sum(fmt.as_number(s) or 0 for s in support))}</th></tr>"
    )
    return (
        "<table class=agreement><caption>Test images whose nearest training image has their "
        "label</caption><thead><tr><th>Class</th><th>Share (%)</th><th>Test images</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def suspects_section(neighbours: Any) -> str:
    suspects = fmt.as_dict(fmt.as_dict(neighbours).get("suspects"))
    if not suspects:
        return fmt.note("No training labels were checked in this run.")
    names = [str(name) for name in fmt.as_list(fmt.as_dict(neighbours).get("class_names"))]
    file_name = suspects.get("file") or "suspect_labels.csv"
    found = fmt.as_number(suspects.get("count")) or 0
    summary = (
        f'<p class="note">{fmt.count(found)} of {fmt.count(suspects.get("checked"))} training '
        f"images checked have at least {fmt.percent(suspects.get('min_share'))} % of their "
        f"{fmt.count(suspects.get('k'))} nearest training images under one other label. "
        f"Every one is listed in <code>{fmt.escape(file_name)}</code> (file name or record "
        "id, given and suggested label), most certain first; check them, fix the labels "
        "that are wrong and ingest again.</p>"
    )
    top = [row for row in fmt.as_list(suspects.get("top")) if isinstance(row, dict)]
    if not top:
        return summary
    rows = []
    for row in top:
        where = row.get("source_path") or row.get("id")
        rows.append(
            f"<tr><td>{thumbnail(row.get('thumbnail'), 'suspect')}</td>"
            f"<td><code>{fmt.escape(row.get('id'))}</code><br>"
            f"<span class=small>{fmt.escape(where)}</span></td>"
            f"<td>{fmt.escape(fmt.label_name(row.get('label'), names))}</td>"
            f"<td>{fmt.escape(fmt.label_name(row.get('suggested'), names))}</td>"
            f"<td class=num>{fmt.percent(row.get('share'))}</td>"
            f"<td class=num>{fmt.fraction(row.get('similarity'))}</td></tr>"
        )
    table = (
        f"<table class=suspects><caption>The {len(top)} most certain suspects</caption>"
        "<thead><tr><th>Image</th><th>Record</th><th>Label</th><th>Neighbours say</th>"
        "<th>Neighbours agreeing (%)</th><th>Their similarity</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return summary + table


def drift_section(drift: Any) -> str:
    drift = fmt.as_dict(drift)
    if not drift:
        return fmt.note("No drift check ran before this run's training.")
    decision = drift.get("decision")
    verdict = {"train": "Trained", "skip": "Skipped"}.get(decision, "Undecided")
    found = drift.get("drift_found")
    headline = {True: "drift found", False: "no drift found", None: "drift not measured"}[
        found if isinstance(found, bool) else None
    ]
    test = fmt.as_dict(drift.get("test"))
    champion = fmt.as_dict(drift.get("champion"))
    same = fmt.as_dict(champion.get("fingerprints"))
    mine = fmt.as_dict(drift.get("fingerprints"))
    rows = [
        ("Decision", f"{verdict} (retrain_when = {fmt.escape(drift.get('policy'))})"),
        ("Reason", fmt.escape(drift.get("reason") or fmt.MISSING)),
    ]
    if drift.get("not_measured"):
        rows.append(("Not measured", fmt.escape(drift["not_measured"])))
    if champion:
        rows += [
            ("Champion", f"<code>{fmt.escape(champion.get('run_id'))}</code>"),
            ("Same training data", _same(same.get("data"), mine.get("data"))),
            ("Same code and configuration", _same(same.get("code"), mine.get("code"))),
        ]
    if test:
        sizes = fmt.as_list(test.get("sizes")) or [None, None]
        rows += [
            ("MMD² (unbiased)", _number(test.get("statistic"))),
            ("Effect size (MMD)", _number(test.get("effect_size"))),
            (
                "p-value",
                f"{_number(test.get('p_value'))} ({fmt.count(test.get('permutations'))} "
                f"permutations; drift when below {_number(drift.get('alpha'))})",
            ),
            ("Samples (champion, new)", f"{fmt.count(sizes[0])}, {fmt.count(sizes[-1])}"),
            ("Kernel bandwidth", _number(test.get("bandwidth"))),
        ]
    shift = fmt.as_dict(drift.get("label_shift"))
    if shift:
        rows.append(("Class mix (total variation)", _number(shift.get("total_variation"))))
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    style = {True: "kept", False: "promoted"}.get(found if isinstance(found, bool) else None, "")
    box = (
        f'<div class="decision {style}"><strong>{headline.capitalize()}</strong>'
        f"<table>{table}</table></div>"
    )
    figure = ""
    if test and fmt.as_list(test.get("null")):
        uri = plots.plot_drift(
            [v for v in fmt.as_list(test["null"]) if fmt.as_number(v) is not None],
            fmt.as_number(test.get("statistic")) or 0.0,
            fmt.as_dict(drift.get("map")),
            shift,
            [str(name) for name in fmt.as_list(drift.get("class_names"))],
        )
        figure = plots.image_tag(uri, "drift figures")
    note = fmt.note(
        "The champion's encoder embeds a uniform sample of the champion's training images "
        "(kept when it was promoted) and one of this run's; the maximum mean discrepancy "
        "(Gaussian kernel on the normalised embeddings, median-distance bandwidth) compares "
        "them, and its permutation p-value says how often two draws from one distribution "
        "differ that much. Left: the permutation distribution and this run's value; middle: "
        "both samples on their first two principal components; right: their class mix."
    )
    return box + figure + (note if test else "")


def _same(champion: Any, mine: Any) -> str:
    if champion is None or mine is None:
        return fmt.MISSING
    return "yes" if champion == mine else "no"


def _number(value: Any) -> str:
    number = fmt.as_number(value)
    return fmt.MISSING if number is None else f"{number:.4g}"
