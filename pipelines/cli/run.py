"""`contrastive run`: the whole DAG on this machine (`pipelines.local`), its flags built from
the compiled pipeline's parameters, and the results table."""

import argparse
import json
import logging
import math
import sys

from pipelines.cli.app import EXIT_USAGE

# `contrastive run` flags that are not pipeline parameters (the rest come from the pipeline).
RUN_ONLY_FLAGS = (
    "methods",
    "yes",
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
    from pipelines.dag import build_pipeline

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
    from contrastive import estimate
    from contrastive.config import encode_overrides, parse_overrides_text, unusual_settings
    from contrastive.data.images import parse_image_size
    from contrastive.methods import check_branches
    from contrastive.run_parameters import check_run_parameters
    from contrastive.validation import check
    from pipelines.local import earlier_run, native_notices_filtered, run_local
    from pipelines.options import check_labeled_fractions

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
        estimated = None
        if not earlier and args.estimate:
            estimated = _estimate(params, methods, fractions, image_size)
        if estimated is not None:
            print(estimate.describe(estimated), flush=True)
            _confirm_long_run(estimated, config, yes=args.yes)
    results = run_local(
        params,
        methods=methods,
        runs_dir=args.runs_dir,
        cache=args.cache,
        verbose=args.verbose,
        labeled_fractions=fractions,
        extra_results={"estimated_training_seconds": estimated and round(estimated.seconds, 1)},
    )
    _print_results(results)
    return 0


def _estimate(params: dict, methods, fractions, image_size):
    """The training time on this machine (`contrastive.estimate`), measured with the
    configuration the tasks will fit to the data, before any task starts; None when the
    source cannot be sized before ingest or the measurement fails (the run goes on)."""
    from contrastive import estimate
    from contrastive.run_parameters import check_run_parameters
    from contrastive.sizing import DataSize

    try:
        config = check_run_parameters(params)
        found = estimate.training_set(
            params.get("source", "fashion_mnist"),
            validation_fraction=params.get("validation_fraction", 0.1),
            test_fraction=params.get("test_fraction", 0.2),
            image_size=image_size or config.data.image_size,
            limit=params.get("limit") or config.data.limit,
        )
        if found is None:
            return None
        fitted = check_run_parameters(params, fit_to=DataSize(found.train, found.classes))
        return estimate.estimate_run(found, fitted, methods, labeled_fractions=fractions)
    except Exception as error:  # an estimate that fails must not stop the run
        logging.getLogger(__name__).warning("no training-time estimate: %s", error)
        return None


# A run whose estimate is longer asks before it starts (refused without --yes off a terminal).
LONG_RUN_SECONDS = 3600
PROMPT_TIMEOUT_SECONDS = 300


class LongRunRefused(ValueError):
    """A run estimated longer than `LONG_RUN_SECONDS` was not confirmed."""

    exit_code = EXIT_USAGE


def _confirm_long_run(estimated, config, *, yes: bool) -> None:
    """Ask before a run estimated longer than an hour (a terminal; unanswered in
    `PROMPT_TIMEOUT_SECONDS`: no), or refuse it without `--yes` (anything else), naming a
    faster alternative.

    Raises:
        LongRunRefused: the run is not confirmed.
    """
    from contrastive.estimate import describe_duration

    if estimated.seconds <= LONG_RUN_SECONDS or yes:
        return
    faster = _faster_alternative(estimated, config)
    long = f"this run trains for {describe_duration(estimated.seconds)} on this machine"
    if sys.stdin.isatty() and sys.stdout.isatty():
        print(f"{long}; faster: {faster}.", flush=True)
        if _ask(f"start it anyway? [y/N] (no answer in {PROMPT_TIMEOUT_SECONDS} s: no)"):
            return
        raise LongRunRefused(f"not started; faster: {faster}")
    raise LongRunRefused(f"{long}: pass --yes to start it, or faster: {faster}")


def _faster_alternative(estimated, config) -> str:
    """What would train in about `LONG_RUN_SECONDS` instead: the CPU profile when the run's
    encoder is another, and the profile's epochs scaled down (else its training images)."""
    from contrastive.config import load_config

    options = []
    quick = load_config("quick").model.encoder
    if config.model.encoder != quick:
        options.append(f"--profile quick ({quick}, minutes on a CPU)")
    share = LONG_RUN_SECONDS / estimated.seconds
    epochs = math.floor(config.train.epochs * share)
    classifier_epochs = max(1, math.floor(config.train.classifier_epochs * share))
    if epochs >= 1:
        options.append(f"--epochs {epochs} --classifier-epochs {classifier_epochs}")
    else:
        options.append(f"--limit {max(1, math.floor(estimated.train_images * share))}")
    return " or ".join(options) + " (about an hour)"


def _ask(question: str, timeout: float = PROMPT_TIMEOUT_SECONDS) -> bool:
    """A yes/no question on the terminal; no answer within `timeout` seconds is no."""
    import select

    print(question, end=" ", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    answer = sys.stdin.readline().strip().lower() if ready else ""
    if not ready:
        print()
    return answer in ("y", "yes")


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


def add_command(sub) -> None:
    """`contrastive run`."""
    from contrastive import methods

    branches = ",".join(methods.default_names())
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
        help="skip measuring the training steps' speed for the training-time estimate",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="start a run estimated to train for more than an hour without asking",
    )
    _add_pipeline_arguments(p)
    p.set_defaults(func=cmd_run)
