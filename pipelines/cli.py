"""`contrastive`: the command line. Every subcommand validates its arguments before any work.

contrastive ingest    --source SOURCE --output URI          images -> TFRecords + manifest
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
        tfds_data_dir=args.tfds_data_dir,
        progress=sys.stderr.isatty(),
    )
    counts = ", ".join(f"{k}={v['num_examples']}" for k, v in manifest["splits"].items())
    print(f"dataset written to {args.output}: {counts}; skipped {len(manifest['skipped'])}")
    return 0


def cmd_run(args) -> int:
    from contrastive.config import encode_overrides
    from contrastive.run_parameters import check_run_parameters
    from pipelines.local import run_local
    from pipelines.pipeline import _check_methods

    methods = _check_methods(args.methods)
    config = _config(args)  # validate everything before the first task starts
    params = {
        "source": args.source,
        "profile": args.profile,
        "overrides": encode_overrides(args.override),  # a mapping: values may hold commas
        "epochs": args.epochs or 0,
        "classifier_epochs": args.classifier_epochs or 0,
        "batch_size": args.batch_size or 0,
        "temperature": args.temperature or 0.0,
        "encoder": args.encoder or "",
        "limit": args.limit,
        "seed": config.train.seed,
        "classifier_mode": args.classifier_mode or config.train.classifier_mode,
        "registry": args.registry,
        "promotion_margin": args.promotion_margin,
        "validation_fraction": args.validation_fraction,
    }
    from contrastive.validation import check

    check("--limit", args.limit, lambda v: v >= 0, "must be >= 0 (0 = all)")
    check("--promotion-margin", args.promotion_margin, lambda v: v >= 0, "must be >= 0")
    check(
        "--validation-fraction", args.validation_fraction, lambda v: 0 < v < 1, "must be in (0, 1)"
    )
    check_run_parameters(params)  # the check submit and schedule make, before any task
    results = run_local(params, methods=methods, runs_dir=args.runs_dir)
    _print_results(results)
    return 0


def _print_results(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

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
    if results.get("decision"):
        console.print(f"champion gate: {results['decision'].get('reason')}")
    console.print(f"pipeline time: {results['run_seconds']:.0f} s")
    console.print(f"report: {results['report']}")


def cmd_compile(args) -> int:
    from kfp import compiler

    from pipelines.kubernetes import KubernetesSettings
    from pipelines.pipeline import build_pipeline

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
    )
    compiler.Compiler().compile(pipeline, package_path=args.output)
    print(f"compiled {args.target} pipeline to {args.output} (image {args.image})")
    return 0


def cmd_pretrain(args) -> int:
    from contrastive import tasks

    metrics = tasks.run_pretrain(args.data, args.output, _config(args), method=args.method)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_train(args) -> int:
    from contrastive import tasks

    if bool(args.encoder_model) == bool(args.baseline):
        raise ValueError("give exactly one of --encoder-model DIR or --baseline")
    config = _config(args)
    if args.baseline:
        metrics = tasks.run_train_baseline(args.data, args.output, config)
    else:
        metrics = tasks.run_train_classifier(
            args.data, args.encoder_model, args.output, config, mode=args.mode
        )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from contrastive import tasks

    result = tasks.run_evaluate(
        args.data, args.model, split=args.split, predictions_path=args.predictions
    )
    if args.output:
        with open(args.output, "w") as file:
            json.dump(result, file)
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
    from pipelines.pipeline import DEFAULT_METHODS

    parser = argparse.ArgumentParser(
        prog="contrastive", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="images -> sharded TFRecords + index.parquet + manifest")
    p.add_argument(
        "--source",
        required=True,
        help="fashion_mnist | idx:DIR | tfds:NAME | npz:FILE | a folder (local or gs://)",
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
    p.add_argument("--image-size", default="", help="resize every image to H,W")
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
    p.add_argument("--tfds-data-dir", default=None, help="TFDS data_dir (may be gs://)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("run", help="run the whole pipeline locally with kfp.local")
    _add_config_arguments(p)
    p.add_argument("--source", default="fashion_mnist", help="data source (see ingest)")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated branches: baseline,supcon,simclr,npairs",
    )
    p.add_argument(
        "--classifier-mode",
        choices=["linear", "finetune"],
        default=None,
        help="classifier on the pretrained encoder (default: the profile's)",
    )
    p.add_argument("--limit", type=int, default=0, help="ingest at most N examples per split")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of train held out for validation",
    )
    p.add_argument("--registry", default="", help="champion registry (path or gs://); '' = none")
    p.add_argument(
        "--promotion-margin",
        type=float,
        default=0.0,
        help="promote only if test accuracy beats the champion by more than this",
    )
    p.add_argument("--runs-dir", default="runs", help="where run outputs go (default runs/)")
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
        default="contrastive:dev",
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
        default=",".join(DEFAULT_METHODS),
        help="branches to include: baseline,supcon,simclr,npairs",
    )
    p.add_argument("--cpu-limit", default="8", help="CPU limit of GPU steps")
    p.add_argument("--memory-limit", default="32G", help="memory limit of GPU steps")
    p.add_argument("--retries", type=int, default=3, help="retries of training steps")
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
    p.add_argument("--method", default="", help="supcon | simclr | npairs (default: profile's)")
    _add_config_arguments(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="train a classifier on an encoder, or the baseline")
    p.add_argument("--data", required=True, help="dataset URI written by `contrastive ingest`")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--encoder-model", default="", help="model directory from `pretrain`")
    p.add_argument("--baseline", action="store_true", help="cross-entropy baseline instead")
    p.add_argument("--mode", default="", help="linear | finetune (default: profile's)")
    _add_config_arguments(p, pretrain=False)
    p.set_defaults(func=cmd_train)

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
        # type and the command's inputs), exit code 2. The traceback only with -v.
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_describe_error(error, args)}", file=sys.stderr)
        if not args.verbose:
            print("(run `contrastive -v ...` for the traceback)", file=sys.stderr)
        return EXIT_USAGE


def _describe_error(error: BaseException, args) -> str:
    """One line for the user: the message, plus what was being processed when it does not
    come from our own validation (which already names the file, field and value)."""
    message = str(error) or repr(error)
    if isinstance(error, ValueError):  # ConfigError, DataError: the message names the value
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


if __name__ == "__main__":
    sys.exit(main())
