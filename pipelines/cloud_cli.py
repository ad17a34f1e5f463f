"""`contrastive submit` and `contrastive schedule`: run a compiled pipeline on a cluster.

`pipelines.cli` calls `register(subparsers)`; each subcommand's `func` takes the parsed
arguments and returns an exit code: 0 done, 2 refused before any request (bad input),
1 the service failed or refused the request.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.schedule import ScheduleError, schedule
from pipelines.submit import SubmitError, request_errors, submit
from pipelines.targets import TARGETS

SUBMIT_EXAMPLES = """\
examples:
  contrastive submit --target kubeflow --package build/pipeline.yaml \\
      --host http://localhost:8080 --experiment contrastive --params params.yaml
  contrastive submit --target vertex --package build/pipeline.yaml \\
      --project my-project --region us-central1 \\
      --pipeline-root gs://my-bucket/pipeline-root \\
      --service-account trainer@my-project.iam.gserviceaccount.com
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `submit` and `schedule` subcommands to an argparse subparsers object."""
    submit_parser = subparsers.add_parser(
        "submit",
        help="start one run of a compiled pipeline on Kubeflow or Vertex AI",
        description="Start one run of a compiled pipeline on Kubeflow Pipelines or Vertex "
        "AI Pipelines. Every input is checked before the first request.",
        epilog=SUBMIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_arguments(submit_parser)
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
        help="run a compiled pipeline on a cron schedule on Kubeflow or Vertex AI",
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
        help="when to run: 6 fields with seconds first for kubeflow ('0 0 3 * * 1'); "
        "5 fields with an optional 'TZ=Area/City ' prefix for vertex ('0 3 * * 1')",
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
    parser.add_argument(
        "--target",
        required=True,
        choices=TARGETS,
        help="where to run: kubeflow (Kubeflow Pipelines API) or vertex (Vertex AI Pipelines)",
    )
    parser.add_argument(
        "--package",
        required=True,
        metavar="FILE",
        help="compiled pipeline YAML, from `make compile`",
    )
    parser.add_argument(
        "--host", metavar="URL", help="kubeflow: KFP API URL, e.g. http://localhost:8080"
    )
    parser.add_argument(
        "--namespace", metavar="NS", help="kubeflow: namespace of a multi-user deployment"
    )
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help="kubeflow: experiment to file runs under (created if missing; default "
        "'Default'); vertex: recorded as the label experiment=NAME",
    )
    parser.add_argument(
        "--params",
        metavar="FILE",
        help="YAML or JSON file mapping pipeline parameter names to values",
    )
    parser.add_argument(
        "--pipeline-root",
        metavar="URI",
        help="where run artifacts go; vertex: required, gs://BUCKET/PATH; kubeflow: "
        "optional (default: the deployment's object store)",
    )
    parser.add_argument("--project", metavar="P", help="vertex: Google Cloud project id")
    parser.add_argument("--region", metavar="R", help="vertex: region, e.g. us-central1")
    parser.add_argument(
        "--service-account",
        metavar="SA",
        help="identity of the run: kubeflow: Kubernetes service account name; vertex: "
        "service account e-mail",
    )
    parser.add_argument("--run-name", metavar="N", help="display name of the run(s)")


def _connection(args: argparse.Namespace) -> dict:
    """The flags `submit` and `schedule` share, as keyword arguments."""
    names = (
        "host",
        "namespace",
        "experiment",
        "params",
        "pipeline_root",
        "project",
        "region",
        "service_account",
        "run_name",
        "enable_caching",
    )
    return {name: getattr(args, name) for name in names}


def run_submit(args: argparse.Namespace) -> int:
    """Handler of `contrastive submit`; returns the exit code."""
    try:
        result = submit(
            args.package,
            target=args.target,
            **_connection(args),
        )
    except SubmitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except request_errors() as err:
        print(f"error: submission to {args.target} failed: {err}", file=sys.stderr)
        return 1
    print(f"run id: {result['run_id']}")
    print(f"url: {result['url']}")
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    """Handler of `contrastive schedule`; returns the exit code."""
    try:
        result = schedule(
            args.package,
            target=args.target,
            cron=args.cron,
            schedule_name=args.schedule_name,
            **_connection(args),
        )
    except ScheduleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except request_errors() as err:
        print(f"error: scheduling on {args.target} failed: {err}", file=sys.stderr)
        return 1
    print(f"schedule id: {result['schedule_id']}")
    print(f"cron: {result['cron']}")
    print(f"url: {result['url']}")
    return 0
