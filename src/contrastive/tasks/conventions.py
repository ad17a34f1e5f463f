"""Pipeline-parameter conventions shared by the steps: where a dataset input is read, which
figures a KFP Metrics artifact logs, one-line summaries. Where a step's logs go: `sinks`."""

from __future__ import annotations

from pathlib import Path

from contrastive import validation


def data_location(artifact) -> str:
    """Where a step reads a KFP `Dataset` input: its `gs://` URI when it has one, else its path.

    Every `run_*` step applies it to its `data_uri` argument, so the components pass the
    artifact itself; a string is returned as it is.

    TensorFlow reads `gs://` itself, shard by shard, so a step streams a dataset from the
    bucket whatever the target does with the artifact's local path: on Vertex AI that path is
    a Cloud Storage FUSE mount (`/gcs/...`); on Kubeflow the v2 launcher downloads every input
    artifact to that path before the step starts. `minio://` and `s3://` URIs (Kubeflow's
    default MinIO, S3) are read from the launcher's local copy: TensorFlow has no filesystem
    for them without tensorflow-io. Local runs (`kfp.local`) have a local path as URI.

    Args:
        artifact: a path or URI, or anything with `uri` and `path` attributes (a
            `kfp.dsl.Dataset`).
    """
    from contrastive import storage

    if isinstance(artifact, (str, Path)):
        return str(artifact)
    uri = getattr(artifact, "uri", "") or ""
    return uri if storage.is_gcs(uri) else artifact.path


def numeric_metrics(result: dict) -> dict[str, float]:
    """The plain numbers of a step's result, as a KFP Metrics artifact logs them."""
    return {name: float(value) for name, value in result.items() if validation.is_number(value)}


def log_metrics(artifact, values: dict | None = None) -> None:
    """Logs the plain numbers of `values` on a KFP `Metrics` artifact (`log_metric`), then
    writes the artifact's metadata (those figures; a `ClassificationMetrics`' confusion
    matrix) as JSON at its path. The file is what makes kfp.local's cache reuse the step:
    kfp 2.17 treats an output artifact without a file as missing and runs the step again."""
    from contrastive import storage

    for name, value in numeric_metrics(values or {}).items():
        artifact.log_metric(name, value)
    storage.write_json(artifact.path, artifact.metadata)


def last(history: dict, key: str):
    values = history.get(key) or []
    return float(values[-1]) if values else None


def brief(metrics: dict) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if v is not None
    )
