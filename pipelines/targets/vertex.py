"""The Vertex target: Vertex AI Pipelines, and the Vertex AI Model Registry.

Accelerators are Vertex's machine-spec enum names (`NVIDIA_L4`). Scale-out: with
`replicas > 1` the training steps run as Vertex CustomJobs of `replicas` replicas (GCPC
`create_custom_training_job_from_component`) on a machine type from `MACHINE_TYPES` (or
`--machine-type`), as the PipelineJob's service account. Runs go through
`google.cloud.aiplatform.PipelineJob` over its REST transport (the same transport in
production and in the tests, which point `api_endpoint` at a loopback server); schedules take
5 unix-cron fields with an optional `TZ=` prefix. A promoted champion becomes a new version of
a Vertex Model (`publish_champion`, which the gate calls through
`contrastive.environment.PUBLISHER_VARIABLE`, set on the gate's task here).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import components
from pipelines.cron import CronDialect, ScheduleError
from pipelines.targets.base import Connection, SubmitError, Target

# Vertex AI `AcceleratorType` values usable by pipeline steps (custom-job machine specs).
ACCELERATORS = frozenset(
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
# Machine type per accelerator and count, for training steps run as CustomJobs
# (replicas > 1); other combinations need --machine-type.
MACHINE_TYPES = {
    "NVIDIA_L4": {
        1: "g2-standard-12",
        2: "g2-standard-24",
        4: "g2-standard-48",
        8: "g2-standard-96",
    },
    "NVIDIA_TESLA_A100": {
        1: "a2-highgpu-1g",
        2: "a2-highgpu-2g",
        4: "a2-highgpu-4g",
        8: "a2-highgpu-8g",
    },
    "NVIDIA_A100_80GB": {
        1: "a2-ultragpu-1g",
        2: "a2-ultragpu-2g",
        4: "a2-ultragpu-4g",
        8: "a2-ultragpu-8g",
    },
    "NVIDIA_H100_80GB": {8: "a3-highgpu-8g"},
}
STRATEGIES = ("STANDARD", "SPOT")
# google-cloud-pipeline-components 2.22.0 `_placeholders.SERVICE_ACCOUNT_PLACEHOLDER`: the
# PipelineJob's service account, resolved by Vertex at run time.
SERVICE_ACCOUNT_PLACEHOLDER = "{{$.pipeline_service_account}}"
TRANSPORT = "rest"
# Vertex pipeline job ids: a lowercase letter, then lowercase letters, digits and dashes.
_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")

CHAMPION_ALIAS = "champion"
# Vertex AI's prebuilt TensorFlow 2 CPU prediction image; override for GPUs or a newer TF.
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
# UploadModelRequest.model_id: "up to 63 characters, and valid characters are [a-z0-9_-]. The
# first character cannot be a number or hyphen." (google-cloud-aiplatform 1.165.1,
# google/cloud/aiplatform_v1/types/model_service.py)
_MODEL_ID = re.compile(r"^[a-z_][-a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class VertexSettings:
    """Vertex's compile-time settings, for training steps run as CustomJobs (`replicas > 1`).

    Args:
        machine_type: of each replica; "": from `MACHINE_TYPES` by accelerator and count.
        strategy: `STANDARD` or `SPOT` VMs.
        job_output_dir: the CustomJobs' base output directory (gs://); "": Vertex's.
    """

    machine_type: str = ""
    strategy: str = "STANDARD"
    job_output_dir: str = ""


@dataclass(frozen=True)
class VertexConnection(Connection):
    """How to reach Vertex AI Pipelines.

    Args:
        project, region: Google Cloud project and region.
        tensorboard: Vertex AI TensorBoard resource name backing `experiment`.
        vertex_model: a promoted champion also becomes a new version of this Vertex Model.
        api_endpoint: Vertex API host, default `{region}-aiplatform.googleapis.com`.
        pipeline_root (required, gs://), service_account (an e-mail), experiment (a Vertex AI
            Experiment, created if missing), credentials (google-auth; default: application
            default credentials): as `Connection`.
    """

    target = "vertex"
    project: str | None = None
    region: str | None = None
    tensorboard: str | None = None
    vertex_model: str | None = None
    api_endpoint: str | None = None

    def check(self) -> None:
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

    def vertex(self):
        """`google.cloud.aiplatform`, initialised for this project, region and endpoint."""
        from google.cloud import aiplatform

        aiplatform.init(
            project=self.project,
            location=self.region,
            credentials=self.credentials,
            api_endpoint=self.api_endpoint,
            api_transport=TRANSPORT,
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

    def url(self, kind: str, resource_id: str) -> str:
        """The Cloud console page of a pipeline run (`kind="runs"`) or a schedule."""
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{self.region}/pipelines/"
            f"{kind}/{resource_id}?project={self.project}"
        )


class VertexTarget(Target):
    name = "vertex"
    label = "Vertex AI"
    title = "Vertex AI Pipelines"
    accelerator_kind = "a Vertex AI name"
    accelerator_needs = f"one of {', '.join(sorted(ACCELERATORS))}"
    accelerator_example = "NVIDIA_L4, NVIDIA_H100_80GB"
    default_accelerator = "NVIDIA_L4"
    # Vertex resolves `{{$.pipeline_job_name}}` to the job id `contrastive submit` gives
    # (`vertex_job_id`): letters, digits and '-'.
    scales_out = True
    Settings = VertexSettings
    settings_title = (
        "machine type, strategy and job output directory (Vertex AI CustomJob settings)"
    )
    Connection = VertexConnection
    connection_notes = {
        "experiment": "a Vertex AI Experiment (submit only)",
        "pipeline_root": "required, gs://BUCKET/PATH",
        "service_account": "service account e-mail",
    }
    cron_help = "5 fields with an optional 'TZ=Area/City ' prefix ('0 3 * * 1')"
    cron = CronDialect(
        seconds=False,
        time_zone=True,
        count_hints={
            6: "Vertex AI cron has no seconds field, e.g. '0 3 * * 1' for 03:00 on Mondays"
        },
    )

    def __init__(self, options, settings=None):
        from contrastive.validation import check_choice

        super().__init__(options, settings)
        check_choice("strategy", self.settings.strategy, STRATEGIES)
        self.custom_jobs = options.replicas > 1
        if self.custom_jobs:
            self.machine_type = self.settings.machine_type or machine_type(
                self.accelerator_type, options.accelerator_count
            )

    @classmethod
    def accelerator_error(cls, accelerator_type):
        if accelerator_type in ACCELERATORS:
            return None
        return f"accelerator type for Vertex AI must be {cls.accelerator_needs}"

    def training_components(self, built):
        """`replicas > 1`: the training components as CustomJobs of `replicas` identical
        replicas."""
        if not self.custom_jobs:
            return built
        from google_cloud_pipeline_components.v1.custom_job import (
            create_custom_training_job_from_component,
        )

        options = self.options
        env = [{"name": "KERAS_BACKEND", "value": options.backend}]
        wrapped = {
            name: create_custom_training_job_from_component(
                getattr(built, name),
                display_name=name.replace("_", "-"),
                replica_count=options.replicas,
                machine_type=self.machine_type,
                accelerator_type=self.accelerator_type if options.accelerator_count > 0 else "",
                accelerator_count=options.accelerator_count,
                strategy=self.settings.strategy,
                base_output_directory=self.settings.job_output_dir,
                env=env,
            )
            for name in components.TRAINING
        }
        return SimpleNamespace(**{**vars(built), **wrapped})

    def training_inputs(self):
        # A CustomJob runs as the PipelineJob's service account (GCPC's placeholder, which
        # Vertex resolves); without it Vertex uses its Custom Code Service Agent.
        return {"service_account": SERVICE_ACCOUNT_PLACEHOLDER} if self.custom_jobs else {}

    def training(self, task):
        if self.custom_jobs:
            return task  # the CustomJob holds the machines; this task only launches it
        return super().training(task)

    def gate(self, task):
        from contrastive.environment import PUBLISHER_VARIABLE, hook_value

        # A `vertex_model` given at run time: a promoted champion becomes its new version.
        task.set_env_variable(
            PUBLISHER_VARIABLE, hook_value("pipelines.targets.vertex:publish_champion")
        )
        return super().gate(task)

    # --------------------------------------------------------------------- the command line

    @classmethod
    def add_compile_arguments(cls, parser):
        group = parser.add_argument_group(
            "Vertex AI CustomJobs (target vertex only, --replicas > 1)"
        )
        group.add_argument(
            "--machine-type", default="", help="machine of each replica (default: by GPU)"
        )
        group.add_argument(
            "--strategy", default="STANDARD", choices=list(STRATEGIES), help="STANDARD or SPOT VMs"
        )
        group.add_argument(
            "--job-output-dir", default="", help="CustomJob base output directory (gs://)"
        )

    @classmethod
    def settings_from_args(cls, args):
        return VertexSettings(args.machine_type, args.strategy, args.job_output_dir)

    @classmethod
    def add_connection_arguments(cls, parser):
        parser.add_argument("--project", metavar="P", help="vertex: Google Cloud project id")
        parser.add_argument("--region", metavar="R", help="vertex: region, e.g. us-central1")
        parser.add_argument(
            "--tensorboard",
            metavar="RESOURCE",
            help="vertex: TensorBoard backing --experiment, projects/P/locations/R/tensorboards/ID",
        )
        parser.add_argument(
            "--vertex-model",
            metavar="ID",
            help="vertex: a promoted champion also becomes a new version of this Vertex Model "
            "(alias 'champion'; created if missing); needs the registry parameter on gs://",
        )
        return ["project", "region", "tensorboard", "vertex_model"]

    # ---------------------------------------------------------------- submit and schedule

    @classmethod
    def run_values(cls, values, connection):
        """`values` plus what the champion gate needs to upload a promoted model as a version
        of the Vertex Model `connection.vertex_model` (the champion registry must be on
        gs://)."""
        model_id = connection.vertex_model
        if model_id is None:
            return dict(values)
        try:
            check_model_id(model_id)
        except ValueError as err:
            raise SubmitError(str(err)) from None
        registry = values.get("registry", "")
        if not (isinstance(registry, str) and registry.startswith("gs://")):
            raise SubmitError(
                "--vertex-model needs the champion registry on Cloud Storage: set the pipeline "
                f"parameter registry to a gs:// prefix in --params. Received: registry={registry!r}"
            )
        return {
            **values,
            "vertex_model": model_id,
            "vertex_project": connection.project,
            "vertex_region": connection.region,
        }

    @classmethod
    def submit(
        cls,
        run,
        connection,
        *,
        run_name,
        enable_caching,
        run_record_timeout_s,
    ):
        from pipelines.package import package_file

        display_name = run_name or run.package.name
        experiment = connection.vertex_experiment()
        with package_file(run.package, enable_caching) as path:
            job = pipeline_job(
                connection,
                run,
                template_path=path,
                display_name=display_name,
                job_id=vertex_job_id(display_name),
            )
            # Filed under the experiment below: the SDK's own wait for the run record has no
            # bound.
            job.submit(service_account=connection.service_account)
        job_id = job.resource_name.rsplit("/", 1)[-1]
        url = connection.url("runs", job_id)
        if experiment is not None:
            wait_for_run_record(job, url=url, timeout_s=run_record_timeout_s)
            job._associate_to_experiment(experiment)  # what submit(experiment=...) calls
        return {"run_id": job_id, "url": url}

    @classmethod
    def check_schedule(cls, connection):
        if connection.experiment:
            raise ScheduleError(
                "--experiment is for `submit` on vertex: a Vertex AI schedule cannot file its "
                f"runs under an Experiment. Received: experiment={connection.experiment!r}"
            )

    @classmethod
    def schedule(cls, run, connection, *, cron, schedule_name, enable_caching, max_concurrency):
        from pipelines.package import package_file

        with package_file(run.package, enable_caching) as path:
            job = pipeline_job(connection, run, template_path=path, display_name=schedule_name)
            # No catch-up: a schedule that fell behind starts the next run, not the missed ones.
            created = job.create_schedule(
                cron=cron,
                display_name=schedule_name,
                max_concurrent_run_count=max_concurrency,
                allow_queueing=False,
                service_account=connection.service_account,
            )
        schedule_id = created.resource_name.rsplit("/", 1)[-1]
        return {"schedule_id": schedule_id, "url": connection.url("schedules", schedule_id)}


def machine_type(accelerator_type: str, accelerator_count: int) -> str:
    """The default machine of a CustomJob replica with `accelerator_count` x
    `accelerator_type`; `ValueError` when `MACHINE_TYPES` has none."""
    machine = MACHINE_TYPES.get(accelerator_type, {}).get(accelerator_count)
    if machine is None:
        raise ValueError(
            f"no default Vertex machine type for {accelerator_count} x {accelerator_type}; "
            f"pass --machine-type. Received: accelerator_type={accelerator_type!r}, "
            f"accelerator_count={accelerator_count}"
        )
    return machine


def wait_for_run_record(job, *, url: str, timeout_s: float, poll_s: float = 2.0):
    """Poll a submitted Vertex job until Vertex has created its run record (the metadata
    context an experiment links to), at most `timeout_s` seconds.

    Raises:
        RuntimeError: the job ended without one, or `timeout_s` passed; the message says that
            the run itself was submitted and where it is.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        state = job.state  # refreshes the job from the service
        if job.gca_resource.job_detail.pipeline_run_context.name:
            return
        if job.done():
            raise RuntimeError(
                f"the run ended ({state.name}) before Vertex created its run record, so it is "
                f"not filed under the experiment: {url}"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Vertex had not created the run record after {timeout_s:g} s, so the run is "
                f"submitted but not filed under the experiment (it runs on): {url}"
            )
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


def pipeline_job(connection, run, *, template_path: str, display_name: str, job_id=None):
    """An unsent `aiplatform.PipelineJob` of `run` (caching is already set in the template)."""
    aiplatform = connection.vertex()
    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=template_path,
        job_id=job_id,
        pipeline_root=connection.pipeline_root,
        parameter_values=run.params,
        project=connection.project,
        location=connection.region,
        credentials=connection.credentials,
    )


def vertex_job_id(name: str, now: datetime.datetime | None = None) -> str:
    """`<name>-<UTC timestamp>` folded to Vertex's job id alphabet (`[a-z][-a-z0-9]*`)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = re.sub(r"[^-0-9a-z]+", "-", name.lower()).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"run-{stem}".rstrip("-")
    job_id = f"{stem[:110].rstrip('-')}-{now.strftime('%Y%m%d%H%M%S')}"
    if not _JOB_ID.match(job_id):  # pragma: no cover - the folding above guarantees it
        raise SubmitError(f"cannot derive a Vertex job id from run name {name!r}")
    return job_id


# ------------------------------------------------------------------- the Model Registry


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


def publish_champion(saved_model_uri: str, *, run_id: str, **upload) -> dict:
    """The gate's publisher (`contrastive.environment.publisher`): uploads a promoted
    champion (`upload_vertex_model`); the decision records the new version as
    `vertex_model`."""
    return {"vertex_model": upload_vertex_model(saved_model_uri, run_id=run_id, **upload)}


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
    """Uploads `saved_model_uri` (gs://) as a new version of Vertex Model `model_id`, with
    the alias `champion`, which Vertex moves from the previous version; the first upload
    creates the Model. Through the official SDK (`aiplatform.Model.upload`).

    Args:
        saved_model_uri: the promoted SavedModel directory (uint8 `serve` signature,
            `contrastive.export`), e.g. `gs://b/registry/versions/R/saved_model`.
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
        api_transport=TRANSPORT,
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
