"""Where `submit` and `schedule` send a compiled pipeline: one `Connection` per target.

A `Connection` holds what both commands need to reach a cluster (the KFP API URL, or the
Google Cloud project and region), checks it before any request (`check`), and hands out the
official client: `kfp.Client` for Kubeflow, `google.cloud.aiplatform` (initialised for this
project and region) for Vertex AI.

The Vertex SDK is driven over its REST transport: the same transport in production and in
the tests, which point `api_endpoint` at a loopback server that records every request.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

from pipelines.targets import KUBEFLOW, TARGETS, VERTEX

VERTEX_TRANSPORT = "rest"
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SubmitError(ValueError):
    """A submission was refused before any request: the message names the bad field."""


@dataclass(frozen=True)
class Connection:
    """How to reach one target.

    Args:
        target: `"kubeflow"` or `"vertex"`.
        host: KFP API URL (kubeflow), e.g. `http://localhost:8080`.
        namespace: Kubernetes namespace of a multi-user KFP (kubeflow).
        project, region: Google Cloud project and region (vertex).
        pipeline_root: where run artifacts go; required `gs://...` for vertex.
        service_account: Kubernetes service account name (kubeflow) or e-mail (vertex).
        experiment: KFP experiment (kubeflow, created if missing) or Vertex AI Experiment
            (vertex, created if missing) that runs are filed under.
        tensorboard: Vertex AI TensorBoard resource name backing `experiment` (vertex).
        credentials: `kfp.client` token credentials (kubeflow) or google-auth credentials
            (vertex; default: application default credentials).
        api_endpoint: Vertex API host, default `{region}-aiplatform.googleapis.com`.
    """

    target: str
    host: str | None = None
    namespace: str | None = None
    project: str | None = None
    region: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    experiment: str | None = None
    tensorboard: str | None = None
    credentials: Any = None
    api_endpoint: str | None = None

    def check(self) -> None:
        """Refuses a target without the settings it needs; sends nothing."""
        if self.target not in TARGETS:
            raise SubmitError(
                f"target must be one of {', '.join(TARGETS)}. Received: target={self.target!r}"
            )
        if self.target == KUBEFLOW:
            self._check_kubeflow()
        else:
            self._check_vertex()

    def _check_kubeflow(self) -> None:
        host = self.host
        if not host:
            raise SubmitError("--host is required for target kubeflow (the KFP API URL)")
        if not host.startswith(("http://", "https://")):
            raise SubmitError(f"host must start with http:// or https://. Received: host={host!r}")
        if self.service_account and not _K8S_NAME.match(self.service_account):
            raise SubmitError(
                "service account for kubeflow is a Kubernetes service account name like "
                f"'pipeline-runner'. Received: service_account={self.service_account!r}"
            )
        if self.tensorboard:
            raise SubmitError(
                "--tensorboard is a Vertex AI TensorBoard resource; it is for target vertex. "
                f"Received: tensorboard={self.tensorboard!r}"
            )

    def _check_vertex(self) -> None:
        for field, value in (("project", self.project), ("region", self.region)):
            if not value:
                raise SubmitError(f"--{field} is required for target vertex")
        root = self.pipeline_root
        if not root:
            raise SubmitError("--pipeline-root is required for target vertex (a gs:// URI)")
        if not root.startswith("gs://") or len(root) <= len("gs://"):
            raise SubmitError(
                f"pipeline root for vertex must be a gs:// URI. Received: pipeline_root={root!r}"
            )
        if self.service_account and "@" not in self.service_account:
            raise SubmitError(
                "service account for vertex is an e-mail like "
                "'trainer@PROJECT.iam.gserviceaccount.com'. "
                f"Received: service_account={self.service_account!r}"
            )
        if self.tensorboard and not self.experiment:
            raise SubmitError(
                "--tensorboard backs a Vertex AI Experiment; give --experiment NAME too. "
                f"Received: tensorboard={self.tensorboard!r}"
            )
        if self.tensorboard and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/tensorboards/[^/]+|[0-9]+", self.tensorboard
        ):
            raise SubmitError(
                "tensorboard must be a resource name "
                "'projects/P/locations/R/tensorboards/ID' or a numeric id. "
                f"Received: tensorboard={self.tensorboard!r}"
            )

    def kfp_client(self):
        """A `kfp.Client` for `host`; its "needs KFP >= 2.0.0-beta.2" warning is silenced."""
        import kfp

        options: dict[str, Any] = {"host": self.host}
        if self.namespace:
            options["namespace"] = self.namespace
        if self.credentials is not None:
            options["credentials"] = self.credentials
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(**options)

    def vertex(self):
        """`google.cloud.aiplatform`, initialised for this project, region and endpoint."""
        from google.cloud import aiplatform

        aiplatform.init(
            project=self.project,
            location=self.region,
            credentials=self.credentials,
            api_endpoint=self.api_endpoint,
            api_transport=VERTEX_TRANSPORT,
        )
        return aiplatform

    def vertex_experiment(self):
        """The Vertex AI Experiment `experiment` (created if missing), backed by
        `tensorboard` when one is given; None without an experiment."""
        if not self.experiment:
            return None
        aiplatform = self.vertex()
        experiment = aiplatform.Experiment.get_or_create(
            self.experiment,
            project=self.project,
            location=self.region,
            credentials=self.credentials,
        )
        if self.tensorboard:
            experiment.assign_backing_tensorboard(self.tensorboard)
        return experiment

    def kubeflow_url(self, kind: str, resource_id: str) -> str:
        """The KFP UI page of a run (`kind="runs"`) or a recurring run (`"recurringrun"`)."""
        page = "runs/details" if kind == "runs" else "recurringrun/details"
        return f"{self.host.rstrip('/')}/#/{page}/{resource_id}"

    def vertex_url(self, kind: str, resource_id: str) -> str:
        """The Cloud console page of a pipeline run (`kind="runs"`) or a schedule."""
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{self.region}/pipelines/"
            f"{kind}/{resource_id}?project={self.project}"
        )


__all__ = ["KUBEFLOW", "VERTEX", "Connection", "SubmitError"]
