"""What each KFP input means: one line per parameter name, shared by every component and the
pipeline, so a name means the same everywhere and is described once.

`document(function)` appends a Google-style `Args:` section built from these lines to the
function's docstring; KFP copies each line into the compiled YAML, so the KFP and Vertex UIs
explain every input. A parameter without a line here is refused at import.
"""

import inspect

from contrastive import methods
from contrastive.config import CLASSIFIER_MODES, ENCODER_NAMES, available_profiles
from contrastive.data.sources import SOURCE_FORMS

KEEP = "0 keeps the profile's value"

DESCRIPTIONS = {
    # data
    "source": f"Image source: {SOURCE_FORMS}; or an already-ingested dataset (a location "
    "with manifest.json), used as it is.",
    "dataset": "The ingested dataset (sharded TFRecords with a manifest).",
    "validation_fraction": "Stratified fraction of the source train split held out for "
    "validation, in (0, 1).",
    "limit": "Use at most this many examples per source split; 0 = all.",
    "image_size": "Store and train images at 'H,W' (aspect ratio kept: centred crop, then "
    "resize); empty: the profile's data.image_size, else one shared size is kept and mixed "
    "sizes become the median height x width.",
    "test_fraction": "Stratified fraction of train held out as test when the source has no "
    "test split (an image folder of <root>/<class>/), in [0, 1).",
    "labeled_fraction": "Keep labels on this stratified fraction of train (the rest becomes "
    "unlabeled); 0 = all labeled.",
    "labeled_subset_fraction": "Few labels: the step sees this stratified, seeded, nested "
    "fraction of the train split's labels (classifier and baseline train on that subset only; "
    "SupCon pretrains on every image with the others unlabelled); 0 keeps the profile's "
    "train.labeled_fraction.",
    "on_error": "What ingest does with an unreadable image: skip (and list it) or fail.",
    "class_name_variants": "Class names that differ only in case or Unicode normalisation "
    "(Cat/ and cat/): refuse (the error names both) or merge them into one class (the "
    "manifest's merged_classes records it).",
    "max_upscale": "Skip (and list) an image whose centred crop would be enlarged more than "
    "this many times to reach the image size; >= 1.",
    "max_aspect_ratio": "Skip (and list) an image whose aspect ratio is more than this many "
    "times the image size's, either way, instead of cropping it to a sliver; >= 1.",
    "data_snapshot": "Only enters KFP's cache key: a new value ingests the source afresh.",
    "runner": "Who runs the ingest: empty or inprocess (threads in the step), or an Apache "
    "Beam runner: direct (in the step), dataflow (a Dataflow job the step launches and waits "
    "for), flink or spark (a portable job server: --job_endpoint in beam_options).",
    "ingest_runner": "Who runs the ingest: empty or inprocess (threads in the step), or an "
    "Apache Beam runner: direct, dataflow (a Dataflow job the step launches and waits for), "
    "flink or spark (a portable job server: --job_endpoint in ingest_beam_options).",
    "beam_options": "Beam pipeline flags for the runner, e.g. '--project=P --region=R "
    "--temp_location=gs://B/tmp --max_num_workers=50' (Dataflow) or "
    "'--job_endpoint=flink-jobserver:8099 --environment_type=EXTERNAL "
    "--environment_config=localhost:50000' (Flink, Spark); empty: none.",
    "ingest_beam_options": "Beam pipeline flags for ingest_runner, e.g. '--project=P "
    "--region=R --temp_location=gs://B/tmp --max_num_workers=50' (Dataflow) or "
    "'--job_endpoint=flink-jobserver:8099' (Flink, Spark); empty: none.",
    "worker_image": "The container image a Dataflow job's workers run (this pipeline's image, "
    "which holds Beam's SDK harness); a --sdk_container_image in beam_options wins.",
    # configuration
    "profile": "Configuration profile: " + ", ".join(available_profiles()) + ".",
    "overrides": "Configuration overrides: a JSON or YAML mapping of section.field to value, "
    'e.g. {"train.epochs": 3, "data.image_size": [32, 32]}; empty: none.',
    "checkpoint_root": "Folder or gs:// prefix for the training steps' checkpoints and failure "
    "records, one sub-folder per run and task (survives a preempted pod, removed after "
    "success); empty: 'checkpoints' beside the step's output (a step whose output is in a "
    "store other than gs:// fails at start, naming this parameter); 'none': no durable "
    "checkpoints (a retried step starts afresh).",
    "epochs": f"Pretraining (or baseline) epochs; {KEEP}.",
    "classifier_epochs": f"Classifier epochs after pretraining; {KEEP}.",
    "batch_size": f"Training batch size; {KEEP}.",
    "temperature": f"Contrastive softmax temperature; {KEEP}.",
    "encoder": "Encoder architecture (" + ", ".join(ENCODER_NAMES) + "); empty keeps the "
    "profile's.",
    "seed": "Random seed of the split and the training.",
    "distribution": "Devices of a training step: none (one) or data_parallel (every device "
    "of every replica, JAX backend); empty keeps the profile's.",
    # steps
    "method": "Pretraining method: " + ", ".join(methods.pretraining_names()) + ".",
    "mode": "Classifier on the encoder: " + " or ".join(CLASSIFIER_MODES) + " (linear: a "
    "frozen probe); empty keeps the profile's.",
    "classifier_mode": "Classifier on each pretrained encoder: "
    + " or ".join(CLASSIFIER_MODES)
    + "; empty keeps the profile's.",
    "encoder_model": "The pretrained encoder (a model directory).",
    "model": "The classifier (a model directory: model.keras, config, history, metrics).",
    "metrics": "Summary figures of the step, as KFP metrics.",
    "split": "Dataset split to evaluate (test, validation or train).",
    "classification_metrics": "Confusion matrix for the KFP UI.",
    "predictions": "Per-example predictions (Parquet: label, predicted, confidence, "
    "probabilities).",
    "evaluation": "The full evaluation result (JSON: accuracy, per-class metrics, confusion, "
    "embedding).",
    # compare and report
    "report": "The run report (one self-contained HTML page).",
    "summary": "A short Markdown summary of the accuracies and the promotion decision.",
    "results": "The run summary as JSON.",
    "decision": "Test accuracy per method and whether the best was promoted, as KFP metrics.",
    "registry": "Model registry (local folder or gs:// prefix) holding champion.json; empty "
    "skips the champion gate.",
    "promotion_margin": "The best candidate must beat the champion's test accuracy by more "
    "than this to be promoted.",
    "curve": "The label-efficiency curve (JSON: test figures per labelled fraction and "
    "method); absent when the run has one fraction.",
    "previous_curve": "The curve of the smaller fractions, which this step extends; absent "
    "for the first.",
    "run_id": "Names the promoted version and the decision record; empty: a UTC timestamp.",
    # the encoder's space: explanations, suspect labels, drift
    "neighbours": "The best method's nearest-neighbour explanations and suspect labels (JSON "
    "with thumbnails), for the report.",
    "suspect_labels": "Every training image whose nearest training images overwhelmingly "
    "carry another label (CSV: id, source_path, label, suggested label, share, similarity).",
    "drift": "The drift check against the champion (JSON: fingerprints, MMD test, decision).",
    "retrain_when": "When a (scheduled) run trains: always; changed (skip when the data and "
    "the code are the champion's and no drift is found); drifted (skip when the code is the "
    "champion's and the new data's embeddings show no drift). A skip is recorded in the "
    "registry's decisions/.",
    "methods": "The methods this pipeline was compiled with, comma-separated (part of the "
    "code fingerprint).",
    # serving and monitoring
    "tensorboard_root": "Folder or gs:// prefix for TensorBoard logs, one sub-folder per step; "
    "Vertex's AIP_TENSORBOARD_LOG_DIR wins; empty: inside the step's output.",
    "tensorboard_name": "The step's sub-folder under tensorboard_root and under the run's "
    "checkpoint folder.",
    "job_id": "The pipeline run's id (KFP fills it in): keys the step's checkpoint folder, so "
    "every retry of the step in this run finds it.",
    "vertex_model": "Vertex AI Model ID: a promoted champion becomes a new version of it with "
    "the alias 'champion'; empty: no upload.",
    "vertex_project": "Google Cloud project of vertex_model.",
    "vertex_region": "Region of vertex_model (e.g. us-central1).",
}


def document(function, more: dict[str, str] | None = None):
    """Append an `Args:` section for every parameter of `function` to its docstring, from
    `DESCRIPTIONS` and `more` (the inputs of a component written for the run's methods).

    Raises:
        ValueError: a parameter has no line in `DESCRIPTIONS` or `more`.
    """
    described = {**DESCRIPTIONS, **(more or {})}
    names = list(inspect.signature(function).parameters)
    missing = [name for name in names if name not in described]
    if missing:
        raise ValueError(
            f"describe every KFP input in components/parameters.py. Received: missing={missing}"
        )
    summary = (inspect.getdoc(function) or function.__name__).split("\nArgs:")[0].rstrip()
    args = [f"    {name}: {described[name]}" for name in names]
    function.__doc__ = "\n".join([summary, "", "Args:", *args])
    return function
