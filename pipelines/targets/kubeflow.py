"""The Kubeflow target: Kubeflow Pipelines on Kubernetes.

Accelerators are Kubernetes extended resource names (`nvidia.com/gpu`). Pod settings (node
selector, tolerations, image pull secrets, a timeout) come from kfp-kubernetes
(`pipelines.targets.kubernetes`). Scale-out: with `replicas > 1` each training task is a
launcher (no GPU) whose step runs as a Kubeflow Trainer TrainJob of `replicas` nodes
(`pipelines.targets.trainjob`): the task carries `contrastive.environment.LAUNCHER_VARIABLE`
naming `trainjob.launch_training_step`. Runs go through `kfp.Client`; recurring runs take
robfig/cron's 6 fields, seconds first.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from kfp import dsl

from pipelines.cron import CronDialect
from pipelines.targets.base import Connection, SubmitError, Target
from pipelines.targets.kubernetes import KubernetesSettings

# Extended resources the common device plugins register. Any other `domain/name` is accepted
# too (clusters add their own), but a Vertex enum name is refused with a hint.
ACCELERATORS = frozenset(
    {
        "nvidia.com/gpu",
        "amd.com/gpu",
        "intel.com/gpu",
        "google.com/tpu",
        "habana.ai/gaudi",
    }
)
# A Kubernetes extended resource: `<DNS-1123 subdomain>/<qualified name>`.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The launcher pod of a training step on several nodes waits for its TrainJob.
LAUNCHER_CPU, LAUNCHER_MEMORY = "1", "4G"


@dataclass(frozen=True)
class KubeflowSettings:
    """Kubeflow's compile-time settings: the pods' Kubernetes settings."""

    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)


@dataclass(frozen=True)
class KubeflowConnection(Connection):
    """How to reach Kubeflow Pipelines.

    Args:
        host: KFP API URL, e.g. `http://localhost:8080`.
        namespace: Kubernetes namespace of a multi-user KFP.
        pipeline_root, service_account (a Kubernetes service account name), experiment (a KFP
            experiment, created if missing), credentials (`kfp.client` token credentials):
            as `Connection`.
    """

    target = "kubeflow"
    host: str | None = None
    namespace: str | None = None

    def check(self) -> None:
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

    def url(self, kind: str, resource_id: str) -> str:
        """The KFP UI page of a run (`kind="runs"`) or a recurring run (`"recurringrun"`)."""
        page = "runs/details" if kind == "runs" else "recurringrun/details"
        return f"{self.host.rstrip('/')}/#/{page}/{resource_id}"


class KubeflowTarget(Target):
    name = "kubeflow"
    label = "Kubeflow"
    title = "Kubeflow Pipelines API"
    accelerator_kind = "a Kubernetes resource name"
    accelerator_needs = "a Kubernetes resource name such as 'nvidia.com/gpu'"
    accelerator_example = "nvidia.com/gpu"
    default_accelerator = "nvidia.com/gpu"
    # KFP 2.17's driver resolves `{{$.pipeline_job_name}}` to the run's display name
    # (kfp.Client's default: "<pipeline> %Y-%m-%d %H-%M-%S", spaces; two runs may share it)
    # and `{{$.pipeline_job_uuid}}` to the run's UUID (kubeflow/pipelines 2.17.0
    # backend/src/v2/driver/resolve.go): the UUID names the run.
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    scales_out = True
    Settings = KubeflowSettings
    settings_title = (
        "node selector, tolerations, image pull secrets and task timeout are Kubernetes settings"
    )
    Connection = KubeflowConnection
    connection_notes = {
        "experiment": "a KFP experiment (default 'Default')",
        "pipeline_root": "optional (default: the deployment's object store)",
        "service_account": "Kubernetes service account name",
    }
    cron_help = "6 fields with seconds first ('0 0 3 * * 1')"
    cron = CronDialect(
        seconds=True,
        time_zone=False,
        question_mark=True,
        no_time_zone="the scheduler uses the cluster's time zone, usually UTC; shift the hour "
        "instead",
        count_hints={
            5: "Kubeflow cron starts with seconds, e.g. '0 0 3 * * 1' for 03:00 on Mondays"
        },
    )

    def __init__(self, options, settings=None):
        super().__init__(options, settings)
        self.pods = self.settings.kubernetes
        self.launcher = None
        if options.replicas > 1:
            self.launcher = _launcher_value(
                options.image,
                options.replicas,
                options.accelerator_count,
                self.accelerator_type,
                self.pods,
            )

    @classmethod
    def accelerator_error(cls, accelerator_type):
        if _is_extended_resource(accelerator_type):
            return None
        return (
            "accelerator type for Kubeflow must be a Kubernetes resource name like "
            f"'nvidia.com/gpu' (known: {', '.join(sorted(ACCELERATORS))})"
        )

    def ingest(self, task):
        return self.pods.apply(super().ingest(task), accelerated=False)

    def training(self, task):
        if self.launcher is None:
            return super().training(task)
        # The TrainJob holds the machines; this pod only launches and follows it.
        from contrastive.environment import LAUNCHER_VARIABLE

        task.set_env_variable(LAUNCHER_VARIABLE, self.launcher)
        task.set_env_variable("KERAS_BACKEND", "jax")
        task.set_cpu_limit(LAUNCHER_CPU).set_memory_limit(LAUNCHER_MEMORY)
        return self.pods.apply(task, accelerated=False)

    def accelerated(self, task):
        return self.pods.apply(super().accelerated(task), accelerated=True)

    def light(self, task):
        return self.pods.apply(task, accelerated=False)

    # --------------------------------------------------------------------- the command line

    @classmethod
    def add_compile_arguments(cls, parser):
        group = parser.add_argument_group(
            "Kubernetes pod settings (target kubeflow only, kfp-kubernetes)"
        )
        group.add_argument(
            "--node-selector",
            action="append",
            default=[],
            metavar="LABEL=VALUE",
            help="node label the training and evaluation pods select, e.g. "
            "cloud.google.com/gke-nodepool=gpu-pool (repeatable)",
        )
        group.add_argument(
            "--toleration",
            action="append",
            default=[],
            metavar="KEY[=VALUE]:EFFECT",
            help="taint the training and evaluation pods tolerate, e.g. "
            "nvidia.com/gpu:NoSchedule or cloud.google.com/gke-spot=true:NoSchedule "
            "(repeatable)",
        )
        group.add_argument(
            "--image-pull-secret",
            action="append",
            default=[],
            metavar="NAME",
            help="secret every pod pulls the image with, for a private registry (repeatable)",
        )
        group.add_argument(
            "--task-timeout",
            type=int,
            default=0,
            metavar="SECONDS",
            help="stop any step's pod after this many seconds (0 = no limit)",
        )

    @classmethod
    def settings_from_args(cls, args):
        return KubeflowSettings(
            KubernetesSettings.from_flags(
                node_selector=args.node_selector,
                tolerations=args.toleration,
                image_pull_secrets=args.image_pull_secret,
                task_timeout=args.task_timeout,
            )
        )

    @classmethod
    def add_connection_arguments(cls, parser):
        parser.add_argument(
            "--host", metavar="URL", help="kubeflow: KFP API URL, e.g. http://localhost:8080"
        )
        parser.add_argument(
            "--namespace", metavar="NS", help="kubeflow: namespace of a multi-user deployment"
        )
        return ["host", "namespace"]

    @classmethod
    def add_commands(cls, subparsers):
        from pipelines.targets import trainjob

        trainjob.add_command(subparsers)

    # ---------------------------------------------------------------- submit and schedule

    @classmethod
    def submit(cls, run, connection, *, run_name, enable_caching, run_record_timeout_s):
        from pipelines.package import package_file

        client = connection.kfp_client()
        with package_file(run.package, enable_caching) as path:
            result = client.create_run_from_pipeline_package(
                path,
                arguments=run.params,
                run_name=run_name,
                experiment_name=connection.experiment,
                namespace=connection.namespace,
                pipeline_root=connection.pipeline_root,
                enable_caching=enable_caching,
                service_account=connection.service_account,
            )
        return {"run_id": result.run_id, "url": connection.url("runs", result.run_id)}

    @classmethod
    def schedule(cls, run, connection, *, cron, schedule_name, enable_caching, max_concurrency):
        from pipelines.package import package_file

        client = connection.kfp_client()
        experiment_id = client.create_experiment(
            name=connection.experiment or "Default", namespace=connection.namespace
        ).experiment_id
        with package_file(run.package, enable_caching) as path:
            created = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=schedule_name,
                cron_expression=cron,
                max_concurrency=max_concurrency,
                no_catchup=True,
                params=run.params,
                pipeline_package_path=path,
                pipeline_root=connection.pipeline_root,
                enable_caching=enable_caching,
                service_account=connection.service_account,
            )
        schedule_id = created.recurring_run_id
        return {"schedule_id": schedule_id, "url": connection.url("recurringrun", schedule_id)}


def _launcher_value(image, replicas, accelerator_count, accelerator_type, pods) -> str:
    """`LAUNCHER_VARIABLE` of a training task on several nodes: a TrainJob of `replicas`
    nodes x `accelerator_count` GPUs in `image` running the step's command, followed to its
    end (`trainjob.launch_training_step`). The pod settings apply to the launcher; the
    TrainJob's pods get the GPU steps' ones (node selector, tolerations, pull secrets, the
    timeout as `activeDeadlineSeconds`) and the launcher pod's service account."""
    from contrastive.environment import hook_value
    from pipelines.targets.trainjob import launcher_settings

    settings = launcher_settings(
        image=image,
        num_nodes=replicas,
        gpus_per_node=accelerator_count,
        gpu_resource=accelerator_type,
        **pods.pod_settings(),
    )
    return hook_value("pipelines.targets.trainjob:launch_training_step", **settings)


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


__all__ = ["ACCELERATORS", "KubeflowConnection", "KubeflowSettings", "KubeflowTarget"]
