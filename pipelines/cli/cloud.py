"""`contrastive submit` and `contrastive schedule`: run a compiled pipeline on a cluster.

`pipelines.cli` calls `register(subparsers)`; each subcommand's `func` takes the parsed
arguments and returns an exit code: 0 done, 2 refused before any request (bad input),
1 the service failed or refused the request.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from pipelines.connection import Connection, SubmitError
from pipelines.schedule import ScheduleError, schedule
from pipelines.submit import request_errors, submit, with_vertex_model
from pipelines.targets import TARGETS

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
        help="experiment to file runs under, created if missing: kubeflow: a KFP experiment "
        "(default 'Default'); vertex: a Vertex AI Experiment (submit only)",
    )
    parser.add_argument(
        "--vertex-model",
        metavar="ID",
        help="vertex: a promoted champion also becomes a new version of this Vertex Model "
        "(alias 'champion'; created if missing); needs the registry parameter on gs://",
    )
    parser.add_argument(
        "--tensorboard",
        metavar="RESOURCE",
        help="vertex: TensorBoard backing --experiment, projects/P/locations/R/tensorboards/ID",
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


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The `Connection` that the shared flags of `submit` and `schedule` describe."""
    return Connection(
        target=args.target,
        host=args.host,
        namespace=args.namespace,
        project=args.project,
        region=args.region,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        experiment=args.experiment,
        tensorboard=args.tensorboard,
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


def _params(args: argparse.Namespace, connection: Connection):
    if args.vertex_model is None:
        return args.params
    return with_vertex_model(args.params, connection, args.vertex_model)


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
            params=_params(args, connection),
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
        connection = connection_from_args(args)
        try:
            params = _params(args, connection)
        except SubmitError as err:
            raise ScheduleError(str(err)) from None
        result = schedule(
            args.package,
            connection,
            cron=args.cron,
            schedule_name=args.schedule_name,
            params=params,
            enable_caching=args.enable_caching,
        )
        print(f"schedule id: {result['schedule_id']}")
        print(f"cron: {result['cron']}")
        print(f"url: {result['url']}")
        return 0

    return _handled(args.target, action, ScheduleError)
