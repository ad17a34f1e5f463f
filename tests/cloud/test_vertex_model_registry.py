"""A promoted champion as a new version of a Vertex AI Model (official SDK, loopback API)."""

import json
from urllib.parse import unquote

import pytest
import yaml

from contrastive.serving import TF_SERVING_VERSION
from pipelines.targets.vertex import (
    CHAMPION_ALIAS,
    DEFAULT_SERVING_IMAGE,
    publish_champion,
    upload_vertex_model,
)

from .conftest import PROJECT, REGION
from .platform_schemas import inference_service_errors

MODELS = f"/v1/projects/{PROJECT}/locations/{REGION}/models"


def _upload_request(body):
    from google.cloud import aiplatform_v1

    return aiplatform_v1.UploadModelRequest.from_json(json.dumps(body))


def _vertex(vertex_api):
    connection = vertex_api.connection()
    return dict(
        project=PROJECT,
        region=REGION,
        credentials=connection.credentials,
        api_endpoint=connection.api_endpoint,
    )


def test_vertex_model_first_upload_creates_the_model_then_adds_versions(vertex_api):
    first = upload_vertex_model(
        "gs://bucket/registry/versions/run-1/saved_model",
        model_id="contrastive-fmnist",
        run_id="run-1",
        **_vertex(vertex_api),
    )
    second = upload_vertex_model(
        "gs://bucket/registry/versions/run-2/saved_model",
        model_id="contrastive-fmnist",
        run_id="run-2",
        **_vertex(vertex_api),
    )

    name = f"projects/{PROJECT}/locations/{REGION}/models/contrastive-fmnist"
    assert first == {"model": name, "version_id": "1", "alias": CHAMPION_ALIAS}
    assert second == {"model": name, "version_id": "2", "alias": CHAMPION_ALIAS}
    uploads = [_upload_request(b) for b in vertex_api.bodies("POST", r"/models:upload$")]
    assert [u.model_id for u in uploads] == ["contrastive-fmnist", ""]
    assert [u.parent_model for u in uploads] == ["", name]
    for upload, run in zip(uploads, ("run-1", "run-2"), strict=True):
        model = upload.model
        assert model.artifact_uri == f"gs://bucket/registry/versions/{run}/saved_model"
        assert model.container_spec.image_uri == DEFAULT_SERVING_IMAGE
        assert list(model.version_aliases) == ["champion", "default"]
        assert model.version_description == f"champion promoted by run {run}"
        assert dict(model.labels) == {"run_id": run}
    # Looked up before each upload (absent the first time, the parent the second), and the
    # new version read back after it.
    lookups = [unquote(path) for method, path in vertex_api.calls() if method == "GET"]
    base = f"{MODELS}/contrastive-fmnist"
    assert lookups == [base, f"{base}@1", base, f"{base}@2"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            dict(saved_model_uri="/tmp/registry/versions/r/saved_model"),
            "the registry must be a gs:// prefix",
        ),
        (dict(model_id="Contrastive FMNIST"), "Received: vertex_model='Contrastive FMNIST'"),
    ],
)
def test_vertex_model_bad_input_is_refused_before_any_request(vertex_api, arguments, message):
    settings = dict(
        saved_model_uri="gs://bucket/registry/versions/r/saved_model",
        model_id="contrastive",
        run_id="r",
        **_vertex(vertex_api),
    )
    settings.update(arguments)
    with pytest.raises(ValueError, match=message):
        upload_vertex_model(settings.pop("saved_model_uri"), **settings)
    assert vertex_api.requests == []


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "tensorflow",
    reason="the promoted SavedModel needs the TensorFlow backend",
)
def test_vertex_model_gate_uploads_only_a_promoted_champion(gcs, vertex_api, candidate):
    from contrastive.registry import gate_champion

    registry = f"{gcs.prefix}/registry"
    vertex = dict(model_id="contrastive", **_vertex(vertex_api))

    def publish(saved_model_uri, run_id):  # what the Vertex target's publisher gets
        return publish_champion(saved_model_uri, run_id=run_id, **vertex)

    # The second run's candidate loses against the champion, re-evaluated at 0.9.
    gate = dict(candidate="supcon", candidate_dir=candidate, margin=0.0, evaluate=lambda _: 0.9)

    promoted = gate_champion(
        registry, candidate_accuracy=0.9, run_id="run-1", publish=publish, **gate
    )
    kept = gate_champion(registry, candidate_accuracy=0.85, run_id="run-2", publish=publish, **gate)

    assert promoted["promoted"] is True and kept["promoted"] is False
    assert promoted["vertex_model"] == {
        "model": f"projects/{PROJECT}/locations/{REGION}/models/contrastive",
        "version_id": "1",
        "alias": "champion",
    }
    assert "vertex_model" not in kept
    (upload,) = vertex_api.bodies("POST", r"/models:upload$")
    assert upload["model"]["artifactUri"] == f"{registry}/versions/run-1/saved_model"
    from contrastive import storage

    assert storage.exists(f"{registry}/versions/run-1/saved_model/saved_model.pb")
    # The KServe manifest next to champion.json names the promoted (first) run's version.
    assert promoted["inference_service"] == f"{registry}/inferenceservice.yaml"
    manifest = yaml.safe_load(storage.read_text(f"{registry}/inferenceservice.yaml"))
    assert manifest == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "contrastive", "annotations": {"contrastive/run-id": "run-1"}},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "tensorflow", "version": "2"},
                    "runtimeVersion": TF_SERVING_VERSION,
                    "storageUri": f"{registry}/versions/run-1/kserve",
                }
            }
        },
    }
    assert inference_service_errors(manifest) == []
    # TF Serving finds version 1 under storageUri.
    assert storage.exists(f"{registry}/versions/run-1/kserve/1/saved_model.pb")


def test_vertex_model_kserve_schema_check_catches_a_misspelt_field():
    from contrastive.serving import inference_service

    manifest = inference_service("gs://b/r/versions/x/kserve", run_id="x")
    assert inference_service_errors(manifest) == []
    manifest["spec"]["predictor"]["model"]["storageURI"] = "gs://b"
    manifest["spec"]["predictor"]["model"]["runtimeVersion"] = 2.2
    assert sorted(inference_service_errors(manifest)) == [
        "spec.predictor.model.runtimeVersion: 2.2 is not of type 'string'",
        "spec.predictor.model: Additional properties are not allowed ('storageURI' was unexpected)",
    ]


def test_kserve_manifest_names_a_tf_serving_version_and_an_absolute_local_path(
    tmp_path, monkeypatch
):
    # Issue 24 item 5: KServe's runtime otherwise runs tensorflow/serving:2.6.2 (kserve
    # v0.20.0 config/runtimes/kustomization.yaml), and a relative storageUri means nothing.
    from contrastive.registry import ModelRegistry, write_inference_service

    monkeypatch.chdir(tmp_path)
    registry = ModelRegistry("registry")  # a relative local registry
    (tmp_path / "registry" / "versions" / "run-1" / "kserve" / "1").mkdir(parents=True)
    (tmp_path / "registry" / "versions" / "run-1" / "kserve" / "1" / "saved_model.pb").touch()
    path = write_inference_service(registry, "run-1")
    manifest = yaml.safe_load((tmp_path / path).read_text())
    model = manifest["spec"]["predictor"]["model"]
    assert model["runtimeVersion"] == TF_SERVING_VERSION == "2.20.0"
    assert model["storageUri"] == str(tmp_path / "registry" / "versions" / "run-1" / "kserve")
    assert inference_service_errors(manifest) == []


@pytest.mark.parametrize("model_id", ["1st-champion", "-champion", "9"])
def test_vertex_model_id_starting_with_a_digit_or_hyphen_is_refused(model_id):
    # google-cloud-aiplatform 1.165.1 aiplatform_v1/types/model_service.py UploadModelRequest:
    # "valid characters are [a-z0-9_-]. The first character cannot be a number or hyphen."
    from pipelines.targets.vertex import check_model_id

    with pytest.raises(ValueError, match=f"Received: vertex_model='{model_id}'"):
        check_model_id(model_id)
    assert check_model_id("_champion-1") == "_champion-1"
