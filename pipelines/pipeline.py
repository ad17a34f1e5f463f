"""The DAG: ingest -> {baseline, pretrain(supcon) -> classifier, pretrain(simclr) -> classifier}
-> evaluate each -> compare_and_report. This module only wires steps."""

from collections.abc import Sequence

from kfp import dsl

import components
from contrastive.config import BASELINE
from contrastive.config import METHODS as PRETRAINING_METHODS
from pipelines.kubernetes import KubernetesSettings
from pipelines.targets import validate_accelerator

PIPELINE_NAME = "contrastive"
METHODS = (BASELINE, *PRETRAINING_METHODS)
DEFAULT_METHODS = (BASELINE, "supcon", "simclr")
# What a step asks for when no accelerator type is given at compile time.
DEFAULT_ACCELERATORS = {"kubeflow": "nvidia.com/gpu", "vertex": "NVIDIA_L4"}


def build_pipeline(
    *,
    image: str = components.DEFAULT_IMAGE,
    target: str = "kubeflow",
    methods: Sequence[str] = DEFAULT_METHODS,
    accelerator_type: str | None = None,
    accelerator_count: int = 1,
    cpu_limit: str = "8",
    memory_limit: str = "32G",
    retries: int = 3,
    kubernetes: KubernetesSettings | None = None,
):
    """Return the pipeline function for `target` ("kubeflow", "vertex" or "local").

    Methods are chosen here, at compile time: each one adds its branch to the DAG. Training and
    evaluation tasks request `accelerator_count` accelerators of `accelerator_type` (named the
    target's way: `nvidia.com/gpu` on Kubeflow, `NVIDIA_L4` etc. on Vertex); "local" requests none.
    `kubernetes` (target kubeflow only) adds pod settings through kfp-kubernetes: node selector
    and tolerations on the training and evaluation tasks, image pull secrets and a timeout on all.
    """
    methods = _check_methods(methods)
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
    c = components.build(image)

    def on_gpu(task):
        if target != "local":
            task.set_cpu_limit(cpu_limit).set_memory_limit(memory_limit)
        if use_gpu:
            task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
        return kubernetes.apply(task, accelerated=True)

    def retried(task):
        # Spot GPUs get preempted: the retry resumes from the task's checkpoints.
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
        image_size: str = "",
        labeled_fraction: float = 0.0,
        seed: int = 0,
        data_snapshot: str = "",
        registry: str = "",
        promotion_margin: float = 0.0,
        tensorboard_root: str = "",
        checkpoint_root: str = "",
        vertex_model: str = "",
        vertex_project: str = "",
        vertex_region: str = "",
    ):
        """SupCon and SimCLR pretraining vs a cross-entropy baseline; the best classifier is
        promoted if it beats the champion."""
        ingest = c.ingest_data(
            source=source,
            validation_fraction=validation_fraction,
            seed=seed,
            limit=limit,
            image_size=image_size,
            labeled_fraction=labeled_fraction,
            data_snapshot=data_snapshot,
        ).set_display_name("ingest")
        if target != "local":
            ingest.set_cpu_limit("4").set_memory_limit("16G")
        kubernetes.apply(ingest, accelerated=False)
        dataset = ingest.outputs["dataset"]
        common = dict(profile=profile, overrides=overrides, batch_size=batch_size, seed=seed)
        # Checkpoints outside the pod, keyed by run and step: a retry after preemption resumes.
        durable = dict(
            checkpoint_root=checkpoint_root,
            pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        evaluated = {}
        for method in methods:
            if method == BASELINE:
                trained = retried(
                    on_gpu(
                        c.train_baseline(
                            dataset=dataset,
                            epochs=epochs,
                            classifier_epochs=classifier_epochs,
                            encoder=encoder,
                            tensorboard_root=tensorboard_root,
                            tensorboard_name="train-baseline",
                            **common,
                            **durable,
                        )
                    )
                ).set_display_name("train-baseline")
            else:
                pretrained = retried(
                    on_gpu(
                        c.pretrain_encoder(
                            dataset=dataset,
                            method=method,
                            epochs=epochs,
                            temperature=temperature,
                            encoder=encoder,
                            tensorboard_root=tensorboard_root,
                            tensorboard_name=f"pretrain-{method}",
                            **common,
                            **durable,
                        )
                    )
                ).set_display_name(f"pretrain-{method}")
                trained = retried(
                    on_gpu(
                        c.train_classifier(
                            dataset=dataset,
                            encoder_model=pretrained.outputs["encoder_model"],
                            mode=classifier_mode,
                            classifier_epochs=classifier_epochs,
                            tensorboard_root=tensorboard_root,
                            tensorboard_name=f"classifier-{method}",
                            **common,
                            **durable,
                        )
                    )
                ).set_display_name(f"classifier-{method}")
            evaluation = on_gpu(
                c.evaluate_classifier(
                    dataset=dataset,
                    model=trained.outputs["model"],
                )
            ).set_display_name(f"evaluate-{method}")
            evaluated[f"{method}_evaluation"] = evaluation.outputs["evaluation"]
            evaluated[f"{method}_model"] = trained.outputs["model"]
        compared = (
            c.compare_and_report(
                dataset=dataset,
                registry=registry,
                promotion_margin=promotion_margin,
                run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                **evaluated,
            )
            .set_display_name("compare-and-report")
            .set_caching_options(False)
        )
        kubernetes.apply(compared, accelerated=False)

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="SupCon and SimCLR pretraining vs a cross-entropy baseline; "
        "the best classifier is promoted if it beats the champion.",
    )(components.document(contrastive_pipeline))


def check_compile_options(*, retries: int, accelerator_count: int) -> None:
    """Refuses compile options KFP would write as given (`maxRetryCount: -1`) or drop
    silently (a negative accelerator count compiles to no accelerator)."""
    from contrastive.validation import check_int

    check_int("retries", retries, minimum=0)
    check_int("accelerator_count", accelerator_count, minimum=0)


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"methods must be a non-empty subset of {list(METHODS)}. Received: {list(methods)}"
        )
    return tuple(dict.fromkeys(methods))
