"""The pipeline's steps as library functions: the file I/O edge of the CLI and KFP components.

Each `run_*` function reads a dataset (a URI with a `manifest.json`) and/or a model directory
(`contrastive.modeldir`), calls the training or evaluation code, and writes a model directory.
Every step streams its splits (`tf.data`, bounded shuffle buffer, prefetch): memory does not
grow with the dataset; only bounded samples (the kNN monitor's, the embedding map's) are held
as arrays.

- `training`: `run_pretrain`, `run_train_classifier`, `run_train_baseline`, the sequence
  they share (reuse → open the data → train → time → save), and `run_training_component`,
  the body of their KFP components (here, or as a Kubeflow Trainer TrainJob).
- `evaluating`: `run_evaluate`, `run_collect_fraction` (the label-efficiency curve),
  `run_compare_and_report`, `best_method`.
- `inspecting`: the encoder's space: `run_explain_neighbours` (explanations, suspect
  labels), `run_check_drift` (drift against the champion, train or skip).
- `sinks`: `StepSinks`, where a training step's TensorBoard logs, durable checkpoints and
  progress records go.
- `conventions`: `data_location`, `numeric_metrics`, `log_metrics`.
- here: `run_ingest`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contrastive.run_parameters import training_config
from contrastive.tasks.conventions import data_location, log_metrics, numeric_metrics
from contrastive.tasks.evaluating import (
    best_method,
    run_collect_fraction,
    run_compare_and_report,
    run_evaluate,
)
from contrastive.tasks.inspecting import run_check_drift, run_explain_neighbours
from contrastive.tasks.inspecting import scalars as inspection_scalars
from contrastive.tasks.sinks import StepSinks
from contrastive.tasks.training import (
    run_pretrain,
    run_train_baseline,
    run_train_classifier,
    run_training_component,
)

__all__ = [
    "StepSinks",
    "best_method",
    "data_location",
    "dataset_metadata",
    "inspection_scalars",
    "log_metrics",
    "numeric_metrics",
    "run_check_drift",
    "run_collect_fraction",
    "run_compare_and_report",
    "run_evaluate",
    "run_explain_neighbours",
    "run_ingest",
    "run_pretrain",
    "run_train_baseline",
    "run_train_classifier",
    "run_training_component",
    "training_config",
]


def dataset_metadata(manifest: dict) -> dict:
    """What a Dataset artifact shows in the KFP / Vertex UI, from its manifest."""
    return {
        "num_classes": manifest["num_classes"],
        "class_names": manifest["class_names"],
        "image_shape": manifest["image_shape"],
        "splits": {name: entry["num_examples"] for name, entry in manifest["splits"].items()},
        "skipped": len(manifest["skipped"]),
    }


def beam_options(runner: str, options: str, pipeline_image: str = "") -> str:
    """The ingest step's Beam flags: `options`, plus, for a Dataflow job that names no worker
    image, `--sdk_container_image=` the Dataflow worker image of `pipeline_image`
    (`dataflow_worker_image`)."""
    if runner == "dataflow" and pipeline_image and "--sdk_container_image" not in options:
        image = dataflow_worker_image(pipeline_image)
        return f"{options} --sdk_container_image={image}".strip()
    return options


def dataflow_worker_image(pipeline_image: str) -> str:
    """`REGISTRY/contrastive:TAG` -> `REGISTRY/contrastive-dataflow:TAG`: the image `make
    images` builds from the pipeline image with Beam's boot entry point
    (`images/Dockerfile.dataflow`), which Dataflow's custom containers need."""
    head, slash, last = pipeline_image.rpartition("/")
    reference = last[len(re.match(r"[^:@]*", last).group(0)) :]  # ":TAG" or "@sha256:..."
    return f"{head}{slash}contrastive-dataflow{reference}"


def run_ingest(
    source: str,
    output: str,
    *,
    image_size: str | Sequence[int] | None = "",
    limit: int | None = 0,
    labeled_fraction: float | None = 0.0,
    **options,
) -> dict:
    """`contrastive.data.ingest` with pipeline-parameter conventions (0 / "" mean unset);
    `image_size` is "H,W" or a pair, parsed and validated by `ingest`.

    A `source` that is already an ingested dataset (a location with `manifest.json`) is not
    ingested again: it is copied to `output` (`data.copy_ingested`), so a user ingests once
    and trains many times.
    """
    from contrastive import data

    options["runner"] = options.get("runner") or "inprocess"
    overwrite = options.pop("overwrite", True)
    if data.is_ingested(source):
        return data.copy_ingested(
            source, output, image_size=image_size or None, overwrite=overwrite
        )
    return data.ingest(
        source,
        output,
        image_size=image_size or None,
        limit=limit or None,
        labeled_fraction=labeled_fraction or None,
        overwrite=overwrite,
        progress=options.pop("progress", False),
        **options,
    )
