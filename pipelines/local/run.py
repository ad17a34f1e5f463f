"""Run the whole DAG on this machine with `kfp.local.SubprocessRunner` (what `make run` does).

What the user sees is the view of `pipelines.local.view` (one line per task; a live one in a
terminal); each task's own output goes to `runs/<run-id>/logs/<task>.log` (`verbose`: also
to the terminal, without TensorFlow's start-up notices; `pipelines.local.logs`). Runs are
cached by kfp.local (`runs/.cache`): a task whose component, inputs and upstream outputs are
those of a finished one is not run again. A training step keeps its epoch checkpoints in
`runs/checkpoints/<key>/local/<step>`, `<key>` a hash of the pipeline and its parameters, so
a run killed mid-training and started again with the same parameters resumes there.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from contrastive.tasks.inspecting import SUSPECTS_FILE
from pipelines.dag import build_pipeline
from pipelines.local.kfp_hooks import check_kfp, job_named, observed_tasks, task_names
from pipelines.local.logs import TaskLogs, failure_cause, log_tail, without_frames
from pipelines.local.view import LiveRenderer, PlainRenderer, ProgressPoller, RunView

# A training step's TensorBoard logs: `runs/<run-id>/tensorboard/<step>`, written as a
# placeholder kfp.local resolves when the task starts, so the value (part of the cache key)
# is the same in every run.
LOCAL_TENSORBOARD_ROOT = "{{$.pipeline_root}}/../tensorboard"
FAILED_LOG_LINES = 30


class LocalRunError(RuntimeError):
    """A task of a local run failed; the message names it, its last log lines, its log file
    and every task's state."""

    exit_code = 1


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + uuid.uuid4().hex[:4]


def run_local(
    params: dict,
    *,
    methods: Sequence[str] | None = None,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    cache: bool = True,
    verbose: bool = False,
    console=None,
    labeled_fractions: Sequence[float] = (),
    extra_results: dict | None = None,
) -> dict:
    """Run the pipeline locally; outputs go to `runs/<run-id>/`, `runs/latest` points there.

    Args:
        params: the pipeline's parameters (those not given keep their defaults).
        methods: the branches (None: `contrastive.methods.default_names()`).
        labeled_fractions: few labels, one branch per labelled fraction (compiled into the
            DAG like `methods`); empty: the single run.
        cache: reuse the outputs of tasks already run with the same inputs (kfp.local's
            cache in `runs/.cache`) and resume interrupted training; False: run every task
            afresh, from epoch 0.
        verbose: stream every task's log to the terminal, under plain state lines.
        console: a `rich.console.Console` for the view (default: stdout's); a terminal gets
            the live view, anything else plain lines.
        extra_results: more figures for `results.json` (e.g. the training-time estimate).

    Returns:
        The compact results (also written to `runs/<run-id>/results.json`), with the path
        of the HTML report copied next to it.

    Raises:
        LocalRunError: a task failed (its name, last log lines, log file, every state).
    """
    from kfp import local

    check_kfp()
    runs_dir = Path(runs_dir).resolve()
    run_id = run_id or new_run_id()
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    logs_dir, progress_dir = run_dir / "logs", run_dir / "progress"
    logs_dir.mkdir()
    pipeline = local_pipeline(methods, labeled_fractions)
    params = local_parameters(pipeline, params)
    # Checkpoints keyed by what the run computes: the same parameters resume, others do not
    # (and --no-cache starts from epoch 0 in a folder of its own). A given checkpoint_root
    # (a folder or gs:// prefix) gets the key appended likewise.
    key = run_key(pipeline, params) if cache else run_id
    root = params.get("checkpoint_root") or str(runs_dir / "checkpoints")
    params["checkpoint_root"] = f"{root.rstrip('/')}/{key}"
    # Component commands call `python3`: make it this interpreter, which has the project.
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "artifacts"),
        workspace_root=str(run_dir / "workspace"),
        raise_on_error=False,
        enable_caching=cache,
        cache_root=str(runs_dir / ".cache"),
    )
    start = time.perf_counter()
    cached: dict[str, dict] = {}
    try:
        with (
            job_named(run_id),  # the registry names a promoted version by it
            # (before the task server starts: it compares the tasks' JAX_ variables with its own)
            _environment_default(JAX_CACHE_VARIABLE, str(runs_dir / ".cache" / "jax")),
            warm_tasks(logs_dir / "task-server.log"),
        ):
            run_with_view(
                pipeline,
                params,
                title=f"contrastive run {run_id}",
                logs_dir=logs_dir,
                progress_dir=progress_dir,
                console=console,
                verbose=verbose,
                cached=cached,
            )
    finally:
        link_cached_tensorboard(run_dir, cached)
    seconds = time.perf_counter() - start
    artifacts = run_dir / "artifacts"
    drift = json.loads(_find_output(artifacts, "check-drift", "drift").read_text())
    if drift["decision"] != "train":  # retrain_when: the run stopped before training
        results = skipped_results(drift, run_seconds=seconds, logs=str(logs_dir), run_id=run_id)
    else:
        summary_path = _find_output(artifacts, "compare-and-report", "results")
        summary = json.loads(summary_path.read_text())
        report = run_dir / "report.html"
        shutil.copyfile(summary_path.with_name("report"), report)
        suspects = run_dir / SUSPECTS_FILE
        # (a cached explain-neighbours wrote them in the earlier run's folder)
        shutil.copyfile(summary["neighbours"]["suspects"]["location"], suspects)
        results = compact_results(
            summary,
            **(extra_results or {}),
            run_seconds=seconds,
            report=str(report),
            suspect_labels=str(suspects),
            logs=str(logs_dir),
            run_id=run_id,
        )
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    _point_latest(runs_dir, run_dir)
    if cache:
        marker = _finished_marker(runs_dir, key)
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(run_id + "\n")
    with contextlib.suppress(OSError):  # each step cleared its folder: drop the empty root
        os.rmdir(params["checkpoint_root"])
    return results


def earlier_run(
    params: dict,
    *,
    methods: Sequence[str],
    runs_dir: str | Path,
    labeled_fractions: Sequence[float] = (),
) -> str | None:
    """The id of an earlier finished run of the same pipeline and parameters whose folder is
    still there (the cache holds its tasks' outputs), or None."""
    pipeline = local_pipeline(methods, labeled_fractions)
    key = run_key(pipeline, local_parameters(pipeline, params))
    marker = _finished_marker(Path(runs_dir).resolve(), key)
    if not marker.is_file():
        return None
    run_id = marker.read_text().strip()
    return run_id if run_id and (Path(runs_dir).resolve() / run_id).is_dir() else None


def local_parameters(pipeline, params: dict) -> dict:
    """The parameters a local run passes to `pipeline`: `params`, TensorBoard logs in the
    run's folder, and `data_snapshot` (which enters the ingest task's cache key) followed by
    `inputs:<digest>` of what the run reads beside its parameters (`inputs_fingerprint`): a
    changed source or profile file ingests again, so every task after it runs again too."""
    defaults = {name: spec.default for name, spec in pipeline.component_spec.inputs.items()}
    local = {"tensorboard_root": LOCAL_TENSORBOARD_ROOT, **params}
    inputs = f"inputs:{inputs_fingerprint({**defaults, **local})}"
    local["data_snapshot"] = f"{local.get('data_snapshot', '')} {inputs}".lstrip()
    return local


def inputs_fingerprint(params: dict) -> str:
    """12 hex digits of the content a run's parameters name: the source's files
    (`contrastive.data.fingerprint`) and the profile file's text (`config.profile_digest`;
    a shipped profile is part of the library's fingerprint)."""
    from contrastive.config import ConfigError, profile_digest
    from contrastive.data.fingerprint import source_fingerprint

    try:
        profile = profile_digest(params["profile"])
    except ConfigError:  # the run's own check names it
        profile = ""
    source = source_fingerprint(params["source"])
    return hashlib.sha256(f"{source} {profile}".encode()).hexdigest()[:12]


def _finished_marker(runs_dir: Path, key: str) -> Path:
    return runs_dir / ".cache" / f"finished-{key}.txt"


def run_with_view(
    pipeline,
    params: dict,
    *,
    title: str,
    logs_dir: Path,
    progress_dir: Path,
    console=None,
    verbose: bool = False,
    cached: dict | None = None,
) -> RunView:
    """Runs `pipeline(**params)` under kfp.local (already `local.init`-ed with
    `raise_on_error=False`) with the view of its tasks on `console`, each task's output in
    `logs_dir/<task>.log`, the training steps' progress files in `progress_dir`; `cached`
    gets {task: its outputs} of each task served from the cache.

    Raises:
        LocalRunError: a task failed.
    """
    from rich.console import Console

    from contrastive.environment import PROGRESS_DIR_VARIABLE

    console = console or Console(file=sys.stdout)
    names = task_names(pipeline)
    if console.is_terminal and not verbose:
        renderer = LiveRenderer(title, console)
    else:
        console.print(f"{title}: logs in {logs_dir}", soft_wrap=True, highlight=False)
        renderer = PlainRenderer(lambda line: console.print(line, highlight=False, soft_wrap=True))
    view = RunView(names.values(), renderer)
    if isinstance(renderer, LiveRenderer):
        renderer.attach(view)
    logs = TaskLogs(logs_dir, echo=console.file if verbose else None)
    with (
        _environment(PROGRESS_DIR_VARIABLE, str(progress_dir)),
        renderer,
        ProgressPoller(progress_dir, view) as poller,
        observed_tasks(names, view, logs, poller, cached),
        logs.capturing(),
    ):
        pipeline(**params)
    if (failed := view.failed()) is not None:
        raise LocalRunError(_failure_message(failed, logs.path(failed), view, verbose))
    return view


# How kfp starts a lightweight component's task (its `sh -ec` command line), and how a local
# run starts it instead: the same executor, then an immediate exit (`pipelines.task_main`).
KFP_EXECUTOR = "python3 -m kfp.dsl.executor_main"
TASK_MAIN = "python3 -m pipelines.task_main kfp.dsl.executor_main"


def local_pipeline(methods: Sequence[str] | None, labeled_fractions: Sequence[float] = ()):
    """The DAG compiled for the local target, every task started by `TASK_MAIN`."""
    pipeline = build_pipeline(target="local", methods=methods, labeled_fractions=labeled_fractions)
    exit_at_once(pipeline)
    return pipeline


def exit_at_once(pipeline) -> int:
    """Has every task of `pipeline` start as `TASK_MAIN` where kfp wrote `KFP_EXECUTOR`, in its
    pipeline spec (what kfp.local runs); returns the number of executors changed."""
    executors = pipeline.pipeline_spec.deployment_spec["executors"]
    changed = 0
    for label in executors:
        command = executors[label]["container"]["command"]
        for index, part in enumerate(command):
            if isinstance(part, str) and KFP_EXECUTOR in part:
                command[index] = part.replace(KFP_EXECUTOR, TASK_MAIN)
                changed += 1
    return changed


def run_key(pipeline, params: dict) -> str:
    """12 hex digits naming what a run computes: the compiled pipeline (its components'
    code, its defaults) and the parameters given."""
    digest = hashlib.sha256(pipeline.pipeline_spec.SerializeToString(deterministic=True))
    digest.update(json.dumps(params, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def warm_tasks(log_path: Path):
    """The run's tasks start warm inside the block: a task server (`pipelines.task_server`,
    its output in `log_path`) imports TensorFlow and Keras once and forks each task, named to
    the tasks by its variable; nothing changes when `CONTRASTIVE_WARM_TASKS=0`."""
    from pipelines import task_server

    with task_server.serving(log_path) as path:
        if path is None:
            yield
            return
        with _environment(task_server.SERVER_VARIABLE, path):
            yield


# JAX's persistent compilation cache: a local run's JAX steps compile their programs once per
# machine, not once per task process and run (a rerun with other parameters, a schedule).
JAX_CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


@contextlib.contextmanager
def _environment_default(name: str, value: str):
    """`_environment(name, value)` unless the variable is set already (the user's choice)."""
    if os.environ.get(name):
        yield
        return
    with _environment(name, value):
        yield


@contextlib.contextmanager
def _environment(name: str, value: str):
    """`os.environ[name] = value` inside the block (inherited by the task processes)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _failure_message(task: str, log: Path, view: RunView, verbose: bool = False) -> str:
    """The task, its one-line cause and its log first; then the log's last lines, traceback
    frames left out unless `verbose`; then every task's state."""
    printed = log_tail(log, None)
    tail = (printed if verbose else without_frames(printed))[-FAILED_LOG_LINES:]
    left_out = "" if verbose else " (traceback frames left out; -v shows them)"
    lines = [f"task {task} failed: {failure_cause(printed) or 'no output'}", f"log: {log}"]
    lines.append(f"the last {len(tail)} lines of its log{left_out}:")
    lines += [f"  {line}" for line in tail]
    lines.append(f"tasks: {view.states()}")
    return "\n".join(lines)


def skipped_results(drift: dict, **extra) -> dict:
    """The results of a run that stopped before training (`retrain_when`): the decision and
    the drift check, no methods."""
    from contrastive.tasks.inspecting import compact_drift

    compact = compact_drift(drift)
    return {
        "skipped": True,
        "decision": {"outcome": "skipped", "promoted": False, "reason": drift["reason"]},
        "drift": compact,
        **extra,
    }


def compact_results(summary: dict, **extra) -> dict:
    """The figures a person compares: per-method test accuracy and train time, the decision."""
    methods = {
        name: {
            key: method.get(key)
            for key in (
                "test_accuracy",
                "train_seconds",
                "knn_accuracy",
                "macro_f1",
                "mixed_precision",
            )
        }
        for name, method in summary["methods"].items()
    }
    curve = summary.get("label_efficiency")
    if curve:  # several labelled fractions: every figure by fraction, then method
        from contrastive import label_efficiency

        extra = {"label_efficiency": label_efficiency.by_fraction(curve), **extra}
    return {
        "profile": summary.get("profile"),
        "dataset": summary.get("dataset"),
        "methods": methods,
        "best": summary.get("best"),
        "decision": summary.get("decision"),
        "drift": summary.get("drift"),
        "neighbours": summary.get("neighbours"),
        # each contrastive method against the random-init control (issue 23)
        **{key: summary[key] for key in ("controls", "controls_by_fraction") if key in summary},
        **extra,
    }


def _find_output(root: Path, task: str, output: str) -> Path:
    matches = sorted(root.glob(f"*/{task}*/{output}"), key=lambda p: p.stat().st_mtime)
    if not matches:
        raise FileNotFoundError(f"the pipeline finished without {task}/{output} under {root}")
    return matches[-1]


def link_cached_tensorboard(run_dir: Path, cached: dict[str, dict]) -> list[str]:
    """For each task served from the cache, `run_dir/tensorboard/<task>` becomes a link to
    the TensorBoard logs of the run that trained it (the run folder beside `run_dir` that
    holds the task's cached output artifacts), so the run's TensorBoard shows every step.
    Returns the tasks linked."""
    runs_dir = run_dir.parent
    linked = []
    for task, outputs in sorted(cached.items()):
        for artifact in outputs.values():
            path = Path(getattr(artifact, "uri", "") or "")
            if not path.is_relative_to(runs_dir) or path.is_relative_to(run_dir):
                continue
            trained = path.relative_to(runs_dir).parts[0]
            logs, link = runs_dir / trained / "tensorboard" / task, run_dir / "tensorboard" / task
            if logs.is_dir() and not link.exists():
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(Path("..", "..", trained, "tensorboard", task))
                linked.append(task)
            break
    return linked


def _point_latest(runs_dir: Path, run_dir: Path) -> None:
    latest = runs_dir / "latest"
    staging = runs_dir / f".latest-{uuid.uuid4().hex[:6]}"
    staging.symlink_to(run_dir.name)
    os.replace(staging, latest)
