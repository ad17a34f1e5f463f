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
import logging
import os
import sys
import traceback

EXIT_USAGE = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand: the library's steps (`steps`), the local run (`run`), compile,
    submit and schedule (`cloud`), and each target's own (`Target.add_commands`)."""
    from pipelines import targets
    from pipelines.cli import run, steps

    parser = argparse.ArgumentParser(
        prog="contrastive", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    steps.add_ingest_command(sub)
    run.add_command(sub)
    try:
        from pipelines.cli import cloud
    except ImportError:  # the cloud extras are optional for local use
        cloud = None
    if cloud is not None:
        cloud.add_compile_command(sub)
    steps.add_training_commands(sub)
    for target in targets.TARGETS.values():
        target.add_commands(sub)
    steps.add_evaluation_commands(sub)
    if cloud is not None:
        cloud.register(sub)
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
