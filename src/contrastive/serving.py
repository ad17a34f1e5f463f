"""Serve a promoted champion: the KServe manifest the champion gate writes beside it.

On a promotion the gate (`contrastive.registry.gate_champion`) writes `inferenceservice.yaml`
next to `champion.json`: a KServe `InferenceService` whose TensorFlow predictor serves the
champion's SavedModel (uint8 `serve` signature, `contrastive.export`). Publishing to a
platform's model registry (Vertex AI's) is the pipeline target's publisher
(`contrastive.environment.publisher`, `pipelines.targets.vertex.publish_champion`).

TF Serving loads numbered versions below its base path, so the promoted bundle carries the
SavedModel a second time as `kserve/1/` and the manifest's `storageUri` is `.../kserve`.
The manifest names its TF Serving version (`runtimeVersion`): KServe's runtime otherwise runs
`tensorflow/serving:2.6.2` (kserve v0.20.0 `config/runtimes/kustomization.yaml`), which
cannot load a SavedModel written by TensorFlow 2.21 (`bench/serving_compat.py`).
"""

from __future__ import annotations

import re

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
# The `tensorflow/serving` image tag KServe runs (`runtimeVersion` replaces the runtime image's
# tag: kserve v0.20.0 pkg/controller/v1beta1/inferenceservice/utils/utils.go UpdateImageTag).
# 2.20.0 is TF Serving's newest release (tensorflow/serving tags), built on TensorFlow 2.20;
# bench/serving_compat.py measures that it serves our SavedModel (README "Serving").
TF_SERVING_VERSION = "2.20.0"
KSERVE_DIR = "kserve"  # in a promoted version: kserve/1/saved_model.pb
INFERENCE_SERVICE_FILE = "inferenceservice.yaml"


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


__all__ = ["INFERENCE_SERVICE_FILE", "KSERVE_DIR", "TF_SERVING_VERSION", "inference_service"]
