"""The DAG: ingest -> check_drift -> (when the run trains) a branch per method
(`contrastive.methods`: the baseline, or pretrain(<method>) -> classifier) -> evaluate each
-> explain_neighbours -> compare_and_report. This module only wires steps: what each task
asks for, how it is retried and scaled out, and which run id it gets are the target's
(`pipelines.targets`); the compile-time choices are `pipelines.options`."""

from collections.abc import Sequence

from kfp import dsl

import components
from components.branches import input_name
from contrastive import methods as method_registry
from contrastive.drift import RETRAIN
from pipelines import targets
from pipelines.kfp_setters import fast_setters
from pipelines.options import CompileOptions

PIPELINE_NAME = "contrastive"


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
    replicas: int = 1,
    backend: str = "tensorflow",
    labeled_fractions: Sequence[float] = (),
    **settings,
):
    """Return the pipeline function for `target` (a name in `pipelines.targets.TARGETS`:
    "kubeflow", "vertex" or "local").

    Methods are chosen here, at compile time: each one adds its branch to the DAG (None: the
    registry's default ones, `contrastive.methods.default_names()`). Training and
    evaluation tasks request `accelerator_count` accelerators of `accelerator_type` (named the
    target's way: `nvidia.com/gpu` on Kubeflow, `NVIDIA_L4` etc. on Vertex; None: the
    target's default); "local" requests none. `settings` are the target's own
    (`Target.Settings`): Kubeflow's `kubernetes` (`KubernetesSettings`: node selector and
    tolerations on the training and evaluation tasks, image pull secrets and a timeout on
    all), Vertex's `machine_type`, `strategy`, `job_output_dir`.

    Scale out: `replicas` nodes of `accelerator_count` accelerators each. More than one device
    in all makes the training steps data-parallel (`distribution=data_parallel`), which needs
    `backend="jax"` (every Keras step then gets `KERAS_BACKEND=jax`; `image` must be the JAX
    image). How a training step gets `replicas` nodes is the target's: Vertex runs it as a
    CustomJob (GCPC), Kubeflow as a Kubeflow Trainer TrainJob that a launcher task creates.

    Few labels: `labeled_fractions` (e.g. `(0.01, 0.1, 1.0)`) compiles one branch per
    fraction and method after the one ingest, each step seeing that nested, stratified
    labelled subset (`labeled_subset_fraction`); a method whose loss uses no label
    (`Method.pretrain_once`: SimCLR) pretrains once, its encoder shared by every fraction's
    classifier; `collect_fraction` chains the fractions' evaluations into
    the label-efficiency curve the report charts; the gate compares the largest fraction's
    classifiers. Empty: today's single run, the DAG unchanged.
    """
    options = CompileOptions.checked(
        image=image,
        methods=methods,
        labeled_fractions=labeled_fractions,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        retries=retries,
        replicas=replicas,
        backend=backend,
    )
    place = targets.compile_target(target, options, **settings)
    methods, fractions = options.methods, options.labeled_fractions
    c = components.build(image, methods)
    training = place.training_components(c)
    scale = {"distribution": "data_parallel"} if options.data_parallel else {}
    wrapper = place.training_inputs()

    def on_gpu(task):
        return place.training(task)

    def retried(task):
        return place.retried(task)

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
            worker_image=place.worker_image(),
        ).set_display_name("ingest")
        place.ingest(ingest)
        dataset = ingest.outputs["dataset"]
        common = dict(profile=profile, overrides=overrides, batch_size=batch_size, seed=seed)
        # Checkpoints outside the pod, keyed by run and step: a retry after preemption resumes
        # (`checkpoint_root`, else beside the step's output; `durable.step_folder`), under the
        # target's key of the run (`Target.job_id`).
        durable = dict(checkpoint_root=checkpoint_root, job_id=place.job_id)
        run_id = place.run_id
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
        place.light(checked)
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
                                **wrapper,
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
                    inputs = dict(
                        dataset=dataset,
                        method=method,
                        epochs=epochs,
                        temperature=temperature,
                        encoder=encoder,
                        tensorboard_root=tensorboard_root,
                        tensorboard_name=f"pretrain-{method}{pretrain_tag}",
                        **common,
                        **durable,
                        **once,
                    )
                    if spec.control:  # an untrained encoder: built and saved, on a CPU
                        pretrained = place.untrained(c.pretrain_encoder(**inputs))
                    else:
                        pretrained = retried(
                            on_gpu(training.pretrain_encoder(**inputs, **scale, **wrapper))
                        )
                    pretrained.set_display_name(f"pretrain-{method}{pretrain_tag}")
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
                                **wrapper,
                                **few,
                            )
                        )
                    ).set_display_name(f"classifier-{method}{tag}")
                evaluation = place.accelerated(
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
                place.light(curve)
            explained = place.accelerated(
                c.explain_neighbours(dataset=dataset, **evaluated)
            ).set_display_name("explain-neighbours")
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
            place.gate(compared)

    with fast_setters():  # the pipeline function runs here, once
        return dsl.pipeline(
            name=PIPELINE_NAME,
            description="SupCon and SimCLR pretraining vs a cross-entropy baseline; "
            "the best classifier is promoted if it beats the champion.",
        )(components.document(contrastive_pipeline))


def _branches(methods, fractions):
    """(fraction, method) in DAG order; fraction None when the run has a single one."""
    return [(fraction, method) for fraction in fractions or (None,) for method in methods]
