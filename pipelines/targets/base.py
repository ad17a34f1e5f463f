"""Where a compiled pipeline can run, and the accelerator names each place understands.

Kubeflow Pipelines schedules pods on Kubernetes, so an accelerator is a Kubernetes extended
resource name (`nvidia.com/gpu`). Vertex AI Pipelines takes its own machine-spec enum
(`NVIDIA_L4`). A package compiled for one target fails only at run time on the other, after
the queue wait, so `pipelines.compile` and `pipelines.submit` both call `validate_accelerator`.
"""

from __future__ import annotations

import re

KUBEFLOW = "kubeflow"
VERTEX = "vertex"
TARGETS = (KUBEFLOW, VERTEX)

# Extended resources the common device plugins register. Any other `domain/name` is accepted
# too (clusters add their own), but a Vertex enum name is refused with a hint.
KUBEFLOW_ACCELERATORS = frozenset(
    {
        "nvidia.com/gpu",
        "amd.com/gpu",
        "intel.com/gpu",
        "google.com/tpu",
        "habana.ai/gaudi",
    }
)

# Vertex AI `AcceleratorType` values usable by pipeline steps (custom-job machine specs).
VERTEX_ACCELERATORS = frozenset(
    {
        "NVIDIA_TESLA_K80",
        "NVIDIA_TESLA_P4",
        "NVIDIA_TESLA_P100",
        "NVIDIA_TESLA_V100",
        "NVIDIA_TESLA_T4",
        "NVIDIA_TESLA_A100",
        "NVIDIA_A100_80GB",
        "NVIDIA_L4",
        "NVIDIA_H100_80GB",
        "NVIDIA_H100_MEGA_80GB",
        "NVIDIA_H200_141GB",
        "NVIDIA_B200",
        "NVIDIA_GB200",
        "NVIDIA_RTX_PRO_6000",
        "TPU_V2",
        "TPU_V3",
        "TPU_V4_POD",
        "TPU_V5_LITEPOD",
    }
)

# A Kubernetes extended resource: `<DNS-1123 subdomain>/<qualified name>`.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def _is_extended_resource(name: str) -> bool:
    """Kubernetes' test: prefix and name well formed, and neither reserved nor too long (the
    API server checks `requests.<name>` for quotas, so the prefix gets 253 - 9 characters)."""
    prefix, slash, rest = name.partition("/")
    if not slash or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    return (
        len("requests." + prefix) <= 253
        and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
        and len(rest) <= 63
        and _QUALIFIED_NAME.fullmatch(rest) is not None
    )


def validate_target(target: str) -> str:
    """Returns `target` if it is a known target, else raises `ValueError` naming the choices."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}. Received: target={target!r}")
    return target


def validate_accelerator(target: str, accelerator_type: str) -> str:
    """Checks that `accelerator_type` is a name `target` understands.

    Args:
        target: `"kubeflow"` or `"vertex"`.
        accelerator_type: the value given to `task.set_accelerator_type(...)`.

    Returns:
        `accelerator_type`, unchanged.

    Raises:
        ValueError: with the expected form of the name for `target`, e.g.
            `"accelerator type 'NVIDIA_L4' is a Vertex AI name; Kubeflow needs a Kubernetes
            resource name such as 'nvidia.com/gpu'. Received: accelerator_type='NVIDIA_L4'"`.
    """
    validate_target(target)
    received = f"Received: accelerator_type={accelerator_type!r}"
    if not isinstance(accelerator_type, str) or not accelerator_type:
        raise ValueError(f"accelerator type must be a non-empty string. {received}")
    if target == KUBEFLOW:
        if accelerator_type in VERTEX_ACCELERATORS or accelerator_type.upper() in (
            VERTEX_ACCELERATORS
        ):
            raise ValueError(
                f"accelerator type {accelerator_type!r} is a Vertex AI name; Kubeflow needs a "
                f"Kubernetes resource name such as 'nvidia.com/gpu'. {received}"
            )
        if _is_extended_resource(accelerator_type):
            return accelerator_type
        raise ValueError(
            "accelerator type for Kubeflow must be a Kubernetes resource name like "
            f"'nvidia.com/gpu' (known: {', '.join(sorted(KUBEFLOW_ACCELERATORS))}). {received}"
        )
    if accelerator_type in VERTEX_ACCELERATORS:
        return accelerator_type
    if "/" in accelerator_type:
        raise ValueError(
            f"accelerator type {accelerator_type!r} is a Kubernetes resource name; Vertex AI "
            f"needs one of {', '.join(sorted(VERTEX_ACCELERATORS))}. {received}"
        )
    raise ValueError(
        f"accelerator type for Vertex AI must be one of {', '.join(sorted(VERTEX_ACCELERATORS))}."
        f" {received}"
    )
