"""`contrastive compile`, `submit` and `schedule`: a package for a cluster target, and a run
of it there.

Each target adds its own flags (`Target.add_compile_arguments`,
`Target.add_connection_arguments`); a flag of another target than `--target` is refused
naming whose it is. Exit codes of `submit`/`schedule`: 0 done, 2 refused before any request
(bad input), 1 the service failed or refused the request.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from pipelines import targets
from pipelines.cron import ScheduleError
from pipelines.options import BACKENDS
from pipelines.package import request_errors
from pipelines.remote import schedule, submit
from pipelines.targets import SubmitError, fields_of

# The connection flags every cluster target reads, with what each target makes of them
# (`Target.connection_notes`).
COMMON_CONNECTION_FLAGS = {
    "experiment": ("NAME", "experiment to file runs under, created if missing"),
    "pipeline_root": ("URI", "where run artifacts go"),
    "service_account": ("SA", "identity of the run"),
}
SUBMIT_EXAMPLES = """\
examples:
  contrastive submit --target kubeflow --package build/pipeline.yaml \\
      --host http://localhost:8080 --experiment contrastive --params params.yaml
  contrastive submit --target vertex --package build/pipeline.yaml \\
      --project my-project --region us-central1 \\
      --pipeline-root gs://my-bucket/pipeline-root \\
      --service-account trainer@my-project.iam.gserviceaccount.com \\
      --experiment supcon-sweep
"""

SCHEDULE_EXAMPLES = """\
cron:
  kubeflow  6 fields, seconds first:        --cron '0 0 3 * * 1'   (Mondays 03:00 UTC)
  vertex    5 fields, optional time zone:   --cron 'TZ=Europe/Paris 0 3 * * 1'

Scheduled runs disable task caching unless --enable-caching is given, so each run
ingests the data as it is when the run starts.

examples:
  contrastive schedule --target kubeflow --package build/pipeline.yaml \\
      --host http://localhost:8080 --cron '0 0 3 * * 1' --schedule-name weekly-train
  contrastive schedule --target vertex --package build/pipeline.yaml \\
      --project my-project --region us-central1 \\
      --pipeline-root gs://my-bucket/pipeline-root \\
      --cron 'TZ=Etc/UTC 0 3 * * 1' --schedule-name weekly-train
"""


def add_compile_command(subparsers) -> None:
    """`contrastive compile`."""
    import components
    from contrastive import methods

    branches = ",".join(methods.default_names())
    clusters = targets.clusters()
    p = subparsers.add_parser(
        "compile",
        help=f"compile the pipeline to YAML for {' or '.join(t.label for t in clusters.values())}",
    )
    p.add_argument(
        "--target",
        choices=list(clusters),
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
        help="; ".join(f"{t.label}: {t.accelerator_example}, ..." for t in clusters.values()),
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
        "--replicas",
        type=int,
        default=1,
        help="nodes per training step (Vertex: CustomJob; Kubeflow: TrainJob)",
    )
    scale.add_argument(
        "--backend",
        default="tensorflow",
        choices=list(BACKENDS),
        help="Keras backend of the steps; jax for data-parallel (use the JAX image)",
    )
    for target in clusters.values():
        target.add_compile_arguments(p)
    p.set_defaults(func=cmd_compile)


def cmd_compile(args) -> int:
    from kfp import compiler

    from pipelines.dag import build_pipeline

    settings = {}  # each target's settings as given: another target's are refused if set
    for target in targets.clusters().values():
        settings.update(fields_of(target.settings_from_args(args)))
    pipeline = build_pipeline(
        image=args.image,
        target=args.target,
        methods=args.methods,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        cpu_limit=args.cpu_limit,
        memory_limit=args.memory_limit,
        retries=args.retries,
        replicas=args.replicas,
        backend=args.backend,
        labeled_fractions=args.labeled_fractions,
        **settings,
    )
    compiler.Compiler().compile(pipeline, package_path=args.output)
    print(f"compiled {args.target} pipeline to {args.output} (image {args.image})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `submit` and `schedule` subcommands to an argparse subparsers object."""
    labels = " or ".join(target.label for target in targets.clusters().values())
    submit_parser = subparsers.add_parser(
        "submit",
        help=f"start one run of a compiled pipeline on {labels}",
        description="Start one run of a compiled pipeline on Kubeflow Pipelines or Vertex "
        "AI Pipelines. Every input is checked before the first request.",
        epilog=SUBMIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_arguments(submit_parser)
    submit_parser.add_argument("--run-name", metavar="N", help="display name of the run")
    caching = submit_parser.add_mutually_exclusive_group()
    caching.add_argument(
        "--enable-caching",
        dest="enable_caching",
        action="store_true",
        default=None,
        help="reuse cached task outputs in every task (default: each task's compile-time setting)",
    )
    caching.add_argument(
        "--disable-caching",
        dest="enable_caching",
        action="store_false",
        help="run every task afresh, ignoring the cache",
    )
    submit_parser.set_defaults(func=run_submit)

    schedule_parser = subparsers.add_parser(
        "schedule",
        help=f"run a compiled pipeline on a cron schedule on {labels}",
        description="Create a recurring run (Kubeflow) or schedule (Vertex AI) of a "
        "compiled pipeline; at most one scheduled run at a time, no catch-up of missed runs.",
        epilog=SCHEDULE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_arguments(schedule_parser)
    schedule_parser.add_argument(
        "--cron",
        required=True,
        metavar="EXPR",
        help="when to run, in the target's dialect: "
        + "; ".join(f"{name}: {t.cron_help}" for name, t in targets.clusters().items()),
    )
    schedule_parser.add_argument(
        "--schedule-name",
        required=True,
        metavar="NAME",
        help="display name of the schedule (Vertex) or recurring run (Kubeflow)",
    )
    schedule_parser.add_argument(
        "--enable-caching",
        action="store_true",
        default=False,
        help="let scheduled runs reuse cached task outputs (default: off, so every run "
        "ingests fresh data)",
    )
    schedule_parser.set_defaults(func=run_schedule)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    clusters = targets.clusters()
    parser.add_argument(
        "--target",
        required=True,
        choices=list(clusters),
        help="where to run: " + ", ".join(f"{n} ({t.title})" for n, t in clusters.items()),
    )
    parser.add_argument(
        "--package",
        required=True,
        metavar="FILE",
        help="compiled pipeline YAML, from `make compile`",
    )
    parser.add_argument(
        "--params",
        metavar="FILE",
        help="YAML or JSON file mapping pipeline parameter names to values",
    )
    for field, (metavar, text) in COMMON_CONNECTION_FLAGS.items():
        notes = "; ".join(
            f"{name}: {target.connection_notes[field]}"
            for name, target in clusters.items()
            if field in target.connection_notes
        )
        parser.add_argument(
            "--" + field.replace("_", "-"), metavar=metavar, help=f"{text}: {notes}"
        )
    fields = list(COMMON_CONNECTION_FLAGS)
    for target in clusters.values():
        fields += target.add_connection_arguments(parser)
    parser.set_defaults(connection_fields=fields)


def connection_from_args(args: argparse.Namespace):
    """The `Connection` that the shared flags of `submit` and `schedule` describe (a flag of
    another target than `--target` is refused, `pipelines.targets.connection`)."""
    return targets.connection(
        args.target, **{field: getattr(args, field) for field in args.connection_fields}
    )


def service_error_message(target: str, err: BaseException) -> str:
    """One line for a request the service refused or failed, with what to do about it."""
    import google.api_core.exceptions as api

    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, api.GoogleAPICallError):
        cause = cause.__cause__
    if cause is None:
        return _other_error_message(target, err)
    status = cause.code if isinstance(cause.code, int) else "?"
    # Over REST the SDK prefixes the request line ("POST https://...: "); the URL adds nothing.
    message = re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", str(cause.message))
    text = f"{target} API answered {status}: {message}"
    if isinstance(cause, (api.Unauthenticated, api.Unauthorized)):
        return f"{text} (sign in: gcloud auth application-default login)"
    if isinstance(cause, (api.PermissionDenied, api.Forbidden)):
        return (
            f"{text} (your credentials need roles/aiplatform.user on the project, and "
            "roles/iam.serviceAccountUser on --service-account)"
        )
    if isinstance(cause, api.ServerError):
        return f"{text} (a failure of the service, not of the input: try again later)"
    return text


def _other_error_message(target: str, err: BaseException) -> str:
    import kfp_server_api

    if isinstance(err, kfp_server_api.ApiException):
        return f"{target} API answered {err.status} {err.reason}: {_error_detail(err.body)}"
    return f"{target} request failed: {err}"


def _error_detail(body) -> str:
    """The message of an error body: Google's `{"error": {"message": ...}}` or the KFP API
    gateway's `{"error": "...", "code": 3, "message": "..."}`; else the body's start."""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        for detail in (parsed.get("message"), error):
            if isinstance(detail, str) and detail:
                return detail
    return str(body or "")[:300]


def _handled(target: str, action, *refused: type[BaseException]) -> int:
    """Runs `action()`; maps refusals to exit 2 and service failures to exit 1."""
    try:
        return action()
    except refused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (*request_errors(), RuntimeError) as err:
        print(f"error: {service_error_message(target, err)}", file=sys.stderr)
        return 1


def run_submit(args: argparse.Namespace) -> int:
    """Handler of `contrastive submit`; returns the exit code."""

    def action() -> int:
        connection = connection_from_args(args)
        result = submit(
            args.package,
            connection,
            params=args.params,
            run_name=args.run_name,
            enable_caching=args.enable_caching,
        )
        print(f"run id: {result['run_id']}")
        print(f"url: {result['url']}")
        return 0

    return _handled(args.target, action, SubmitError)


def run_schedule(args: argparse.Namespace) -> int:
    """Handler of `contrastive schedule`; returns the exit code."""

    def action() -> int:
        try:
            connection = connection_from_args(args)
        except SubmitError as err:
            raise ScheduleError(str(err)) from None
        result = schedule(
            args.package,
            connection,
            cron=args.cron,
            schedule_name=args.schedule_name,
            params=args.params,
            enable_caching=args.enable_caching,
        )
        print(f"schedule id: {result['schedule_id']}")
        print(f"cron: {result['cron']}")
        print(f"url: {result['url']}")
        return 0

    return _handled(args.target, action, ScheduleError)
