"""The report's figures: each builds a bare matplotlib `Figure` (Agg canvas, no pyplot state)
and returns it as a PNG data URI. matplotlib is imported inside the functions."""

from __future__ import annotations

import base64
import io

import numpy as np

from contrastive.report import formatting as fmt

DPI = 90
MAX_ANNOTATED_CLASSES = 20


def plot_history(method_label: str, phases: list[tuple[str, dict[str, list[float]]]]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.9 * len(phases)), dpi=DPI, layout="constrained")
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
                axis.plot(epochs, values, marker=marker, markersize=3, label=fmt.mpl_text(key))
                plotted = True
            if not plotted:
                axis.set_axis_off()
                continue
            axis.set_title(f"{fmt.mpl_text(phase)}: {kind}", fontsize=10)
            axis.set_xlabel("epoch", fontsize=9)
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.tick_params(labelsize=8)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    return figure_uri(figure)


def plot_confusion(method_label: str, confusion, class_names: list[str]) -> str:
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    num_classes = counts.shape[0]
    support = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    side = min(max(3.0, 0.42 * num_classes + 1.6), 12.0)
    figure = Figure(figsize=(side + 0.6, side), dpi=DPI, layout="constrained")
    axis = figure.subplots()
    axis.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    if num_classes <= 40:
        labels = [fmt.mpl_text(name) for name in class_names]
        axis.set_xticks(range(num_classes), labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(num_classes), labels, fontsize=8)
    if num_classes <= MAX_ANNOTATED_CLASSES:
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
    return figure_uri(figure)


def plot_embedding(method_label: str, x, y, labels, class_names: list[str]) -> str:
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
    figure = Figure(figsize=(5.6, 3.9), dpi=DPI, layout="constrained")
    axis = figure.subplots()
    x, y = np.asarray(x), np.asarray(y)
    for position, label in enumerate(classes):
        mask = np.array([value == label for value in labels])
        name = fmt.label_name(label, class_names)
        axis.scatter(
            x[mask], y[mask], s=6, alpha=0.7, color=colours[position], label=fmt.mpl_legend(name)
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
    return figure_uri(figure)


def plot_label_efficiency(rows: list[dict]) -> str:
    """Test accuracy (%) against the labelled fraction (log scale), one line per method,
    error bars of one sample std where a point holds several runs.

    Args:
        rows: `label_efficiency.summary_rows`: `fraction`, `method`, `mean`, `std`, `n`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    axis = figure.subplots()
    methods = fmt.in_method_order(r["method"] for r in rows)
    fractions = sorted({r["fraction"] for r in rows})
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        x = [r["fraction"] for r in mine]
        y = [100 * r["mean"] for r in mine]
        errors = [100 * r["std"] if r["n"] > 1 else 0.0 for r in mine]
        axis.errorbar(
            x,
            y,
            yerr=errors if any(errors) else None,
            marker="o",
            capsize=3,
            label=fmt.mpl_legend(fmt.method_label(method)),
        )
    axis.set_xscale("log")
    axis.set_xticks(fractions, [f"{100 * f:g} %" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("labelled share of the training images (log scale)", fontsize=9)
    axis.set_ylabel("test accuracy (%)", fontsize=9)
    axis.tick_params(labelsize=8)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure_uri(figure)


def figure_uri(figure) -> str:
    buffer = io.BytesIO()
    # No "Software" text chunk: it would carry matplotlib's web address into the file.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return data_uri(buffer.getvalue(), "image/png")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def image_tag(uri: str, alt: str, wide: bool = True) -> str:
    css_class = ' class="wide"' if wide else ""
    return f'<img src="{uri}" alt="{fmt.escape(alt)}"{css_class}>'
