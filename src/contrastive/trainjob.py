"""Several nodes on Kubeflow: a Kubeflow Trainer `TrainJob` on the JAX runtime, followed to its end.

`trainjob_manifest` writes the TrainJob (`trainer.kubeflow.org/v1alpha1`): `num_nodes` pods
of the `jax-distributed` ClusterTrainingRuntime, each running `command` in `image` with
`gpus_per_node` GPUs. The runtime gives every pod `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, which `contrastive pretrain` / `train` read
(`training.distribution.process_group_from`). `run_trainjob` creates it through the
Kubernetes API (the official `kubernetes` client), polls it, prints the pods' new log lines
as they come, and returns when the job completes; it raises `TrainJobError` with the job's own
reason when the job fails or is deleted, and deletes the job and raises after `timeout`.
"""

from __future__ import annotations

import logging
import re
import time

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
