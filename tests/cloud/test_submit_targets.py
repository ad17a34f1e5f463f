"""`pipelines.targets.validate_accelerator`: the names each submit target understands."""

import pytest

from pipelines.targets import KUBEFLOW, VERTEX, VERTEX_ACCELERATORS, validate_accelerator


@pytest.mark.parametrize("name", ["nvidia.com/gpu", "amd.com/gpu", "google.com/tpu", "acme.io/npu"])
def test_submit_kubeflow_accepts_kubernetes_resource_names(name):
    assert validate_accelerator(KUBEFLOW, name) == name


@pytest.mark.parametrize("name", sorted(VERTEX_ACCELERATORS))
def test_submit_vertex_accepts_its_enum_names(name):
    assert validate_accelerator(VERTEX, name) == name


@pytest.mark.parametrize(
    ("target", "name", "message"),
    [
        (KUBEFLOW, "NVIDIA_L4", "is a Vertex AI name; Kubeflow needs a Kubernetes resource name"),
        (KUBEFLOW, "nvidia_tesla_t4", "is a Vertex AI name"),
        (KUBEFLOW, "gpu", "must be a Kubernetes resource name like 'nvidia.com/gpu'"),
        (VERTEX, "nvidia.com/gpu", "is a Kubernetes resource name; Vertex AI needs one of"),
        (VERTEX, "NVIDIA_L40", "for Vertex AI must be one of"),
        (VERTEX, "", "must be a non-empty string"),
        ("sagemaker", "NVIDIA_L4", "target must be one of kubeflow, vertex"),
    ],
)
def test_submit_wrong_accelerator_name_for_target_is_refused(target, name, message):
    with pytest.raises(ValueError, match=message) as caught:
        validate_accelerator(target, name)
    if target in (KUBEFLOW, VERTEX):
        assert f"Received: accelerator_type={name!r}" in str(caught.value)
