"""The DAG: ingest -> check_drift -> (when the run trains) a branch per method
(`contrastive.methods`: the baseline, or pretrain(<method>) -> classifier) -> evaluate each
-> explain_neighbours -> compare_and_report. This module only wires steps."""

from collections.abc import Sequence
from types import SimpleNamespace

from kfp import dsl

import components
from components.branches import input_name
from contrastive import methods as method_registry
from contrastive.drift import RETRAIN
from contrastive.fingerprints import library_fingerprint
from pipelines.kubernetes import KubernetesSettings
from pipelines.targets import validate_accelerator

PIPELINE_NAME = "contrastive"
# What a step asks for when no accelerator type is given at compile time.
DEFAULT_ACCELERATORS = {"kubeflow": "nvidia.com/gpu", "vertex": "NVIDIA_L4"}
BACKENDS = ("tensorflow", "jax")
# The registry's run id (it names the promoted version's folder, `registry._check_run_id`):
# a value each backend resolves to letters, digits, '.', '_' and '-'. KFP 2.17's driver
# resolves `{{$.pipeline_job_name}}` to the run's display name (kfp.Client's default:
# "<pipeline> %Y-%m-%d %H-%M-%S", spaces; two runs may share it), and `{{$.pipeline_job_uuid}}`
# to the run's UUID (kubeflow/pipelines 2.17.0 backend/src/v2/driver/resolve.go); Vertex's job
# name is the job id `contrastive submit` gives (`submit.vertex_job_id`); kfp.local's is
# "<pipeline>-<timestamp>".
RUN_ID_PLACEHOLDERS = {
    "kubeflow": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    "vertex": dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    "local": dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
}
# Vertex machine type per accelerator and count, for training steps run as CustomJobs
# (replicas > 1); other combinations need --machine-type.
VERTEX_MACHINE_TYPES = {
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
TRAINING_COMPONENTS = ("pretrain_encoder", "train_classifier", "train_baseline")
# google-cloud-pipeline-components 2.22.0 `_placeholders.SERVICE_ACCOUNT_PLACEHOLDER`: the
# PipelineJob's service account, resolved by Vertex at run time.
VERTEX_SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"
STRATEGIES = ("STANDARD", "SPOT")
# The durable checkpoint key of every local run (see `contrastive_pipeline`).
LOCAL_JOB_ID = "local"


def build_pipeline(
    *,
    image: str = components.DEFAULT_IMAGE,
    target: str = "kubeflow",
    methods: Sequence[str] | None = None,
    accelerator_type: str | None = None,
    accelerator_count: int = 1,
    cpu_limit: str = "8",
    memory_limit: str = "32G",
    retries: int = 3,
    kubernetes: KubernetesSettings | None = None,
    replicas: int = 1,
    backend: str = "tensorflow",
    machine_type: str = "",
    strategy: str = "STANDARD",
    job_output_dir: str = "",
    labeled_fractions: Sequence[float] = (),
):
    """Return the pipeline function for `target` ("kubeflow", "vertex" or "local").

    Methods are chosen here, at compile time: each one adds its branch to the DAG (None: the
    registry's default ones, `contrastive.methods.default_names()`). Training and
    evaluation tasks request `accelerator_count` accelerators of `accelerator_type` (named the
    target's way: `nvidia.com/gpu` on Kubeflow, `NVIDIA_L4` etc. on Vertex); "local" requests none.
    `kubernetes` (target kubeflow only) adds pod settings through kfp-kubernetes: node selector
    and tolerations on the training and evaluation tasks, image pull secrets and a timeout on all.

    Scale out: `replicas` nodes of `accelerator_count` accelerators each. More than one device
    in all makes the training steps data-parallel (`distribution=data_parallel`), which needs
    `backend="jax"` (every Keras step then gets `KERAS_BACKEND=jax`; `image` must be the JAX
    image). Vertex, `replicas > 1`: the training steps run as Vertex CustomJobs of `replicas`
    replicas (GCPC `create_custom_training_job_from_component`) on `machine_type` (default
    from `VERTEX_MACHINE_TYPES`), `strategy` `STANDARD` or `SPOT`, job output under
    `job_output_dir` when given. Kubeflow, `replicas > 1`: each training task is a launcher
    (no GPU) that runs its step as a Kubeflow Trainer TrainJob of `replicas` nodes x
    `accelerator_count` GPUs on the JAX runtime, in `image` (`_trainjob_launcher`).

    Few labels: `labeled_fractions` (e.g. `(0.01, 0.1, 1.0)`) compiles one branch per
    fraction and method after the one ingest, each step seeing that nested, stratified
    labelled subset (`labeled_subset_fraction`); a method whose loss uses no label
    (`Method.pretrain_once`: SimCLR) pretrains once, its encoder shared by every fraction's
    classifier; `collect_fraction` chains the fractions' evaluations into
    the label-efficiency curve the report charts; the gate compares the largest fraction's
    classifiers. Empty: today's single run, the DAG unchanged.
    """
    methods = method_registry.check_branches(
        method_registry.default_names() if methods is None else methods
    )
    fractions = check_labeled_fractions(labeled_fractions)
    data_parallel = _check_scale(target, replicas, accelerator_count, backend, strategy)
    check_compile_options(retries=retries, accelerator_count=accelerator_count)
    kubernetes = kubernetes or KubernetesSettings()
    if kubernetes and target != "kubeflow":
        raise ValueError(
            "node selector, tolerations, image pull secrets and task timeout are Kubernetes "
            f"settings, for target kubeflow only. Received: target={target!r}"
        )
    use_gpu = target != "local" and accelerator_count > 0
    if target != "local":
        accelerator_type = accelerator_type or DEFAULT_ACCELERATORS.get(target, "")
        validate_accelerator(target, accelerator_type)
    c = components.build(image, methods)
    training = c
    if target == "vertex" and replicas > 1:
        training = _vertex_custom_jobs(
            c,
            replicas=replicas,
            machine_type=machine_type or _vertex_machine_type(accelerator_type, accelerator_count),
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            strategy=strategy,
            job_output_dir=job_output_dir,
            backend=backend,
        )
    scale = {"distribution": "data_parallel"} if data_parallel else {}
    # A Vertex CustomJob runs as the PipelineJob's service account (GCPC's placeholder, which
    # Vertex resolves); without it Vertex uses its Custom Code Service Agent.
    custom_job = {"service_account": VERTEX_SERVICE_ACCOUNT} if training is not c else {}
    launcher = None
    if target == "kubeflow" and replicas > 1:
        launcher = _trainjob_launcher(
            image, replicas, accelerator_count, accelerator_type, kubernetes
        )

    fingerprint = library_fingerprint() if target == "local" else ""

    def on_backend(task):
        if backend == "jax":
            task.set_env_variable("KERAS_BACKEND", "jax")
        return task

    def local_code(task):
        # kfp.local's cache key holds a task's env: a changed library is not served old outputs.
        if fingerprint:
            task.set_env_variable("CONTRASTIVE_LIBRARY", fingerprint)
        return task

    def on_gpu(task):
        if training is not c and task.component_spec.name in _CUSTOM_JOB_NAMES:
            return task  # the CustomJob holds the machines; this task only launches it
        if launcher and task.component_spec.name in _CUSTOM_JOB_NAMES:
            return launcher(task)  # the TrainJob holds the machines
        on_backend(local_code(task))
        if target != "local":
            task.set_cpu_limit(cpu_limit).set_memory_limit(memory_limit)
        if use_gpu:
            task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
        return kubernetes.apply(task, accelerated=True)

    def retried(task):
        # Spot GPUs get preempted: the retry resumes from the task's checkpoints. A local run
        # is not retried (minutes of backoff on this machine): run it again, it resumes.
        if target == "local":
            return task
        return task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0)

    def contrastive_pipeline(
        source: str = "fashion_mnist",
        profile: str = "quick",
        overrides: str = "",
        epochs: int = 0,
        classifier_epochs: int = 0,
        batch_size: int = 0,
        temperature: float = 0.0,
        encoder: str = "",
        classifier_mode: str = "",
        limit: int = 0,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.2,
        image_size: str = "",
        labeled_fraction: float = 0.0,
        class_name_variants: str = "refuse",
        max_upscale: float = 4.0,
        max_aspect_ratio: float = 4.0,
        seed: int = 0,
        data_snapshot: str = "",
        ingest_runner: str = "",
        ingest_beam_options: str = "",
        registry: str = "",
        promotion_margin: float = 0.0,
        tensorboard_root: str = "",
        checkpoint_root: str = "",
        vertex_model: str = "",
        vertex_project: str = "",
        vertex_region: str = "",
        retrain_when: str = "always",
    ):
        """SupCon and SimCLR pretraining vs a cross-entropy baseline; the best classifier is
        promoted if it beats the champion."""
        ingest = c.ingest_data(
            source=source,
            profile=profile,
            overrides=overrides,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
            seed=seed,
            limit=limit,
            image_size=image_size,
            labeled_fraction=labeled_fraction,
            class_name_variants=class_name_variants,
            max_upscale=max_upscale,
            max_aspect_ratio=max_aspect_ratio,
            data_snapshot=data_snapshot,
            runner=ingest_runner,
            beam_options=ingest_beam_options,
            worker_image="" if target == "local" else image,
        ).set_display_name("ingest")
        local_code(ingest)
        if target != "local":
            ingest.set_cpu_limit("4").set_memory_limit("16G")
        kubernetes.apply(ingest, accelerated=False)
        dataset = ingest.outputs["dataset"]
        common = dict(profile=profile, overrides=overrides, batch_size=batch_size, seed=seed)
        # Checkpoints outside the pod, keyed by run and step: a retry after preemption resumes
        # (`checkpoint_root`, else beside the step's output; `durable.step_folder`). The run's
        # id is `{{$.pipeline_job_uuid}}`, which KFP 2.17's driver and Vertex resolve; the
        # KFP driver resolves no `{{$.pipeline_root}}` (tests/pipeline/test_invariants.py).
        # Locally every run gets a new job id, so the key is the fixed "local" under a
        # `checkpoint_root` that `contrastive run` keys by the run's parameters: a run killed
        # and started again with the same parameters resumes.
        durable = dict(
            checkpoint_root=checkpoint_root,
            job_id=LOCAL_JOB_ID if target == "local" else dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        run_id = RUN_ID_PLACEHOLDERS[target]
        # Before any training: drift and fingerprints against the champion; a scheduled run
        # with retrain_when other than "always" may stop here (the skip is recorded).
        checked = (
            c.check_drift(
                dataset=dataset,
                registry=registry,
                retrain_when=retrain_when,
                run_id=run_id,
                methods=",".join(methods),
                epochs=epochs,
                classifier_epochs=classifier_epochs,
                temperature=temperature,
                encoder=encoder,
                classifier_mode=classifier_mode,
                **common,
            )
            .set_display_name("check-drift")
            .set_caching_options(False)  # it reads the registry, which changes between runs
        )
        kubernetes.apply(local_code(checked), accelerated=False)
        with dsl.If(checked.outputs["Output"] == RETRAIN, name="retrain"):
            evaluated, by_fraction, shared = {}, {}, {}
            # Unrolled at compile time, not a dsl.ParallelFor: the fractions are a compile-time
            # constant like the methods, so every step is a named task (train-baseline-1pct) whose
            # outputs the curve and the gate take by name, on every backend; a ParallelFor would
            # hand the compare step unordered dsl.Collected lists and put a loop in every DAG.
            for fraction, method in _branches(methods, fractions):
                spec = method_registry.get(method)
                few = {} if fraction is None else {"labeled_subset_fraction": fraction}
                tag = "" if fraction is None else f"-{100 * fraction:g}pct"
                if spec.end_to_end:
                    trained = retried(
                        on_gpu(
                            training.train_baseline(
                                dataset=dataset,
                                epochs=epochs,
                                classifier_epochs=classifier_epochs,
                                encoder=encoder,
                                tensorboard_root=tensorboard_root,
                                tensorboard_name=f"train-{method}{tag}",
                                **common,
                                **scale,
                                **durable,
                                **custom_job,
                                **few,
                            )
                        )
                    ).set_display_name(f"train-{method}{tag}")
                elif spec.pretrain_once and method in shared:
                    pretrained = shared[method]  # its loss uses no label: one encoder for all
                else:
                    # A method that pretrains once does so on every image: no fraction in its
                    # name or inputs.
                    once = {} if spec.pretrain_once else few
                    pretrain_tag = "" if spec.pretrain_once else tag
                    pretrained = retried(
                        on_gpu(
                            training.pretrain_encoder(
                                dataset=dataset,
                                method=method,
                                epochs=epochs,
                                temperature=temperature,
                                encoder=encoder,
                                tensorboard_root=tensorboard_root,
                                tensorboard_name=f"pretrain-{method}{pretrain_tag}",
                                **common,
                                **scale,
                                **durable,
                                **custom_job,
                                **once,
                            )
                        )
                    ).set_display_name(f"pretrain-{method}{pretrain_tag}")
                    shared[method] = pretrained
                if spec.pretrains:
                    trained = retried(
                        on_gpu(
                            training.train_classifier(
                                dataset=dataset,
                                encoder_model=pretrained.outputs["encoder_model"],
                                mode=classifier_mode,
                                classifier_epochs=classifier_epochs,
                                tensorboard_root=tensorboard_root,
                                tensorboard_name=f"classifier-{method}{tag}",
                                **common,
                                **scale,
                                **durable,
                                **custom_job,
                                **few,
                            )
                        )
                    ).set_display_name(f"classifier-{method}{tag}")
                evaluation = on_gpu(
                    c.evaluate_classifier(
                        dataset=dataset,
                        model=trained.outputs["model"],
                    )
                ).set_display_name(f"evaluate-{method}{tag}")
                # A later (larger) fraction replaces an earlier one: the gate takes the largest.
                evaluated[input_name(method, "evaluation")] = evaluation.outputs["evaluation"]
                evaluated[input_name(method, "model")] = trained.outputs["model"]
                by_fraction.setdefault(fraction, {})[input_name(method, "evaluation")] = evaluated[
                    input_name(method, "evaluation")
                ]
            curve = None
            for fraction in fractions:
                previous = {} if curve is None else {"previous_curve": curve.outputs["curve"]}
                curve = c.collect_fraction(
                    labeled_subset_fraction=fraction, **previous, **by_fraction[fraction]
                ).set_display_name(f"collect-{100 * fraction:g}pct")
                kubernetes.apply(local_code(curve), accelerated=False)
            explained = on_gpu(c.explain_neighbours(dataset=dataset, **evaluated)).set_display_name(
                "explain-neighbours"
            )
            if curve is not None:
                evaluated["curve"] = curve.outputs["curve"]
            compared = (
                c.compare_and_report(
                    dataset=dataset,
                    registry=registry,
                    promotion_margin=promotion_margin,
                    run_id=run_id,
                    vertex_model=vertex_model,
                    vertex_project=vertex_project,
                    vertex_region=vertex_region,
                    neighbours=explained.outputs["neighbours"],
                    drift=checked.outputs["drift"],
                    **evaluated,
                )
                .set_display_name("compare-and-report")
                .set_caching_options(False)
            )
            # The serving SavedModel needs TensorFlow, whichever backend trained: the JAX image
            # sets KERAS_BACKEND=jax, and a .keras model loads on either backend.
            compared.set_env_variable("KERAS_BACKEND", "tensorflow")
            kubernetes.apply(local_code(compared), accelerated=False)

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="SupCon and SimCLR pretraining vs a cross-entropy baseline; "
        "the best classifier is promoted if it beats the champion.",
    )(components.document(contrastive_pipeline))


# Component names of the CustomJob-wrapped training steps (GCPC keeps the function's name).
_CUSTOM_JOB_NAMES = {f"comp-{name.replace('_', '-')}" for name in TRAINING_COMPONENTS} | {
    name.replace("_", "-") for name in TRAINING_COMPONENTS
}


def _check_scale(target, replicas, accelerator_count, backend, strategy) -> bool:
    """True when the training steps are data-parallel; refuses settings that cannot run."""
    from contrastive.validation import check_choice, check_int

    check_int("replicas", replicas)
    check_choice("backend", backend, BACKENDS)
    check_choice("strategy", strategy, STRATEGIES)
    data_parallel = replicas * max(accelerator_count, 1) > 1
    if data_parallel and backend != "jax":
        raise ValueError(
            f"{replicas} replica(s) x {accelerator_count} accelerator(s) train data-parallel, "
            "which runs on the JAX backend: compile with --backend jax and the JAX image. "
            f"Received: backend={backend!r}"
        )
    if replicas > 1 and target == "local":
        raise ValueError(f"replicas > 1 needs a cluster target. Received: target={target!r}")
    return data_parallel


def _trainjob_launcher(image, replicas, accelerator_count, accelerator_type, kubernetes):
    """Kubeflow, `replicas > 1`: makes a training task a launcher. Its pod (no GPU, 1 CPU)
    runs the component with `trainjob.LAUNCHER_ENV` set, so the component creates a
    TrainJob of `replicas` nodes x `accelerator_count` GPUs in `image` running the step's
    command, follows it and fails with its reason. The pod settings of `kubernetes` (pull
    secrets, timeout) apply to the launcher; the TrainJob's pods get the GPU steps' ones
    (node selector, tolerations, pull secrets, the timeout as `activeDeadlineSeconds`) and
    the launcher pod's service account (`trainjob.launcher_pod`)."""
    from contrastive.trainjob import LAUNCHER_ENV, launcher_settings

    settings = launcher_settings(
        image=image,
        num_nodes=replicas,
        gpus_per_node=accelerator_count,
        gpu_resource=accelerator_type,
        **kubernetes.pod_settings(),
    )

    def launch(task):
        task.set_env_variable(LAUNCHER_ENV, settings).set_env_variable("KERAS_BACKEND", "jax")
        task.set_cpu_limit("1").set_memory_limit("4G")
        return kubernetes.apply(task, accelerated=False)

    return launch


def _vertex_machine_type(accelerator_type: str, accelerator_count: int) -> str:
    machine = VERTEX_MACHINE_TYPES.get(accelerator_type, {}).get(accelerator_count)
    if machine is None:
        raise ValueError(
            f"no default Vertex machine type for {accelerator_count} x {accelerator_type}; "
            f"pass --machine-type. Received: accelerator_type={accelerator_type!r}, "
            f"accelerator_count={accelerator_count}"
        )
    return machine


def _vertex_custom_jobs(
    c,
    *,
    replicas,
    machine_type,
    accelerator_type,
    accelerator_count,
    strategy,
    job_output_dir,
    backend,
):
    """The training components as Vertex CustomJobs of `replicas` identical replicas."""
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    env = [{"name": "KERAS_BACKEND", "value": backend}]
    wrapped = {
        name: create_custom_training_job_from_component(
            getattr(c, name),
            display_name=name.replace("_", "-"),
            replica_count=replicas,
            machine_type=machine_type,
            accelerator_type=accelerator_type if accelerator_count > 0 else "",
            accelerator_count=accelerator_count,
            strategy=strategy,
            base_output_directory=job_output_dir,
            env=env,
        )
        for name in TRAINING_COMPONENTS
    }
    return SimpleNamespace(**{**vars(c), **wrapped})


def check_compile_options(*, retries: int, accelerator_count: int) -> None:
    """Refuses compile options KFP would write as given (`maxRetryCount: -1`) or drop
    silently (a negative accelerator count compiles to no accelerator)."""
    from contrastive.validation import check_int

    check_int("retries", retries, minimum=0)
    check_int("accelerator_count", accelerator_count, minimum=0)


def check_labeled_fractions(fractions: Sequence[float] | str) -> tuple[float, ...]:
    """Labelled fractions as the DAG compiles them: distinct, ascending, each in (0, 1];
    "0.01,0.1,1" or a sequence; empty: none (one run with every label)."""
    if isinstance(fractions, str):
        fractions = [part.strip() for part in fractions.split(",") if part.strip()]
    values = []
    for value in fractions:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not 0 < number <= 1:
            raise ValueError(
                "labeled_fractions must be fractions in (0, 1], e.g. 0.01,0.1,1. "
                f"Received: labeled_fractions={list(fractions)}"
            )
        values.append(number)
    return tuple(sorted(set(values)))


def _branches(methods, fractions):
    """(fraction, method) in DAG order; fraction None when the run has a single one."""
    return [(fraction, method) for fraction in fractions or (None,) for method in methods]
