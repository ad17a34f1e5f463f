"""The library's steps as commands: `contrastive ingest | pretrain | train | evaluate |
profiles`, each one call of `contrastive.tasks`.

`pretrain` and `train` are also what a target runs when it hands a pipeline training step
to other machines (Kubeflow: a TrainJob's nodes): `training_argv` writes a
`contrastive.tasks.calls.TrainingCall` as their command line and `training_call` reads it
back, next to the flags they declare (`_add_training_arguments`), so the spelling lives here
once.
"""

import argparse
import json
import os
import sys


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


def _add_training_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """What `training_argv` writes and `training_call` reads besides the configuration
    (`--profile`, `--override`) and the sinks (`StepSinks.add_flags`): `command` is
    "pretrain" or "train"."""
    from contrastive import methods

    parser.add_argument("--data", required=True, help="dataset URI written by `contrastive ingest`")
    parser.add_argument("--output", required=True, help="model directory to write")
    if command == "pretrain":
        parser.add_argument(
            "--method",
            default="",
            help=f"{' | '.join(methods.pretraining_names())} (default: the profile's)",
        )
        return
    parser.add_argument("--encoder-model", default="", help="model directory from `pretrain`")
    parser.add_argument("--baseline", action="store_true", help="cross-entropy baseline instead")
    parser.add_argument("--mode", default="", help="linear | finetune (default: profile's)")


def training_argv(call) -> list[str]:
    """The `contrastive pretrain | train` command that runs `call` (a `TrainingCall`); each
    override becomes `--override key=<JSON value>` (JSON is YAML, so the value reads back
    exactly)."""
    from contrastive.tasks import calls

    pretrain = call.step == calls.PRETRAIN_STEP
    command = ["contrastive", "pretrain" if pretrain else "train"]
    command += ["--data", call.data, "--output", call.output, "--profile", call.profile]
    if pretrain and call.method:
        command += ["--method", call.method]
    if call.step == calls.CLASSIFIER_STEP:
        command += ["--encoder-model", call.encoder_model] + (
            ["--mode", call.mode] if call.mode else []
        )
    if call.step == calls.BASELINE_STEP:
        command += ["--baseline"]
    for key, value in call.overrides.items():
        command += ["--override", f"{key}={json.dumps(value)}"]
    return command + call.sinks.to_flags()


def training_call(args: argparse.Namespace):
    """The `TrainingCall` of parsed `pretrain` or `train` arguments (`--override` as given;
    the shortcut flags are the configuration's, `_config`)."""
    from contrastive.config import encode_overrides
    from contrastive.tasks import calls
    from contrastive.tasks.sinks import StepSinks

    if args.command == "pretrain":
        step, specific = calls.PRETRAIN_STEP, {"method": args.method}
    elif args.baseline:
        step, specific = calls.BASELINE_STEP, {}
    else:
        step = calls.CLASSIFIER_STEP
        specific = {"encoder_model": args.encoder_model, "mode": args.mode}
    return calls.TrainingCall(
        step,
        data=args.data,
        output=args.output,
        profile=args.profile,
        overrides=json.loads(encode_overrides(args.override) or "{}"),
        sinks=StepSinks.from_flags(args),
        **specific,
    )


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


def _join_processes(args, config) -> None:
    """Joins a multi-process job when the flags or the launcher's environment describe one
    (`contrastive.environment.process_group`); one process otherwise."""
    from contrastive import environment
    from contrastive.training import distribution

    group = distribution.join_processes(
        environment.process_group(
            os.environ,
            coordinator=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        ),
        config.train,
    )
    if group is not None:
        args.joined_processes = group.num_processes


def cmd_pretrain(args) -> int:
    from contrastive import durable, tasks

    call = training_call(args)
    with durable.recording_failures(call.sinks.durable):
        config = _config(args)
        _join_processes(args, config)
        metrics = tasks.run_pretrain(
            call.data,
            call.output,
            config,
            method=call.method,
            sinks=call.sinks,
            overwrite=args.overwrite,
        )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_train(args) -> int:
    from contrastive import durable, tasks
    from contrastive.tasks import calls

    if bool(args.encoder_model) == bool(args.baseline):
        raise ValueError("give exactly one of --encoder-model DIR or --baseline")
    call = training_call(args)
    with durable.recording_failures(call.sinks.durable):
        config = _config(args)
        _join_processes(args, config)
        if call.step == calls.BASELINE_STEP:
            metrics = tasks.run_train_baseline(
                call.data, call.output, config, sinks=call.sinks, overwrite=args.overwrite
            )
        else:
            metrics = tasks.run_train_classifier(
                call.data,
                call.encoder_model,
                call.output,
                config,
                mode=call.mode,
                sinks=call.sinks,
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


def add_ingest_command(sub) -> None:
    """`contrastive ingest`."""
    from contrastive.data.images import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_UPSCALE
    from contrastive.data.runners import DEFAULT_JOB_TIMEOUT, RUNNERS
    from contrastive.data.sources import CLASS_NAME_VARIANTS, source_forms

    p = sub.add_parser("ingest", help="images -> sharded TFRecords + index.parquet + manifest")
    p.add_argument(
        "--source",
        required=True,
        help=source_forms(),
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


def add_training_commands(sub) -> None:
    """`contrastive pretrain` and `contrastive train`."""
    from contrastive.tasks.sinks import StepSinks

    p = sub.add_parser("pretrain", help="contrastive pretraining of an encoder (one step)")
    _add_training_arguments(p, "pretrain")
    _add_config_arguments(p)
    _add_process_arguments(p)
    StepSinks.add_flags(p)
    _add_overwrite_argument(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="train a classifier on an encoder, or the baseline")
    _add_training_arguments(p, "train")
    _add_config_arguments(p, pretrain=False)
    _add_process_arguments(p)
    StepSinks.add_flags(p)
    _add_overwrite_argument(p)
    p.set_defaults(func=cmd_train)


def add_evaluation_commands(sub) -> None:
    """`contrastive evaluate` and `contrastive profiles`."""
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
