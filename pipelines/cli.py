"""`contrastive`: the command line. Every subcommand validates its arguments before any work.

contrastive ingest    --source SOURCE --output URI          images -> TFRecords + manifest
                      [--runner direct|dataflow|flink|spark]  (the same, as a Beam job)
contrastive run       [--profile quick] [--methods ...]      the whole DAG locally (kfp.local)
contrastive compile   --target kubeflow|vertex --output F    pipeline YAML
contrastive pretrain  --data URI --output DIR --method M     one step, outside KFP
contrastive train     --data URI --output DIR (--encoder-model DIR | --baseline)
contrastive evaluate  --data URI --model DIR
contrastive submit / schedule                                run on Kubeflow or Vertex AI
contrastive profiles                                         list the shipped profiles
"""

import argparse
import json
import logging
import os
import sys
import traceback

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _add_config_arguments(parser: argparse.ArgumentParser, *, pretrain: bool = True) -> None:
    group = parser.add_argument_group("configuration (a flag left out keeps the profile's value)")
    group.add_argument(
        "--profile",
        default="quick",
        help="shipped profile name (see `contrastive profiles`) or a YAML file",
    )
    group.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="set any config field, e.g. train.learning_rate=0.01 (repeatable)",
    )
    group.add_argument(
        "--epochs", type=int, default=None, help="pretraining epochs (also the baseline's budget)"
    )
    group.add_argument(
        "--classifier-epochs",
        type=int,
        default=None,
        help="epochs of the classifier on the encoder",
    )
    group.add_argument("--batch-size", type=int, default=None, help="training batch size (>= 2)")
    group.add_argument(
        "--encoder", default=None, help="small_cnn | simclr_cnn | resnet18 | resnet50v2"
    )
    group.add_argument("--seed", type=int, default=None, help="random seed of the training run")
    if pretrain:
        group.add_argument(
            "--temperature", type=float, default=None, help="contrastive softmax temperature (> 0)"
        )


def _add_process_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several processes (train.distribution=data_parallel, JAX backend)",
        "all three together; without them the launcher's environment is read: Vertex AI "
        "CLUSTER_SPEC, or Kubeflow Trainer's JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
        "JAX_PROCESS_ID",
    )
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0")
    group.add_argument("--num-processes", type=int, default=None, help="processes in the job")
    group.add_argument("--process-id", type=int, default=None, help="this process, from 0")


def _add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train afresh and replace a finished --output (without it, a finished output is "
        "reused only when it was asked for the same, else refused naming what differs)",
    )


def _config(args):
    """Profile + flags. A flag given on the command line is validated as given (`--epochs 0`
    is an error, not "the profile's value" as 0 means for pipeline parameters)."""
    from contrastive.config import resolve_config

    overrides = list(args.override)
    for flag, field in (
        ("epochs", "train.epochs"),
        ("classifier_epochs", "train.classifier_epochs"),
        ("batch_size", "train.batch_size"),
        ("temperature", "train.temperature"),
        ("encoder", "model.encoder"),
        ("seed", "train.seed"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{field}={value}")
    return resolve_config(args.profile, overrides=overrides)


def cmd_ingest(args) -> int:
    from contrastive import tasks

    manifest = tasks.run_ingest(
        args.source,
        args.output,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        limit=args.limit,
        image_size=args.image_size,
        on_error=args.on_error,
        overwrite=args.overwrite,
        labeled_fraction=args.labeled_fraction,
        test_fraction=args.test_fraction,
        tfds_data_dir=args.tfds_data_dir,
        progress=sys.stderr.isatty(),
        class_name_variants=args.class_name_variants,
        max_upscale=args.max_upscale,
        max_aspect_ratio=args.max_aspect_ratio,
        runner=args.runner,
        beam_options=_beam_flags(args),
        num_workers=args.num_workers,
        job_timeout=args.job_timeout,
    )
    counts = ", ".join(f"{k}={v['num_examples']}" for k, v in manifest["splits"].items())
    print(f"dataset written to {args.output}: {counts}; skipped {len(manifest['skipped'])}")
    return 0


def _beam_flags(args) -> list[str]:
    """`--beam-options` (shell words) plus `--job-endpoint`, as Beam pipeline flags."""
    import shlex

    flags = shlex.split(args.beam_options or "")
    if args.job_endpoint:
        flags.append(f"--job_endpoint={args.job_endpoint}")
    return flags


# `contrastive run` flags that are not pipeline parameters (the rest come from the pipeline).
RUN_ONLY_FLAGS = (
    "methods",
    "labeled_fractions",
    "override",
    "runs_dir",
    "estimate",
    "cache",
    "verbose",
)
# KFP parameter type -> argparse type (no Boolean parameter yet: argparse's bool("False") is
# True, so one would need its own parser here).
_KFP_TYPES = {"String": str, "Integer": int, "Float": float}


def pipeline_inputs() -> dict:
    """The pipeline's parameters as KFP compiles them: name -> `InputSpec` (type, default,
    description). `contrastive run`'s flags are built from it, so they cannot drift."""
    from pipelines.pipeline import build_pipeline

    return dict(build_pipeline(target="local").component_spec.inputs)


def _add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pipeline parameters (the compiled pipeline's inputs and descriptions; a flag left "
        "out keeps the default shown)"
    )
    for name, spec in pipeline_inputs().items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_KFP_TYPES[spec.type],
            default=None,
            metavar=spec.type.upper(),
            help=f"{spec.description} (default: {spec.default!r})",
        )


def cmd_run(args) -> int:
    from contrastive.config import encode_overrides, parse_overrides_text, unusual_settings
    from contrastive.data.images import parse_image_size
    from contrastive.methods import check_branches
    from contrastive.run_parameters import check_run_parameters
    from contrastive.validation import check
    from pipelines.local import earlier_run, native_notices_filtered, run_local
    from pipelines.pipeline import check_labeled_fractions

    methods = check_branches(args.methods)
    fractions = check_labeled_fractions(args.labeled_fractions or "")
    params = {
        name: getattr(args, name)
        for name in pipeline_inputs()
        if getattr(args, name, None) is not None
    }
    # One mapping for the tasks (values may hold commas): --overrides (a JSON/YAML mapping)
    # then each --override section.field=value.
    overrides = parse_overrides_text(params.get("overrides", ""))
    overrides.update(json.loads(encode_overrides(args.override) or "{}"))
    if overrides:
        params["overrides"] = json.dumps(overrides, sort_keys=True)
    with native_notices_filtered():  # TensorFlow loads here: its start-up notices not shown
        # The check submit and schedule make, before any task (0 / "" keep the profile's value).
        config = check_run_parameters(params)
        for line in unusual_settings(config):  # the tasks' logs say it too, but unseen
            print(f"warning: {line}", file=sys.stderr, flush=True)
        params.setdefault("seed", config.train.seed)
        # Compiled into the DAG like the methods: the flag, else the profile's curve (few-labels).
        fractions = fractions or check_labeled_fractions(config.train.labeled_fractions)
        image_size = parse_image_size(params.get("image_size"))
        check(
            "--test-fraction",
            params.get("test_fraction", 0.2),
            lambda v: 0 <= v < 1,
            "must be in [0, 1)",
        )
        earlier = args.cache and earlier_run(
            params, methods=methods, runs_dir=args.runs_dir, labeled_fractions=fractions
        )
        if earlier:
            print(
                f"same pipeline and parameters as run {earlier}: its tasks' outputs are "
                "reused (--no-cache runs them again)",
                flush=True,
            )
        elif args.estimate:
            _print_estimate(params, config, methods, image_size)
    results = run_local(
        params,
        methods=methods,
        runs_dir=args.runs_dir,
        cache=args.cache,
        verbose=args.verbose,
        labeled_fractions=fractions,
    )
    _print_results(results)
    return 0


def _print_estimate(params: dict, config, methods, image_size) -> None:
    """Training time on this machine, from the encoder's measured throughput, before any
    task starts."""
    from contrastive import estimate

    try:
        result = estimate.estimate_run(
            params.get("source", "fashion_mnist"),
            config,
            methods,
            validation_fraction=params.get("validation_fraction", 0.1),
            test_fraction=params.get("test_fraction", 0.2),
            image_size=image_size,
        )
    except Exception as error:  # an estimate that fails must not stop the run
        logging.getLogger(__name__).warning("no training-time estimate: %s", error)
        return
    if result is not None:
        print(estimate.describe(result), flush=True)


def _print_results(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    if results.get("skipped"):
        console = Console()
        reason = results["decision"]["reason"]
        console.print(f"contrastive run {results['run_id']}: {reason}", soft_wrap=True)
        console.print(f"pipeline time: {results['run_seconds']:.0f} s")
        return
    table = Table(title=f"contrastive run {results['run_id']} (profile {results['profile']})")
    for column in ("method", "test accuracy", "kNN accuracy", "train time"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for name, method in results["methods"].items():
        knn = method.get("knn_accuracy")
        table.add_row(
            name + (" *" if name == results.get("best") else ""),
            f"{100 * method['test_accuracy']:.2f} %",
            f"{100 * knn:.2f} %" if knn is not None else "-",
            f"{method.get('train_seconds') or 0:.0f} s",
        )
    console = Console()
    console.print(table)
    curve = results.get("label_efficiency") or {}
    if curve:
        methods = list(dict.fromkeys(name for by_method in curve.values() for name in by_method))
        efficiency = Table(title="label efficiency: test accuracy by labelled fraction")
        efficiency.add_column("labelled", justify="right")
        for name in methods:
            efficiency.add_column(name, justify="right")
        for fraction, by_method in curve.items():
            cells = [by_method.get(name, {}).get("test_accuracy") for name in methods]
            efficiency.add_row(
                f"{100 * float(fraction):g} %",
                *(f"{100 * value:.2f} %" if value is not None else "-" for value in cells),
            )
        console.print(efficiency)
    if results.get("decision"):
        console.print(f"champion gate: {results['decision'].get('reason')}")
    if (results.get("drift") or {}).get("test"):
        console.print(f"drift check: {results['drift']['reason']}")
    suspects = (results.get("neighbours") or {}).get("suspects")
    if suspects:
        console.print(f"suspect labels: {suspects['count']} ({results['suspect_labels']})")
    console.print(f"pipeline time: {results['run_seconds']:.0f} s")
    console.print(f"report: {results['report']}")
    if results.get("logs"):
        console.print(f"logs: {results['logs']}")


def cmd_compile(args) -> int:
    from kfp import compiler

    from pipelines.kubernetes import KubernetesSettings
    from pipelines.pipeline import build_pipeline, check_labeled_fractions

    kubernetes = KubernetesSettings.from_flags(
        node_selector=args.node_selector,
        tolerations=args.toleration,
        image_pull_secrets=args.image_pull_secret,
        task_timeout=args.task_timeout,
    )
    pipeline = build_pipeline(
        image=args.image,
        target=args.target,
        methods=args.methods,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        cpu_limit=args.cpu_limit,
        memory_limit=args.memory_limit,
        retries=args.retries,
        kubernetes=kubernetes,
        replicas=args.replicas,
        backend=args.backend,
        machine_type=args.machine_type,
        strategy=args.strategy,
        job_output_dir=args.job_output_dir,
        labeled_fractions=check_labeled_fractions(args.labeled_fractions),
    )
    compiler.Compiler().compile(pipeline, package_path=args.output)
    print(f"compiled {args.target} pipeline to {args.output} (image {args.image})")
    return 0


def _join_processes(args, config) -> None:
    """Joins a multi-process job when the flags or the launcher's environment describe one
    (Vertex `CLUSTER_SPEC`, Kubeflow Trainer `JAX_*`); one process otherwise."""
    from contrastive.training import distribution

    group = distribution.join_processes(
        os.environ,
        config.train,
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    if group is not None:
        args.joined_processes = group.num_processes


def cmd_pretrain(args) -> int:
    from contrastive import durable, tasks

    sinks = tasks.StepSinks.from_flags(args)
    with durable.recording_failures(sinks.durable):
        config = _config(args)
        _join_processes(args, config)
        metrics = tasks.run_pretrain(
            args.data,
            args.output,
            config,
            method=args.method,
            sinks=sinks,
            overwrite=args.overwrite,
        )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_train(args) -> int:
    from contrastive import durable, tasks

    if bool(args.encoder_model) == bool(args.baseline):
        raise ValueError("give exactly one of --encoder-model DIR or --baseline")
    sinks = tasks.StepSinks.from_flags(args)
    with durable.recording_failures(sinks.durable):
        config = _config(args)
        _join_processes(args, config)
        if args.baseline:
            metrics = tasks.run_train_baseline(
                args.data, args.output, config, sinks=sinks, overwrite=args.overwrite
            )
        else:
            metrics = tasks.run_train_classifier(
                args.data,
                args.encoder_model,
                args.output,
                config,
                mode=args.mode,
                sinks=sinks,
                overwrite=args.overwrite,
            )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from contrastive import tasks
    from contrastive.reuse import check_apart

    check_apart({"--output": args.output}, {"--data": args.data, "--model": args.model})
    result = tasks.run_evaluate(
        args.data, args.model, split=args.split, predictions_path=args.predictions
    )
    if args.output:
        from contrastive import storage

        storage.write_json(args.output, result)  # atomic: a failed write leaves no half file
    print(
        json.dumps(
            {
                "accuracy": result["accuracy"],
                "macro_f1": result["macro_f1"],
                "num_examples": result["num_examples"],
            },
            indent=2,
        )
    )
    return 0


def cmd_trainjob(args) -> int:
    from contrastive.trainjob import kubernetes_connection, run_trainjob, trainjob_manifest

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
    run_trainjob(manifest, args.namespace, api_client=api_client, timeout=args.timeout)
    print(f"TrainJob {args.namespace}/{args.name} completed")
    return 0


def cmd_profiles(args) -> int:
    from contrastive.config import available_profiles, load_config

    if args.show:
        print(load_config(args.show).to_yaml())
    else:
        for name in available_profiles():
            config = load_config(name)
            print(
                f"{name:26s} {config.model.encoder:11s} {config.train.method:7s} "
                f"epochs={config.train.epochs} batch={config.train.batch_size}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    import components
    from contrastive import methods
    from contrastive.data.images import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_UPSCALE
    from contrastive.data.runners import DEFAULT_JOB_TIMEOUT, RUNNERS
    from contrastive.data.sources import CLASS_NAME_VARIANTS
    from contrastive.tasks.sinks import StepSinks

    branches = ",".join(methods.default_names())
    parser = argparse.ArgumentParser(
        prog="contrastive", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="images -> sharded TFRecords + index.parquet + manifest")
    p.add_argument(
        "--source",
        required=True,
        help="fashion_mnist | idx:DIR | tfds:NAME | npz:FILE | csv:FILE | jsonl:FILE (Vertex AI "
        "import files) | parquet:PATH[?image=COL&label=COL] | a folder (local or gs://)",
    )
    p.add_argument("--output", required=True, help="dataset location (local path or gs://)")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of train held out, stratified (default 0.1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--limit", type=int, default=0, help="at most N examples per split (0 = all)")
    p.add_argument(
        "--image-size",
        default="",
        help="resize every image to H,W (aspect kept: centred crop); default: one shared size "
        "is kept, mixed sizes become the median",
    )
    p.add_argument(
        "--on-error",
        choices=["skip", "fail"],
        default="skip",
        help="undecodable image: record and skip it, or fail naming it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a committed dataset")
    p.add_argument(
        "--labeled-fraction",
        type=float,
        default=0.0,
        help="keep this stratified fraction of train labelled, rest -> unlabeled",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="a folder without test/: hold out this stratified fraction of train as test",
    )
    p.add_argument("--tfds-data-dir", default=None, help="TFDS data_dir (may be gs://)")
    p.add_argument(
        "--class-name-variants",
        choices=CLASS_NAME_VARIANTS,
        default="refuse",
        help="class names that differ only in case or Unicode normalisation (Cat/, cat/): "
        "refuse naming both (default), or merge them into one class (recorded in the manifest)",
    )
    p.add_argument(
        "--max-upscale",
        type=float,
        default=DEFAULT_MAX_UPSCALE,
        help="skip an image that would be enlarged more than this to reach the target size "
        f"(default {DEFAULT_MAX_UPSCALE:g}; inf: no limit)",
    )
    p.add_argument(
        "--max-aspect-ratio",
        type=float,
        default=DEFAULT_MAX_ASPECT_RATIO,
        help="skip an image whose aspect ratio is more than this many times the target's "
        f"(default {DEFAULT_MAX_ASPECT_RATIO:g}; inf: no limit)",
    )
    p.add_argument(
        "--runner",
        choices=list(RUNNERS),
        default="inprocess",
        help="inprocess (threads here; default), or an Apache Beam runner running the same "
        "per-image code: direct (here), dataflow, flink, spark; the dataset is the same bytes",
    )
    p.add_argument(
        "--beam-options",
        default="",
        help='Beam pipeline flags, e.g. "--project=P --region=R --temp_location=gs://B/tmp" '
        '(dataflow) or "--environment_type=EXTERNAL --environment_config=localhost:50000"',
    )
    p.add_argument(
        "--job-endpoint",
        default="",
        help="flink / spark: the portable job server's gRPC address (HOST:PORT)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="threads (inprocess; default 2 x cores) or DirectRunner worker processes (direct; "
        "default cores)",
    )
    p.add_argument(
        "--job-timeout",
        type=float,
        default=DEFAULT_JOB_TIMEOUT,
        help=f"seconds to wait for the Beam job before cancelling it (default "
        f"{DEFAULT_JOB_TIMEOUT:g})",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("run", help="run the whole pipeline locally with kfp.local")
    p.add_argument(
        "--methods",
        default=branches,
        help=f"comma-separated branches: {','.join(methods.names())} (default {branches})",
    )
    p.add_argument(
        "--labeled-fractions",
        default="",
        metavar="F,F,...",
        help="few labels: one branch per labelled fraction, e.g. 0.01,0.1,1 (SimCLR pretrains "
        "once; the report draws the label-efficiency curve); default: the profile's "
        "train.labeled_fractions, empty for all but few-labels (one run, every label)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="set any config field, e.g. data.image_size=[96,96] (repeatable; joins --overrides)",
    )
    p.add_argument("--runs-dir", default="runs", help="where run outputs go (default runs/)")
    p.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="run every task afresh: no outputs of earlier runs reused, no training resumed",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # `contrastive -v run` sets it too
        help="stream every task's log (always in runs/<run-id>/logs/<task>.log)",
    )
    p.add_argument(
        "--no-estimate",
        dest="estimate",
        action="store_false",
        help="skip measuring the encoder's speed for the training-time estimate",
    )
    _add_pipeline_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipeline to YAML for Kubeflow or Vertex AI")
    p.add_argument(
        "--target",
        choices=["kubeflow", "vertex"],
        required=True,
        help="where the YAML will run (accelerator names differ)",
    )
    p.add_argument("--output", required=True, help="YAML file to write")
    p.add_argument(
        "--image",
        default=components.DEFAULT_IMAGE,
        help="container image of every step, e.g. REGISTRY/contrastive:<sha>",
    )
    p.add_argument(
        "--accelerator-type",
        default=None,
        help="Kubeflow: nvidia.com/gpu; Vertex: NVIDIA_L4, NVIDIA_H100_80GB, ...",
    )
    p.add_argument(
        "--accelerator-count",
        type=int,
        default=1,
        help="accelerators per training/evaluation step (0 = CPU only)",
    )
    p.add_argument(
        "--methods",
        default=branches,
        help=f"branches to include: {','.join(methods.names())} (default {branches})",
    )
    p.add_argument(
        "--labeled-fractions",
        default="",
        metavar="F,F,...",
        help="few labels: one branch per labelled fraction, e.g. 0.01,0.1,1 (compiled in; "
        "empty: one run with every label)",
    )
    p.add_argument("--cpu-limit", default="8", help="CPU limit of GPU steps")
    p.add_argument("--memory-limit", default="32G", help="memory limit of GPU steps")
    p.add_argument("--retries", type=int, default=3, help="retries of training steps")
    scale = p.add_argument_group(
        "scale out (README: Scale out)",
        "more than one accelerator in all makes the training steps data-parallel (JAX)",
    )
    scale.add_argument(
        "--replicas", type=int, default=1, help="nodes per training step (Vertex: CustomJob)"
    )
    scale.add_argument(
        "--backend",
        default="tensorflow",
        choices=["tensorflow", "jax"],
        help="Keras backend of the steps; jax for data-parallel (use the JAX image)",
    )
    scale.add_argument(
        "--machine-type", default="", help="Vertex machine of each replica (default: by GPU)"
    )
    scale.add_argument(
        "--strategy", default="STANDARD", choices=["STANDARD", "SPOT"], help="Vertex VMs"
    )
    scale.add_argument(
        "--job-output-dir", default="", help="Vertex CustomJob base output directory (gs://)"
    )
    k8s = p.add_argument_group("Kubernetes pod settings (target kubeflow only, kfp-kubernetes)")
    k8s.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="node label the training and evaluation pods select, e.g. "
        "cloud.google.com/gke-nodepool=gpu-pool (repeatable)",
    )
    k8s.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="taint the training and evaluation pods tolerate, e.g. nvidia.com/gpu:NoSchedule "
        "or cloud.google.com/gke-spot=true:NoSchedule (repeatable)",
    )
    k8s.add_argument(
        "--image-pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="secret every pod pulls the image with, for a private registry (repeatable)",
    )
    k8s.add_argument(
        "--task-timeout",
        type=int,
        default=0,
        metavar="SECONDS",
        help="stop any step's pod after this many seconds (0 = no limit)",
    )
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("pretrain", help="contrastive pretraining of an encoder (one step)")
    p.add_argument("--data", required=True, help="dataset URI written by `contrastive ingest`")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument(
        "--method",
        default="",
        help=f"{' | '.join(methods.pretraining_names())} (default: the profile's)",
    )
    _add_config_arguments(p)
    _add_process_arguments(p)
    StepSinks.add_flags(p)
    _add_overwrite_argument(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="train a classifier on an encoder, or the baseline")
    p.add_argument("--data", required=True, help="dataset URI written by `contrastive ingest`")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--encoder-model", default="", help="model directory from `pretrain`")
    p.add_argument("--baseline", action="store_true", help="cross-entropy baseline instead")
    p.add_argument("--mode", default="", help="linear | finetune (default: profile's)")
    _add_config_arguments(p, pretrain=False)
    _add_process_arguments(p)
    StepSinks.add_flags(p)
    _add_overwrite_argument(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
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
        "--kubeconfig", default="", help="kubeconfig file (default: in-cluster, ~/.kube)"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pretrain ... | -- train ...")
    p.set_defaults(func=cmd_trainjob)

    p = sub.add_parser("evaluate", help="evaluate a classifier on a split")
    p.add_argument("--data", required=True, help="dataset URI written by `contrastive ingest`")
    p.add_argument("--model", required=True, help="classifier model directory")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--predictions", default=None, help="write predictions to this Parquet file")
    p.add_argument("--output", default=None, help="write the full result to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("profiles", help="list the shipped configuration profiles")
    p.add_argument("--show", default="", metavar="PROFILE", help="print one profile as YAML")
    p.set_defaults(func=cmd_profiles)

    try:
        from pipelines import cloud_cli
    except ImportError:  # the cloud extras are optional for local use
        cloud_cli = None
    if cloud_cli is not None:
        cloud_cli.register(sub)
    return parser


def main(argv=None) -> int:
    # TensorFlow's C++ start-up notices drown the output (warnings and errors still show); set
    # before TensorFlow loads, and inherited by the kfp.local task processes.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # The one boundary: whatever a command raises reaches the user as one line naming the
        # file or value (ConfigError, DataError and friends already do; anything else gets its
        # type and the command's inputs), exit code 2 (or the error's own `exit_code`). The
        # traceback only with -v.
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_describe_error(error, args)}", file=sys.stderr)
        if not args.verbose and not _is_own(error):  # ours say all there is to say
            print("(run `contrastive -v ...` for the traceback)", file=sys.stderr)
        code = getattr(error, "exit_code", EXIT_USAGE)  # e.g. a failed cluster job: 1
        if getattr(args, "joined_processes", 0) > 1:
            if not hasattr(error, "exit_code") and not _is_own(error):
                code = EXIT_FAILURE  # a peer died or a collective failed: the job, not the input
            _exit_now(code)
        return code


def _is_own(error: BaseException) -> bool:
    """Raised by our own checks (ConfigError, DataError, ...: they name the file, field and
    value) rather than by a library or the interpreter."""
    own = type(error).__module__.split(".")[0] in ("contrastive", "pipelines")
    return own or isinstance(error, ValueError)


def _describe_error(error: BaseException, args) -> str:
    """One line for the user: the message, plus what was being processed when it does not
    come from our own validation (which already names the file, field and value)."""
    message = str(error) or repr(error)
    if _is_own(error):
        return message
    if type(error).__name__ in ("TrainingDivergedError", "RecordedFailureError"):
        return message  # ours: the epoch, batch and a hint, or the recorded original
    if isinstance(error, OSError) and error.filename and os.fsdecode(error.filename) not in message:
        message = f"{os.fsdecode(error.filename)}: {message}"
    inputs = [
        f"--{name.replace('_', '-')}={value}"
        for name in ("source", "data", "model", "encoder_model", "output", "package")
        if (value := getattr(args, name, None))
    ]
    where = f" (contrastive {args.command} {' '.join(inputs)})" if inputs else ""
    kind = type(error)
    name = kind.__qualname__
    if kind.__module__ != "builtins":  # zlib.error, tensorflow.NotFoundError
        name = f"{kind.__module__.split('.')[0]}.{name}"
    return f"{name}: {message}{where}"


def _exit_now(code: int) -> None:
    """Leaves a multi-process job at once: JAX's exit hook would wait (minutes) at a
    shutdown barrier for peers that may be dead; the job fails with `code`."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
