"""Kubernetes pod settings of a Kubeflow package, chosen at compile time with kfp-kubernetes.

GPU and spot node pools are usually tainted and labelled: a training step only lands there
when it selects the pool's label and tolerates its taint. A private registry needs an image
pull secret on every pod. A hung step should not hold a GPU for ever: `task_timeout` becomes
the pod's `activeDeadlineSeconds`. Vertex AI has its own machine specs, so these settings are
for target kubeflow only.

Flag forms (`contrastive compile --help`):
    --node-selector cloud.google.com/gke-nodepool=gpu-pool     (training and evaluation steps)
    --toleration nvidia.com/gpu:NoSchedule                      (key exists, any value)
    --toleration cloud.google.com/gke-spot=true:NoSchedule      (key equals value)
    --image-pull-secret regcred                                 (every step)
    --task-timeout 86400                                        (seconds, every step)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# A label or taint key: optional DNS prefix and '/', then a name of 1-63 characters.
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_SECRET = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class Toleration:
    """A pod toleration: `operator` is "Exists" (no value) or "Equal"."""

    key: str
    effect: str
    value: str | None = None

    @property
    def operator(self) -> str:
        return "Exists" if self.value is None else "Equal"


@dataclass(frozen=True)
class KubernetesSettings:
    """Pod settings for a Kubeflow package.

    Args:
        node_selector: `(label, value)` pairs the training and evaluation pods select.
        tolerations: taints the training and evaluation pods tolerate.
        image_pull_secrets: secrets every pod pulls its image with.
        task_timeout: seconds after which any step's pod is stopped; 0 = no limit.
    """

    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    task_timeout: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.node_selector or self.tolerations or self.image_pull_secrets or self.task_timeout
        )

    @classmethod
    def from_flags(
        cls,
        *,
        node_selector: Iterable[str] = (),
        tolerations: Iterable[str] = (),
        image_pull_secrets: Iterable[str] = (),
        task_timeout: int = 0,
    ) -> KubernetesSettings:
        """Parses the command-line forms; raises `ValueError` naming the bad flag value."""
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, int) or task_timeout < 0:
            raise ValueError(
                f"task timeout must be an int >= 0 seconds (0 = none). "
                f"Received: task_timeout={task_timeout!r}"
            )
        secrets = tuple(image_pull_secrets)
        for secret in secrets:
            if not _SECRET.match(secret):
                raise ValueError(
                    "image pull secret must be a Kubernetes secret name like 'regcred'. "
                    f"Received: image_pull_secret={secret!r}"
                )
        return cls(
            node_selector=tuple(parse_node_selector(text) for text in node_selector),
            tolerations=tuple(parse_toleration(text) for text in tolerations),
            image_pull_secrets=secrets,
            task_timeout=task_timeout,
        )

    def pod_settings(self) -> dict:
        """The settings as Kubernetes pod fields, for pods KFP does not create (a training
        step's TrainJob, `pipelines.targets.trainjob.launcher_settings`)."""
        tolerations = []
        for toleration in self.tolerations:
            item = {"key": toleration.key, "operator": toleration.operator}
            if toleration.value is not None:
                item["value"] = toleration.value
            tolerations.append({**item, "effect": toleration.effect})
        return {
            "node_selector": dict(self.node_selector),
            "tolerations": tolerations,
            "image_pull_secrets": list(self.image_pull_secrets),
            "active_deadline_seconds": self.task_timeout,
        }

    def apply(self, task, *, accelerated: bool):
        """Adds the settings to a `PipelineTask`; node pool settings only if `accelerated`."""
        from kfp import kubernetes

        if accelerated:
            for label, value in self.node_selector:
                kubernetes.add_node_selector(task, label_key=label, label_value=value)
            for toleration in self.tolerations:
                kubernetes.add_toleration(
                    task,
                    key=toleration.key,
                    operator=toleration.operator,
                    value=toleration.value,
                    effect=toleration.effect,
                )
        if self.image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(self.image_pull_secrets))
        if self.task_timeout:
            kubernetes.set_timeout(task, self.task_timeout)
        return task


def parse_node_selector(text: str) -> tuple[str, str]:
    """`"LABEL=VALUE"` -> `(label, value)`."""
    label, sep, value = text.partition("=")
    if not sep or not _KEY.match(label) or not _VALUE.match(value):
        raise ValueError(
            "node selector must be LABEL=VALUE with a Kubernetes label, e.g. "
            f"'cloud.google.com/gke-nodepool=gpu-pool'. Received: node_selector={text!r}"
        )
    return label, value


def parse_toleration(text: str) -> Toleration:
    """`"KEY:EFFECT"` (the key exists) or `"KEY=VALUE:EFFECT"` (the key equals the value)."""
    body, sep, effect = text.rpartition(":")
    key, has_value, value = body.partition("=")
    if not sep or effect not in EFFECTS or not _KEY.match(key):
        raise ValueError(
            f"toleration must be KEY[=VALUE]:EFFECT with EFFECT one of {', '.join(EFFECTS)}, "
            f"e.g. 'nvidia.com/gpu:NoSchedule'. Received: toleration={text!r}"
        )
    if has_value and not _VALUE.match(value):
        raise ValueError(
            f"toleration value must be a Kubernetes label value. Received: toleration={text!r}"
        )
    return Toleration(key=key, effect=effect, value=value if has_value else None)


__all__ = ["EFFECTS", "KubernetesSettings", "Toleration", "parse_node_selector", "parse_toleration"]
