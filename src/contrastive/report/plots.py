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


def plot_drift(
    null: list[float], observed: float, points: dict, shift: dict, class_names: list[str]
) -> str:
    """The drift check: the permutation distribution of MMD² with this run's value, both
    samples on their first two principal components, and their class shares.

    Args:
        null: permuted MMD² values.
        observed: this run's MMD².
        points: `{"x", "y", "side"}` (side "champion" or "new"); may be empty.
        shift: `drift.label_shift`'s `reference_shares` and `new_shares`; may be empty.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12.6, 3.4), dpi=DPI, layout="constrained")
    null_axis, map_axis, share_axis = figure.subplots(1, 3)
    null_axis.hist(null, bins=30, color="#8c959f", label="permutations")
    null_axis.axvline(observed, color="#cf222e", linewidth=2, label="this run")
    null_axis.set_xlabel("MMD²", fontsize=9)
    null_axis.set_ylabel("permutations", fontsize=9)
    null_axis.legend(fontsize=8)
    sides = list(points.get("side") or [])
    if sides:
        x, y = np.asarray(points["x"]), np.asarray(points["y"])
        for side, colour in (("champion", "#0969da"), ("new", "#bf8700")):
            mask = np.array([value == side for value in sides])
            map_axis.scatter(x[mask], y[mask], s=5, alpha=0.5, color=colour, label=side)
        map_axis.legend(fontsize=8, markerscale=2.5)
    map_axis.set_xticks([])
    map_axis.set_yticks([])
    map_axis.set_xlabel("PC 1", fontsize=9)
    map_axis.set_ylabel("PC 2", fontsize=9)
    old, new = shift.get("reference_shares") or [], shift.get("new_shares") or []
    if old and new:
        positions = np.arange(len(old))
        share_axis.bar(positions - 0.2, old, width=0.4, color="#0969da", label="champion")
        share_axis.bar(positions + 0.2, new, width=0.4, color="#bf8700", label="new")
        labels = [fmt.mpl_text(name) for name in fmt.names_for(class_names, len(old))]
        if len(old) <= 40:
            share_axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=7)
        share_axis.set_ylabel("share of the sample", fontsize=9)
        share_axis.legend(fontsize=8, framealpha=0.9)
    else:
        share_axis.set_axis_off()
    for axis in (null_axis, map_axis, share_axis):
        axis.tick_params(labelsize=8)
    return figure_uri(figure)


def thumbnail_uri(image, size: int = 48) -> str:
    """A small PNG data URI of one image (`uint8 [H, W, C]`, C = 1 or 3): shrunk (never
    enlarged) so that its longest side is at most `size` pixels, grey stays grey."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    picture = Image.fromarray(pixels)
    picture.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return data_uri(buffer.getvalue(), "image/png")


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
