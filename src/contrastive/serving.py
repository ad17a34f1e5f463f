"""Publish a promoted champion for serving: a Vertex AI Model version, a KServe manifest.

The champion gate (`contrastive.registry.gate_champion`) calls `upload_vertex_model` after a
promotion when a Vertex model name is given; a run that promotes nothing uploads nothing.
The SavedModel (uint8 `serve` signature, `contrastive.export`) becomes a new version of the
Vertex Model `model_id` with the alias `champion`, which Vertex moves from the previous
version; the first upload creates the Model. Everything goes through the official SDK
(`google.cloud.aiplatform.Model.upload`); nothing here reads the environment.

For Kubeflow clusters the gate also writes `inferenceservice.yaml` next to `champion.json`:
a KServe `InferenceService` whose TensorFlow predictor serves the champion's SavedModel.
TF Serving loads numbered versions below its base path, so the promoted bundle carries the
SavedModel a second time as `kserve/1/` and the manifest's `storageUri` is `.../kserve`.
The manifest names its TF Serving version (`runtimeVersion`): KServe's runtime otherwise runs
`tensorflow/serving:2.6.2` (kserve v0.20.0 `config/runtimes/kustomization.yaml`), which
cannot load a SavedModel written by TensorFlow 2.21 (`bench/serving_compat.py`).
"""

from __future__ import annotations

import re
from typing import Any

CHAMPION_ALIAS = "champion"
# Vertex AI's prebuilt TensorFlow 2 CPU prediction image; override for GPUs or a newer TF.
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
# The `tensorflow/serving` image tag KServe runs (`runtimeVersion` replaces the runtime image's
# tag: kserve v0.20.0 pkg/controller/v1beta1/inferenceservice/utils/utils.go UpdateImageTag).
# 2.20.0 is TF Serving's newest release (tensorflow/serving tags), built on TensorFlow 2.20;
# bench/serving_compat.py measures that it serves our SavedModel (README "Serving").
TF_SERVING_VERSION = "2.20.0"
KSERVE_DIR = "kserve"  # in a promoted version: kserve/1/saved_model.pb
INFERENCE_SERVICE_FILE = "inferenceservice.yaml"
# UploadModelRequest.model_id: "up to 63 characters, and valid characters are [a-z0-9_-]. The
# first character cannot be a number or hyphen." (google-cloud-aiplatform 1.165.1,
# google/cloud/aiplatform_v1/types/model_service.py)
_MODEL_ID = re.compile(r"^[a-z_][-a-z0-9_]{0,62}$")


def check_model_id(model_id: str) -> str:
    """A Vertex Model id: lowercase letters, digits, '-' and '_', at most 63 characters, not
    starting with a digit or '-'."""
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise ValueError(
            "vertex model must be a Vertex Model id: lowercase letters, digits, '-' and '_', "
            "starting with a letter or '_' (not a digit or '-'), at most 63 characters. "
            f"Received: vertex_model={model_id!r}"
        )
    return model_id


def upload_vertex_model(
    saved_model_uri: str,
    *,
    model_id: str,
    project: str,
    region: str,
    run_id: str,
    serving_image: str = DEFAULT_SERVING_IMAGE,
    credentials: Any = None,
    api_endpoint: str | None = None,
) -> dict:
    """Uploads `saved_model_uri` (gs://) as a new version of Vertex Model `model_id`.

    Args:
        saved_model_uri: the promoted SavedModel directory, e.g. `gs://b/registry/versions/R/
            saved_model`.
        model_id: the Vertex Model's id (created on the first upload).
        project, region: where the Model lives.
        run_id: the pipeline run that produced it (version description and label).
        serving_image: prediction container of the version.
        credentials, api_endpoint: google-auth credentials and API host (tests: loopback).

    Returns:
        `{"model": resource name, "version_id": ..., "alias": "champion"}`.
    """
    from google.api_core import exceptions
    from google.cloud import aiplatform

    check_model_id(model_id)
    if not saved_model_uri.startswith("gs://"):
        raise ValueError(
            "the Vertex Model Registry serves models from Cloud Storage; the registry must be a "
            f"gs:// prefix. Received: saved_model_uri={saved_model_uri!r}"
        )
    aiplatform.init(
        project=project,
        location=region,
        credentials=credentials,
        api_endpoint=api_endpoint,
        api_transport="rest",
    )
    try:
        parent = aiplatform.Model(model_name=model_id).resource_name
    except exceptions.NotFound:
        parent = None
    uploaded = aiplatform.Model.upload(
        display_name=model_id,
        model_id=None if parent else model_id,
        parent_model=parent,
        artifact_uri=saved_model_uri,
        serving_container_image_uri=serving_image,
        version_aliases=[CHAMPION_ALIAS],
        is_default_version=True,
        version_description=f"champion promoted by run {run_id}",
        labels={"run_id": re.sub(r"[^-_0-9a-z]", "-", run_id.lower())[:63]},
        sync=True,
    )
    return {
        "model": uploaded.resource_name.split("@")[0],
        "version_id": uploaded.version_id,
        "alias": CHAMPION_ALIAS,
    }


def inference_service(storage_uri: str, *, run_id: str, name: str = "contrastive") -> dict:
    """A KServe v1beta1 `InferenceService` serving the SavedModel versions under
    `storage_uri` with the TensorFlow predictor (TF Serving `TF_SERVING_VERSION`, `serve`
    signature, uint8 images).

    Args:
        storage_uri: the folder holding `1/saved_model.pb` (gs://, s3://, pvc://, or an
            absolute path the storage initializer sees); a relative path is refused.
        run_id: the run that promoted it (an annotation, so `kubectl describe` shows it).
        name: the InferenceService's name, a DNS-1035 label.
    """
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(
            f"inference service name must be a DNS-1035 label. Received: name={name!r}"
        )
    if "://" not in storage_uri and not storage_uri.startswith("/"):
        raise ValueError(
            "storage_uri must be an object store URI or an absolute path: a relative one "
            f"means nothing to the cluster. Received: storage_uri={storage_uri!r}"
        )
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"contrastive/run-id": run_id}},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "tensorflow", "version": "2"},
                    "runtimeVersion": TF_SERVING_VERSION,
                    "storageUri": storage_uri,
                }
            }
        },
    }


__all__ = [
    "CHAMPION_ALIAS",
    "DEFAULT_SERVING_IMAGE",
    "INFERENCE_SERVICE_FILE",
    "KSERVE_DIR",
    "TF_SERVING_VERSION",
    "check_model_id",
    "inference_service",
    "upload_vertex_model",
]
