"""`contrastive run`: the whole DAG on this machine (`pipelines.local`), its flags built from
the compiled pipeline's parameters, and the results table."""

import argparse
import json
import logging
import sys

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
        help="skip measuring the encoder's speed for the training-time estimate",
    )
    _add_pipeline_arguments(p)
    p.set_defaults(func=cmd_run)
