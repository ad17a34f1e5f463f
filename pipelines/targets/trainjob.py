"""Several nodes on Kubeflow: a Kubeflow Trainer `TrainJob` on the JAX runtime, followed to its end.

`trainjob_manifest` writes the TrainJob (`trainer.kubeflow.org/v1alpha1`): `num_nodes` pods
of the `jax-distributed` ClusterTrainingRuntime, each running `command` in `image` with
`gpus_per_node` GPUs. Its pods' service account, node selector, tolerations, image pull
secrets and annotations (no Istio sidecar, which would keep a finished pod running) go
through `spec.runtimePatches` (Kubeflow Trainer >= v2.2.0, `pkg/apis/trainer/v1alpha1/
trainjob_types.go` RuntimePatch -> ... -> PodSpecPatch, on the runtime's replicated job
`node`), a task timeout through `spec.activeDeadlineSeconds` (also v2.2.0); the job is
created with strict field validation, so an older Trainer refuses it instead of dropping
them. The runtime gives every pod `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, which `contrastive pretrain` / `train` read
(`contrastive.environment.process_group`). `run_trainjob` creates it through the
Kubernetes API (the official `kubernetes` client), polls it, prints the pods' new log lines
as they come, and returns when the job completes; it raises `TrainJobError` with the job's own
reason when the job fails or is deleted, and deletes the job and raises after `timeout`.

A pipeline training step on several Kubeflow nodes: the Kubeflow target gives its task
`contrastive.environment.LAUNCHER_VARIABLE` naming `launch_training_step` with the
`launcher_settings`; the component hands the step to it (`contrastive.tasks.calls.
TrainingCall`, inputs and outputs at the task's artifact URIs in the object store), which
writes the step's command (`pipelines.cli.steps.training_argv`) and runs it as a TrainJob
(`launch_step`) from the launcher pod, which needs no GPU. `add_command` is the CLI's
`contrastive trainjob`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import signal
import threading
import time
import uuid

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
POLL_SECONDS = 10.0  # between two looks at a TrainJob (its status and its pods' new logs)
POLL_VARIABLE = "CONTRASTIVE_TRAINJOB_POLL_SECONDS"  # a launcher pod's override of it
JAX_RUNTIME = "jax-distributed"
# The replicated job of the `jax-distributed` runtime whose pods train (kubeflow/trainer
# v2.2.0 manifests/base/runtimes/jax_distributed.yaml: replicatedJobs[0].name).
JAX_REPLICATED_JOB = "node"
PATCH_MANAGER = "contrastive.launcher"  # runtimePatches[].manager: who wrote the patch
# Pods of a TrainJob run to completion; an injected Istio sidecar would keep them running.
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
# The JobSet the Trainer controller creates has the TrainJob's name; its pods carry it.
POD_SELECTOR = "jobset.sigs.k8s.io/jobset-name={name}"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TrainJobError(RuntimeError):
    """The TrainJob failed, was deleted, or ran out of time; the message says which and why."""

    exit_code = 1  # the job failed on the cluster; the command's input was fine


def trainjob_manifest(
    name,
    *,
    image,
    command,
    num_nodes,
    gpus_per_node=0,
    gpu_resource="nvidia.com/gpu",
    runtime=JAX_RUNTIME,
    env=None,
    service_account="",
    node_selector=None,
    tolerations=(),
    image_pull_secrets=(),
    active_deadline_seconds=0,
    owner=None,
):
    """The TrainJob body.

    Args:
        name: the job's name (a DNS label: lower case, digits, '-', at most 63).
        image: the container image of every node (the JAX image).
        command: the command list every node runs, e.g. `["contrastive", "pretrain", ...]`.
        num_nodes: nodes (= JAX processes), >= 1.
        gpus_per_node: GPUs of each node, >= 0.
        gpu_resource: the Kubernetes resource name of a GPU.
        runtime: the ClusterTrainingRuntime to use.
        env: extra environment variables, `{name: value}`.
        service_account: the pods' Kubernetes service account ("" : the runtime's).
        node_selector: `{label: value}` the pods select (a GPU node pool).
        tolerations: Kubernetes toleration dicts (`key`, `operator`, `value`, `effect`).
        image_pull_secrets: secret names the pods pull `image` with.
        active_deadline_seconds: seconds after which the Trainer fails the job; 0: none.
        owner: `{"name", "uid"}` of the launcher pod: the job is deleted with it.

    Raises:
        ValueError: naming the bad value.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a TrainJob name must be a DNS label. Received: name={name!r}")
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1. Received: num_nodes={num_nodes!r}")
    if not isinstance(gpus_per_node, int) or gpus_per_node < 0:
        raise ValueError(
            f"gpus_per_node must be an int >= 0. Received: gpus_per_node={gpus_per_node!r}"
        )
    if not isinstance(active_deadline_seconds, int) or active_deadline_seconds < 0:
        raise ValueError(
            "active_deadline_seconds must be an int >= 0. "
            f"Received: active_deadline_seconds={active_deadline_seconds!r}"
        )
    if not command or not all(isinstance(part, str) for part in command):
        raise ValueError(f"command must be a non-empty list of strings. Received: {command!r}")
    trainer = {
        "image": image,
        "command": list(command),
        "numNodes": num_nodes,
        "env": [{"name": key, "value": str(value)} for key, value in (env or {}).items()],
    }
    if gpus_per_node:
        trainer["resourcesPerNode"] = {"limits": {gpu_resource: gpus_per_node}}
    pod_spec = {}
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(toleration) for toleration in tolerations]
    if image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in image_pull_secrets]
    pod = {"metadata": {"annotations": dict(POD_ANNOTATIONS)}, "spec": pod_spec}
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {"name": JAX_REPLICATED_JOB, "template": {"spec": {"template": pod}}}
                    ]
                }
            }
        },
    }
    metadata = {"name": name, "labels": {"app.kubernetes.io/part-of": "contrastive"}}
    if owner:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": owner["name"], "uid": owner["uid"]}
        ]
    spec = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": runtime},
        "trainer": trainer,
        "runtimePatches": [patch],
    }
    if active_deadline_seconds:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": spec,
    }


def run_trainjob(
    manifest,
    namespace,
    *,
    api_client,
    poll_seconds=POLL_SECONDS,
    timeout=7 * 24 * 3600.0,
    write=print,
    sleep=time.sleep,
    clock=time.monotonic,
):
    """Creates the TrainJob, follows it to its end and streams its pods' logs.

    Args:
        manifest: from `trainjob_manifest`.
        namespace: the Kubernetes namespace (a Kubeflow profile's).
        api_client: `kubernetes.client.ApiClient` (in-cluster or kubeconfig configuration).
        poll_seconds: seconds between two looks at the job.
        timeout: seconds after which the job is deleted and `TrainJobError` raised.
        write: where log lines go, one call per line (`"<pod>: <line>"`).
        sleep, clock: time functions (tests pass fakes).

    Returns:
        The job's final `status` dict.

    Raises:
        TrainJobError: the job failed (its condition's reason and message), was deleted while
            running, or ran past `timeout`.
        TrainJobStopped: this process got SIGTERM (a pod deadline, a cancelled run): the job
            was deleted first, so no GPU keeps training for a step that is gone.
    """
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    name = manifest["metadata"]["name"]
    where = f"TrainJob {namespace}/{name}"
    # Strict: a Trainer older than v2.2.0 refuses runtimePatches rather than dropping them.
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest, field_validation="Strict"
    )
    log.info("created %s (%d nodes)", where, manifest["spec"]["trainer"]["numNodes"])
    try:
        with _stopped_by_sigterm():
            return _follow(
                custom, core, namespace, name, where, poll_seconds, timeout, write, sleep, clock
            )
    except (TrainJobStopped, KeyboardInterrupt):
        log.warning("stopped while following %s: deleting it", where)
        _delete(custom, namespace, name)
        raise


class TrainJobStopped(TrainJobError):
    """The launcher was told to stop (SIGTERM) while its TrainJob ran; the job was deleted."""


@contextlib.contextmanager
def _stopped_by_sigterm():
    """SIGTERM raises `TrainJobStopped` inside the block (main thread only; elsewhere the
    signal keeps its handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise TrainJobStopped("the launcher got SIGTERM (task timeout or cancelled run)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _delete(custom, namespace, name):
    from kubernetes import client

    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def _follow(custom, core, namespace, name, where, poll_seconds, timeout, write, sleep, clock):
    from kubernetes import client

    printed = {}
    deadline = clock() + timeout
    while True:
        try:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as error:
            if error.status == 404:
                _stream_logs(core, namespace, name, printed, write)
                raise TrainJobError(f"{where} was deleted while running") from None
            raise
        _stream_logs(core, namespace, name, printed, write)
        status = job.get("status") or {}
        ended = _condition(status, "Complete") or _condition(status, "Failed")
        if ended is not None:
            if ended["type"] == "Complete":
                log.info("%s completed", where)
                return status
            raise TrainJobError(
                f"{where} failed: {ended.get('reason', 'unknown reason')}: "
                f"{ended.get('message', '')}".rstrip(": ")
            )
        if clock() >= deadline:
            _delete(custom, namespace, name)
            raise TrainJobError(f"{where} ran past the timeout of {timeout:g} s; deleted it")
        sleep(poll_seconds)


def _condition(status, kind):
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind and str(condition.get("status")) == "True":
            return condition
    return None


def _stream_logs(core, namespace, name, printed, write):
    """Writes the log lines of the job's pods not written yet (pods sorted by name)."""
    from kubernetes import client

    pods = core.list_namespaced_pod(namespace, label_selector=POD_SELECTOR.format(name=name))
    for pod in sorted(pods.items, key=lambda pod: pod.metadata.name):
        pod_name = pod.metadata.name
        try:
            text = core.read_namespaced_pod_log(pod_name, namespace)
        except client.ApiException:  # not started yet, or already gone: try again later
            continue
        lines = text.splitlines()
        for line in lines[printed.get(pod_name, 0) :]:
            write(f"{pod_name}: {line}")
        printed[pod_name] = max(printed.get(pod_name, 0), len(lines))


# ---------------------------------------------------------------- a pipeline step's TrainJob

_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# Schemes `tf.io.gfile` knows that name a place only the launcher's own pod sees.
_POD_LOCAL_SCHEMES = {"", "file", "ram"}


def launcher_settings(
    *,
    image,
    num_nodes,
    gpus_per_node,
    gpu_resource="nvidia.com/gpu",
    node_selector=None,
    tolerations=(),
    image_pull_secrets=(),
    active_deadline_seconds=0,
) -> str:
    """The settings of `launch_training_step` for a training task: the TrainJob every run of
    it creates (checked as `trainjob_manifest` checks it). The pod settings are the
    compile-time ones of the pipeline's GPU steps
    (`pipelines.targets.kubernetes.KubernetesSettings`); the service account is the launcher
    pod's own, read when the job is created (`launcher_pod`)."""
    settings = {
        "image": image,
        "num_nodes": num_nodes,
        "gpus_per_node": gpus_per_node,
        "gpu_resource": gpu_resource,
    }
    pod = {
        "node_selector": dict(node_selector or {}),
        "tolerations": [dict(toleration) for toleration in tolerations],
        "image_pull_secrets": list(image_pull_secrets),
        "active_deadline_seconds": active_deadline_seconds,
    }
    settings.update({key: value for key, value in pod.items() if value})  # those given
    trainjob_manifest("check", command=["contrastive"], **settings)
    return settings


def launcher_pod(api_client, namespace, pod_name):
    """`{"name", "uid", "service_account"}` of the launcher's own pod, so its TrainJob runs as
    the run's identity (Workload Identity, bucket access) and is deleted with the pod; None
    (logged) when the pod cannot be read (outside a cluster, or no `get pods` right)."""
    from kubernetes import client

    if not pod_name:
        return None
    try:
        pod = client.CoreV1Api(api_client).read_namespaced_pod(pod_name, namespace)
    except client.ApiException as error:
        log.warning(
            "cannot read the launcher pod %s/%s (%s): the TrainJob runs as the runtime's "
            "service account",
            namespace,
            pod_name,
            error.status,
        )
        return None
    return {
        "name": pod.metadata.name,
        "uid": pod.metadata.uid,
        "service_account": pod.spec.service_account_name or "",
    }


def check_shared_uri(name, uri):
    """Refuses a URI the TrainJob's pods cannot reach: a path of the launcher's pod, or an
    object store without a `tf.io.gfile` filesystem here (Kubeflow's default `minio://`)."""
    from contrastive import storage

    scheme = uri.partition("://")[0] if "://" in uri else ""
    if storage.is_gcs(uri) or (scheme not in _POD_LOCAL_SCHEMES and scheme in _gfile_schemes()):
        return uri
    raise ValueError(
        f"the TrainJob's pods read and write {name} at its URI, so it must be in an object "
        "store they reach (gs://; s3:// needs tensorflow-io in the image): run the pipeline "
        f"with a gs:// pipeline root. Received: {name}={uri!r}"
    )


def _gfile_schemes():
    import tensorflow as tf

    return set(tf.io.gfile.get_registered_schemes())


def kubernetes_connection(kubeconfig=""):
    """`(kubernetes.client.ApiClient, namespace)`: the pod's service account and namespace in a
    cluster, else the kubeconfig file `kubeconfig` (default ~/.kube/config) and its
    context's namespace ("default" when it names none)."""
    from kubernetes import client, config

    if not kubeconfig:
        try:
            config.load_incluster_config()
            with open(_SERVICE_ACCOUNT_NAMESPACE) as stream:
                return client.ApiClient(), stream.read().strip()
        except (config.ConfigException, OSError):
            pass
    config.load_kube_config(config_file=kubeconfig or None)
    _, active = config.list_kube_config_contexts(config_file=kubeconfig or None)
    return client.ApiClient(), (active.get("context") or {}).get("namespace") or "default"


def launch_step(
    settings, command, *, name, output_uri, api_client, namespace, pod_name="", **follow
):
    """Runs a training step's `command` as a TrainJob and returns its metrics.

    Args:
        settings: `launcher_settings` (a dict or its JSON).
        command: from `pipelines.cli.steps.training_argv`, writing the model directory to
            `output_uri`.
        name: the job's name prefix; a random suffix makes each attempt's job its own.
        output_uri: where the job writes the model directory (checked with `check_shared_uri`).
        api_client, namespace: from `kubernetes_connection`.
        pod_name: the launcher's pod (`HOSTNAME` in a pod): the job runs as its service
            account and is owned by it (`launcher_pod`).
        follow: passed to `run_trainjob` (poll_seconds, timeout, write, sleep, clock); the
            timeout defaults to the settings' `active_deadline_seconds` when set.

    Returns:
        The model directory's `metrics.json`.

    Raises:
        TrainJobError: the job failed, or completed without a complete model directory.
    """
    from contrastive import modeldir

    if isinstance(settings, str):
        settings = json.loads(settings)
    check_shared_uri("output", output_uri)
    prefix = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].rstrip("-") or "step"
    pod = launcher_pod(api_client, namespace, pod_name)
    manifest = trainjob_manifest(
        f"{prefix}-{uuid.uuid4().hex[:8]}",
        command=command,
        env={"KERAS_BACKEND": "jax"},
        service_account=pod["service_account"] if pod else "",
        owner=pod,
        **settings,
    )
    if settings.get("active_deadline_seconds"):
        follow.setdefault("timeout", float(settings["active_deadline_seconds"]))
    run_trainjob(manifest, namespace, api_client=api_client, **follow)
    if not modeldir.is_complete(output_uri):
        raise TrainJobError(
            f"TrainJob {namespace}/{manifest['metadata']['name']} completed but {output_uri} "
            "holds no complete model directory"
        )
    return modeldir.read_json(f"{output_uri.rstrip('/')}/metrics.json")


def launch_training_step(call, *, environ, **settings):
    """A pipeline training step as a TrainJob: the launcher that the Kubeflow target names in
    the step's environment (`contrastive.environment.launcher`).

    The step's command reads the dataset (and encoder) and writes the model directory at
    the call's URIs, which must be in an object store the TrainJob's pods reach
    (`check_shared_uri`); the launcher pod's own files (a mounted checkpoint folder, a
    progress file) are not theirs, so those sinks are dropped. The cluster is the pod's own,
    else `environ`'s `KUBECONFIG`; the job runs as the pod's identity (`HOSTNAME`: a pod's
    own name).

    Args:
        call: a `contrastive.tasks.calls.TrainingCall`.
        environ: the component's `os.environ`.
        settings: `launcher_settings` (the hook's compile-time settings).

    Returns:
        The model directory's `metrics.json`.
    """
    from contrastive import storage
    from pipelines.cli.steps import training_argv

    durable = call.sinks.durable
    call = call.replace(
        data=check_shared_uri("dataset", call.data),
        output=check_shared_uri("output", call.output),
        encoder_model=call.encoder_model and check_shared_uri("encoder_model", call.encoder_model),
        sinks=call.sinks.replace(
            durable=durable if durable and not storage.is_local(durable) else None, progress=None
        ),
    )
    api_client, namespace = kubernetes_connection(environ.get("KUBECONFIG", ""))
    return launch_step(
        settings,
        training_argv(call),
        name=call.name or call.step,
        output_uri=call.output,
        api_client=api_client,
        namespace=namespace,
        pod_name=environ.get("HOSTNAME", ""),
        poll_seconds=poll_seconds(environ.get(POLL_VARIABLE, ""), POLL_VARIABLE),
    )


def poll_seconds(text, name):
    """Seconds between two looks at a TrainJob: `text` as a positive finite number, or
    `POLL_SECONDS` when empty; ValueError naming `name` otherwise."""
    if text in ("", None):
        return POLL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds. Received: {text!r}")
    return value


# ------------------------------------------------------------------- contrastive trainjob


def add_command(subparsers) -> None:
    """`contrastive trainjob`: pretrain/train on several Kubeflow nodes."""
    import argparse

    p = subparsers.add_parser(
        "trainjob",
        help="run pretrain/train on several Kubeflow nodes (Kubeflow Trainer TrainJob, JAX)",
        description="Creates a Kubeflow Trainer TrainJob on the jax-distributed runtime whose "
        "nodes run `contrastive STEP ...`, streams its logs and exits 1 with the job's reason "
        "if it fails. Example: contrastive trainjob --namespace team --name supcon-1 --image "
        "REGISTRY/contrastive-jax:TAG --nodes 2 --gpus-per-node 4 -- pretrain --data gs://b/d "
        "--output /mnt/shared/supcon --override train.distribution=data_parallel",
    )
    p.add_argument("--namespace", required=True, help="Kubernetes namespace (Kubeflow profile)")
    p.add_argument("--name", required=True, help="TrainJob name (a DNS label)")
    p.add_argument("--image", required=True, help="the JAX image (images/Dockerfile.jax)")
    p.add_argument("--nodes", type=int, default=2, help="nodes = JAX processes (2)")
    p.add_argument("--gpus-per-node", type=int, default=1, help="GPUs of each node (1)")
    p.add_argument("--timeout", type=float, default=7 * 24 * 3600.0, help="seconds, then delete")
    p.add_argument(
        "--poll-seconds",
        type=_poll_argument,
        default=POLL_SECONDS,
        help=f"seconds between two looks at the job and its logs ({POLL_SECONDS:g})",
    )
    p.add_argument(
        "--kubeconfig", default="", help="kubeconfig file (default: in-cluster, ~/.kube)"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pretrain ... | -- train ...")
    p.set_defaults(func=cmd_trainjob)


def _poll_argument(text):
    import argparse

    try:
        return poll_seconds(text, "--poll-seconds")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_trainjob(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or command[0] not in ("pretrain", "train"):
        raise ValueError(
            "give the step after --: pretrain ... or train ... "
            f"Received: {' '.join(args.command) or 'nothing'}"
        )
    manifest = trainjob_manifest(
        args.name,
        image=args.image,
        command=["contrastive", *command],
        num_nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        env={"KERAS_BACKEND": "jax"},
    )
    api_client, _ = kubernetes_connection(args.kubeconfig)
    run_trainjob(
        manifest,
        args.namespace,
        api_client=api_client,
        timeout=args.timeout,
        poll_seconds=args.poll_seconds,
    )
    print(f"TrainJob {args.namespace}/{args.name} completed")
    return 0
