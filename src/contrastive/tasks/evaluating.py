"""The evaluation step (streamed, batch by batch) and the compare-and-report step (best
method, champion gate, HTML and Markdown report, results.json)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from contrastive import label_efficiency, modeldir, storage
from contrastive.config import Config
from contrastive.modeldir import check_compatible, load_model_dir, read_json
from contrastive.reuse import check_apart
from contrastive.tasks.conventions import data_location

log = logging.getLogger("contrastive.tasks")


def run_evaluate(
    data_uri: str,
    model_dir: str | Path,
    *,
    split: str = "test",
    predictions_path: str | Path | None = None,
    embedding_points: int = 2000,
    batch_size: int = 512,
) -> dict:
    """Evaluate a classifier on a split: accuracy, per-class metrics, confusion, 2-D embedding.

    Streams the split batch by batch: the confusion matrix and the predictions Parquet
    (when `predictions_path` is given) are accumulated per batch; only the embedding map's
    sample (`2 * embedding_points` images) is kept in memory.
    """
    from contrastive import data as data_io
    from contrastive import evaluation, training
    from contrastive.models import find_encoder

    data_uri = data_location(data_uri)
    check_apart({"--predictions": predictions_path}, {"--data": data_uri, "--model": model_dir})
    model, info = load_model_dir(model_dir)
    manifest = data_io.read_manifest(data_uri)
    check_compatible(info, manifest, model_dir)
    if not manifest["splits"].get(split, {"num_examples": 1})["num_examples"]:
        raise ValueError(f"split {split!r} of {data_uri} is empty: nothing to evaluate")
    with data_io.naming_damage(data_uri):
        result, (x, y) = evaluation.evaluate_batches(
            lambda images: training.predict_proba(model, images, batch_size),
            data_io.read_split(data_uri, split, batch_size).as_numpy_iterator(),
            class_names=list(manifest["class_names"]),
            batch_size=batch_size,
            predictions_path=predictions_path,
            keep=embedding_points * 2,
        )
    embedding = None
    if embedding_points > 0:
        features = training.embed(find_encoder(model), x, batch_size)
        points, indices = evaluation.pca_2d(features, max_points=embedding_points)
        embedding = {
            "x": points[:, 0].tolist(),
            "y": points[:, 1].tolist(),
            "label": y[indices].astype(int).tolist(),
        }
    result.update(
        method=info.get("method"),
        split=split,
        train_seconds=info.get("train_seconds"),
        mixed_precision=info.get("mixed_precision"),
        history=read_json(storage.join(str(model_dir), "history.json")),
        train_metrics=read_json(storage.join(str(model_dir), "metrics.json")),
        config=modeldir.read_yaml(storage.join(str(model_dir), "config.yaml")),
        embedding_2d=embedding,
    )
    result["knn_accuracy"] = result["train_metrics"].get("knn_accuracy")
    result["scalars"] = evaluation.metric_scalars(result)
    log.info(
        "evaluate %s: accuracy %.4f on %d %s images",
        info.get("method"),
        result["accuracy"],
        result["num_examples"],
        split,
    )
    return result


def run_compare_and_report(
    data_uri: str,
    candidates: dict[str, tuple[str, str]],
    *,
    report_path: str | Path,
    markdown_path: str | Path,
    results_path: str | Path,
    config: Config | None = None,
    parameters: str | dict = "{}",
    registry: str = "",
    promotion_margin: float = 0.0,
    run_id: str = "",
    publish: dict | None = None,
    environ: Mapping[str, str] | None = None,
    curve_path: str | Path | None = None,
    neighbours_path: str | Path | None = None,
    drift_path: str | Path | None = None,
) -> dict:
    """Pick the best method by test accuracy, gate it against the champion, write the report.

    Args:
        candidates: method name -> (evaluation JSON path, classifier model directory).
        config: shown in the report and used for the augmentation preview; by default the
            best model's own training config.
        registry: a local path or gs:// prefix holding `champion.json`; "" skips the gate.
        promotion_margin: the candidate must beat the champion's accuracy by more than this.
        publish: the options of the publisher that `environ` names
            (`contrastive.environment.publisher`, set by the pipeline's target; Vertex AI:
            model_id, project, region): a promoted champion is also handed to it (a new
            version of that Vertex Model with the alias `champion`). None: nothing published;
            given without a publisher: refused before any work.
        environ: the component's `os.environ`.
        curve_path: the label-efficiency curve (`run_collect_fraction`'s JSON) of a run with
            several labelled fractions: the report charts it, the summary holds it under
            `label_efficiency`, the scalars get `<method>_test_accuracy_<pct>pct`. The
            `candidates` are then the largest fraction's, which the gate compares.
        neighbours_path: `run_explain_neighbours`' JSON: the report's explanations and
            suspect labels; the summary keeps its figures under `neighbours`.
        drift_path: `run_check_drift`'s JSON: the report's drift section, the summary's
            `drift`; a promoted candidate keeps a drift reference made with its encoder and
            the fingerprints measured there (`inspecting.DRIFT_REFERENCE`).

    Returns the summary dict (also written as JSON to `results_path`), with `best` and
    `scalars` (flat figures for a KFP Metrics artifact).
    """
    from contrastive import controls, report, storage
    from contrastive import data as data_io
    from contrastive.registry import gate_champion
    from contrastive.tasks import inspecting

    if not candidates:
        raise ValueError("no method was evaluated: enable at least one of the branches")
    publisher = _publisher(publish, environ or {})
    data_uri = data_location(data_uri)
    manifest = data_io.read_manifest(data_uri)
    methods = {name: read_json(Path(path)) for name, (path, _) in candidates.items()}
    best = best_method(methods)
    if config is None:  # every evaluation carries the config its model was trained with
        config = Config.from_dict(methods[best].get("config") or {})
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if isinstance(parameters, str):
        parameters = json.loads(parameters or "{}")
    summary = {
        "run_id": run_id,
        "created_at": modeldir.utc_now(),
        "profile": config.profile,
        "config": config.to_dict(),
        "parameters": parameters,
        "dataset": {
            "source": manifest.get("source"),
            "class_names": manifest["class_names"],
            "image_shape": manifest["image_shape"],
            # what the model takes: the serving signature's size and channels
            "image_size": manifest["image_shape"][:2],
            "channels": manifest["image_shape"][2],
            "resize": manifest.get("resize"),
            "splits": {k: v["num_examples"] for k, v in manifest["splits"].items()},
        },
        "methods": {name: report.method_summary(result) for name, result in methods.items()},
        "best": best,
        # each contrastive method against the untrained encoder (none without the control)
        "controls": controls.against_controls(
            {name: result.get("accuracy") for name, result in methods.items()}
        ),
    }
    curve = read_json(Path(curve_path)) if curve_path else None
    if curve is not None:
        summary["label_efficiency"] = curve
        summary["controls_by_fraction"] = controls.curve_against_controls(curve)
    neighbours = read_json(Path(neighbours_path)) if neighbours_path else None
    drift = read_json(Path(drift_path)) if drift_path else None
    if neighbours:
        summary["neighbours"] = inspecting.compact_neighbours(neighbours)
    if drift:
        summary["drift"] = inspecting.compact_drift(drift)
    if registry:

        def test_accuracy(model_dir: str) -> float:  # the champion, on this run's test split
            return run_evaluate(data_uri, model_dir, embedding_points=0)["accuracy"]

        summary["decision"] = gate_champion(
            registry,
            best,
            methods[best]["accuracy"],
            candidates[best][1],
            run_id=run_id,
            margin=promotion_margin,
            evaluate=test_accuracy,
            publish=publisher,
            attachments=(
                (
                    lambda: {
                        inspecting.DRIFT_REFERENCE: inspecting.drift_reference_bytes(
                            candidates[best][1], data_uri, drift["fingerprints"]
                        )
                    }
                )
                if drift
                else None
            ),
        )
    preview = Path(report_path).with_name("augmentation_preview.png")
    try:
        _render_preview(data_uri, config, preview)
    except Exception as error:  # a report without the preview beats no report
        log.warning("augmentation preview skipped: %s", error)
        preview = None
    report.build_report(
        summary, report_path, preview_png=preview, neighbours=neighbours, drift=drift
    )
    storage.write_text(markdown_path, report.render_markdown(summary))
    scalars = {f"{name}_test_accuracy": m["accuracy"] for name, m in methods.items()}
    if curve is not None:
        for fraction, by_method in label_efficiency.by_fraction(curve).items():
            for name, figures in by_method.items():
                if "test_accuracy" in figures:
                    key = f"{name}_test_accuracy_{100 * float(fraction):g}pct"
                    scalars[key] = figures["test_accuracy"]
    if "decision" in summary:
        scalars["promoted"] = float(bool(summary["decision"]["promoted"]))
    scalars.update(inspecting.scalars(neighbours, drift))
    summary["scalars"] = scalars
    modeldir.write_json(results_path, summary)
    return summary


def _publisher(options: dict | None, environ: Mapping[str, str]):
    """`publish(saved_model_uri, run_id)` of the publisher `environ` names, with `options`;
    None without options."""
    from contrastive import environment

    if not options:
        return None
    hook = environment.publisher(environ)
    if hook is None:
        raise ValueError(
            "a promoted champion is to be published, but this step's environment names no "
            f"publisher ({environment.PUBLISHER_VARIABLE}, which the pipeline's target sets: "
            f"compile for a target that publishes). Received: {options}"
        )
    return lambda saved_model_uri, run_id: hook(saved_model_uri, run_id=run_id, **options)


def best_method(evaluations: dict[str, dict]) -> str:
    """The method with the highest test accuracy (`run_evaluate` results by name; the first
    listed wins a tie): the candidate the gate compares and the report explains. A control
    (`methods.Method.control`, e.g. `random_init`) is a measurement, never the candidate,
    unless nothing else was evaluated."""
    from contrastive import methods

    if not evaluations:
        raise ValueError("no method was evaluated: enable at least one of the branches")
    controls = set(methods.controls())
    candidates = [name for name in evaluations if name not in controls] or list(evaluations)
    return max(candidates, key=lambda name: evaluations[name]["accuracy"])


def run_collect_fraction(
    previous_path: str | Path | None,
    fraction: float,
    evaluations: dict[str, str | Path],
    curve_path: str | Path,
) -> dict:
    """Add one labelled fraction's evaluations to the label-efficiency curve.

    Args:
        previous_path: the curve so far (the previous fraction's output); None starts one.
        fraction: the labelled fraction these evaluations were trained at.
        evaluations: method name -> evaluation JSON path (`run_evaluate`'s result).
        curve_path: where the extended curve is written (JSON).

    Returns:
        The extended curve.
    """
    previous = read_json(Path(previous_path)) if previous_path else None
    results = {name: read_json(Path(path)) for name, path in evaluations.items()}
    curve = label_efficiency.add_fraction(previous, fraction, results)
    modeldir.write_json(curve_path, curve)
    log.info(
        "label efficiency at %s: %s",
        label_efficiency.percent_label(fraction),
        {name: round(r["accuracy"], 4) for name, r in results.items()},
    )
    return curve


def _render_preview(data_uri: str, config: Config, path: Path) -> None:
    from dataclasses import asdict

    from contrastive import augment, data

    x, _ = data.load_arrays(data_uri, "test", limit=8)
    shape = tuple(x.shape[1:])
    weak = augment.build_augmenter(shape, **asdict(config.augment.weak), seed=1)
    strong = augment.build_augmenter(shape, **asdict(config.augment.strong), seed=2)
    augment.render_preview(x, weak, strong, path, num_images=min(8, len(x)))
