"""Our Kubernetes bodies checked against the platforms' own definitions, not our beliefs.

- TrainJob: the Kubeflow Trainer API models (`kubeflow-trainer-api` 2.2.0 on PyPI, generated
  from kubeflow/trainer v2.2.0's OpenAPI spec of `pkg/apis/trainer/v1alpha1`): the body is
  parsed into `TrainerV1alpha1TrainJob` (pydantic, strict types, required fields) and must
  come back unchanged, so a field the API does not define (dropped on parsing) or a wrong
  type fails.
- InferenceService: `schemas/kserve_inferenceservice_v1beta1.json`, the fields our manifest
  uses as KServe's CRD defines them (kserve v0.20.0, see its `$comment`), with `jsonschema`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

SCHEMAS = Path(__file__).parent / "schemas"


def trainjob_errors(body: dict) -> list[str]:
    """What the Trainer API refuses or drops in `body`; [] when it takes it as it is."""
    import pydantic
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    try:
        parsed = TrainerV1alpha1TrainJob.from_dict(body)
    except pydantic.ValidationError as error:
        return [str(error)]
    return _differences(body, parsed.to_dict())


def _differences(sent, kept, where="TrainJob") -> list[str]:
    if isinstance(sent, dict) and isinstance(kept, dict):
        errors = [f"{where}.{key}: not a field of the API" for key in set(sent) - set(kept)]
        for key in set(sent) & set(kept):
            errors += _differences(sent[key], kept[key], f"{where}.{key}")
        return errors
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [
            e
            for i, (a, b) in enumerate(zip(sent, kept, strict=True))
            for e in _differences(a, b, f"{where}[{i}]")
        ]
    return [] if sent == kept else [f"{where}: sent {sent!r}, the API reads {kept!r}"]


@functools.cache
def _inference_service_validator():
    import jsonschema

    schema = json.loads((SCHEMAS / "kserve_inferenceservice_v1beta1.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def inference_service_errors(manifest: dict) -> list[str]:
    """What KServe's InferenceService schema refuses in `manifest`; [] when valid."""
    validator = _inference_service_validator()
    return [
        f"{'.'.join(map(str, error.absolute_path)) or 'InferenceService'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]
