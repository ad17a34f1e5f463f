"""Several nodes on Kubeflow: a Kubeflow Trainer `TrainJob` on the JAX runtime, followed to its end.

`trainjob_manifest` writes the TrainJob (`trainer.kubeflow.org/v1alpha1`): `num_nodes` pods
of the `jax-distributed` ClusterTrainingRuntime, each running `command` in `image` with
`gpus_per_node` GPUs. The runtime gives every pod `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, which `contrastive pretrain` / `train` read
(`training.distribution.process_group_from`). `run_trainjob` creates it through the
Kubernetes API (the official `kubernetes` client), polls it, prints the pods' new log lines
as they come, and returns when the job completes; it raises `TrainJobError` with the job's own
reason when the job fails or is deleted, and deletes the job and raises after `timeout`.

A pipeline training step on several Kubeflow nodes: its task carries `LAUNCHER_ENV`
(`launcher_settings`); the component then builds the step's own command (`step_command`,
outputs at the task's artifact URIs in the object store) and `launch_step` runs it as a
TrainJob from the launcher pod, which needs no GPU.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
JAX_RUNTIME = "jax-distributed"
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
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "contrastive"}},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": runtime},
            "trainer": trainer,
        },
    }


def run_trainjob(
    manifest,
    namespace,
    *,
    api_client,
    poll_seconds=10.0,
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
    """
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    name = manifest["metadata"]["name"]
    where = f"TrainJob {namespace}/{name}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    log.info("created %s (%d nodes)", where, manifest["spec"]["trainer"]["numNodes"])
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
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
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

# A training component whose task carries this variable (JSON from `launcher_settings`) does
# not train in its own pod: it runs the step as a TrainJob (`launch_step`) and waits.
LAUNCHER_ENV = "CONTRASTIVE_TRAINJOB"
STEPS = ("pretrain", "classifier", "baseline")  # the pipeline's training steps
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# Schemes `tf.io.gfile` knows that name a place only the launcher's own pod sees.
_POD_LOCAL_SCHEMES = {"", "file", "ram"}


def launcher_settings(*, image, num_nodes, gpus_per_node, gpu_resource="nvidia.com/gpu") -> str:
    """The value of `LAUNCHER_ENV` for a training task: the TrainJob every run of it creates
    (checked as `trainjob_manifest` checks it)."""
    settings = {
        "image": image,
        "num_nodes": num_nodes,
        "gpus_per_node": gpus_per_node,
        "gpu_resource": gpu_resource,
    }
    trainjob_manifest("check", command=["contrastive"], **settings)
    return json.dumps(settings, sort_keys=True)


def step_command(
    step,
    *,
    data_uri,
    output_uri,
    profile,
    overrides,
    method="",
    mode="",
    encoder_uri="",
    sinks=None,
):
    """The `contrastive pretrain | train` command that runs a pipeline training step.

    Args:
        step: "pretrain", "classifier" or "baseline".
        data_uri, output_uri, encoder_uri: the dataset, the model directory to write and (for
            "classifier") the encoder's, as URIs every node reaches.
        profile: the configuration profile.
        overrides: every dotted-key override (`config.pipeline_overrides`); each becomes
            `--override key=<JSON value>` (JSON is YAML, so the value reads back exactly).
        method, mode: the pretraining method, the classifier mode ("" keeps the profile's).
        sinks: a `contrastive.tasks.StepSinks` the command carries as flags (`to_flags`).
    """
    from contrastive.validation import check_choice

    check_choice("step", step, STEPS)
    command = ["contrastive", "pretrain" if step == "pretrain" else "train"]
    command += ["--data", data_uri, "--output", output_uri, "--profile", profile]
    if step == "pretrain" and method:
        command += ["--method", method]
    if step == "classifier":
        command += ["--encoder-model", encoder_uri] + (["--mode", mode] if mode else [])
    if step == "baseline":
        command += ["--baseline"]
    for key, value in overrides.items():
        command += ["--override", f"{key}={json.dumps(value)}"]
    return command + (sinks.to_flags() if sinks is not None else [])


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


def launch_step(settings, command, *, name, output_uri, api_client, namespace, **follow):
    """Runs a training step's `command` as a TrainJob and returns its metrics.

    Args:
        settings: `launcher_settings` (a JSON string or its dict).
        command: from `step_command`, writing the model directory to `output_uri`.
        name: the job's name prefix; a random suffix makes each attempt's job its own.
        output_uri: where the job writes the model directory (checked with `check_shared_uri`).
        api_client, namespace: from `kubernetes_connection`.
        follow: passed to `run_trainjob` (poll_seconds, timeout, write, sleep, clock).

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
    manifest = trainjob_manifest(
        f"{prefix}-{uuid.uuid4().hex[:8]}",
        command=command,
        env={"KERAS_BACKEND": "jax"},
        **settings,
    )
    run_trainjob(manifest, namespace, api_client=api_client, **follow)
    if not modeldir.is_complete(output_uri):
        raise TrainJobError(
            f"TrainJob {namespace}/{manifest['metadata']['name']} completed but {output_uri} "
            "holds no complete model directory"
        )
    return modeldir.read_json(f"{output_uri.rstrip('/')}/metrics.json")
