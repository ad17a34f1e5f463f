"""`Target.check_accelerator` (`pipelines.targets`): the names each submit target understands.

Both name lists are checked against sources we do not write: the Vertex SDK's own
`AcceleratorType` enum, and the Kubernetes grammar for an extended resource name.
"""

import re

import pytest

from pipelines import targets
from pipelines.targets.kubeflow import ACCELERATORS as KUBEFLOW_ACCELERATORS
from pipelines.targets.vertex import ACCELERATORS as VERTEX_ACCELERATORS

KUBEFLOW, VERTEX = "kubeflow", "vertex"


def validate_accelerator(target: str, name: str) -> str:
    return targets.get_cluster(target, ValueError).check_accelerator(name)


# ---------------------------------------------------------------- Vertex: the SDK's enum


def test_submit_vertex_accelerators_are_the_sdk_enum():
    """Every `AcceleratorType` a machine spec takes, and nothing else (UNSPECIFIED is the
    proto default, not a device)."""
    from google.cloud.aiplatform.compat.types import accelerator_type as compat
    from google.cloud.aiplatform_v1.types import AcceleratorType

    enum = {member.name for member in AcceleratorType} - {"ACCELERATOR_TYPE_UNSPECIFIED"}
    assert enum == VERTEX_ACCELERATORS
    # The compat type the SDK's jobs use is the same enum.
    assert {m.name for m in compat.AcceleratorType} - {"ACCELERATOR_TYPE_UNSPECIFIED"} == enum


@pytest.mark.parametrize("member", ["NVIDIA_L4", "NVIDIA_H100_80GB", "TPU_V5_LITEPOD"])
def test_submit_vertex_accepts_names_the_machine_spec_proto_takes(member):
    """A name we accept goes into `MachineSpec.accelerator_type` as that enum value."""
    from google.cloud.aiplatform_v1.types import AcceleratorType, MachineSpec

    spec = MachineSpec(accelerator_type=validate_accelerator(VERTEX, member), accelerator_count=1)
    assert spec.accelerator_type == AcceleratorType[member]


def test_submit_vertex_refuses_the_proto_default():
    with pytest.raises(ValueError, match="for Vertex AI must be one of NVIDIA_A100_80GB, "):
        validate_accelerator(VERTEX, "ACCELERATOR_TYPE_UNSPECIFIED")


# ---------------------------------------------------------------- Kubeflow: Kubernetes grammar
# Kubernetes accepts a container resource outside its own names when it is an *extended
# resource*: `<prefix>/<name>` where the prefix is a DNS-1123 subdomain (lowercase labels of
# [a-z0-9-] joined by dots, at most 253 characters, and still one after `requests.` is put in
# front for quotas) and the name is a qualified name ([A-Za-z0-9] at both ends, [-A-Za-z0-9_.]
# inside, at most 63 characters); names with `kubernetes.io/` are reserved (native resources)
# and names starting with `requests.` are refused.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def kubernetes_extended_resource(name: str) -> bool:
    """Kubernetes' rule for an extended resource name, written from its documentation."""
    if "/" not in name or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    prefix, _, rest = ("requests." + name).partition("/")
    return (
        len(prefix) <= 253
        and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
        and len(rest) <= 63
        and _QUALIFIED_NAME.fullmatch(rest) is not None
    )


# (name, what Kubernetes says): examples labelled by hand from the rules above.
KUBERNETES_NAMES = [
    ("nvidia.com/gpu", True),
    ("amd.com/gpu", True),
    ("google.com/tpu", True),
    ("acme.io/npu", True),
    ("example/gpu", True),  # a prefix needs no dot
    ("nvidia.com/mig-1g.5gb", True),
    ("gpu.intel.com/i915", True),
    ("vendor.example.com/Big_Card.v2", True),
    ("a.b/" + "x" * 63, True),
    ("a.b/" + "x" * 64, False),  # name over 63 characters
    ("d" * 240 + ".com/gpu", True),  # `requests.` + prefix is 253 characters
    ("d" * 241 + ".com/gpu", False),
    ("kubernetes.io/gpu", False),  # reserved for native resources
    ("foo.kubernetes.io/gpu", False),
    ("requests.nvidia.com/gpu", False),
    ("gpu", False),
    ("NVIDIA_L4", False),
    ("Nvidia.com/gpu", False),  # uppercase prefix
    ("nvidia.com/", False),
    ("/gpu", False),
    ("nvidia.com/gpu/x", False),
    ("nvidia-.com/gpu", False),
    ("nvidia..com/gpu", False),
    ("nvidia.com/-gpu", False),
    ("nvidia.com/gpu_", False),
    ("nvidia.com/g pu", False),
]


@pytest.mark.parametrize(("name", "valid"), KUBERNETES_NAMES)
def test_submit_kubeflow_accepts_exactly_kubernetes_extended_resources(name, valid):
    assert kubernetes_extended_resource(name) is valid  # the reference agrees with the labels
    if valid:
        assert validate_accelerator(KUBEFLOW, name) == name
    else:
        with pytest.raises(ValueError, match=re.escape(f"Received: accelerator_type={name!r}")):
            validate_accelerator(KUBEFLOW, name)


@pytest.mark.parametrize("name", sorted(KUBEFLOW_ACCELERATORS))
def test_submit_kubeflow_known_names_are_extended_resources(name):
    assert kubernetes_extended_resource(name)


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
    else:
        assert f"Received: target={target!r}" in str(caught.value)
