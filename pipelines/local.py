"""Run the whole DAG on this machine with `kfp.local.SubprocessRunner` (what `make run` does)."""

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from pipelines.pipeline import DEFAULT_METHODS, build_pipeline


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + uuid.uuid4().hex[:4]


def run_local(
    params: dict,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
) -> dict:
    """Run the pipeline locally; outputs go to `runs/<run-id>/`, `runs/latest` points there.

    Returns the compact results (also written to `runs/<run-id>/results.json`), with the path
    of the HTML report copied next to it.
    """
    from kfp import local

    run_id = run_id or new_run_id()
    run_dir = Path(runs_dir).resolve() / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    # Component commands call `python3`: make it this interpreter, which has the project.
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "artifacts"),
        workspace_root=str(run_dir / "workspace"),
    )
    pipeline = build_pipeline(target="local", methods=methods)
    start = time.perf_counter()
    # TensorBoard logs of every training step: runs/<run-id>/tensorboard/<step> (make tensorboard).
    pipeline(**{"tensorboard_root": str(run_dir / "tensorboard"), **params})
    seconds = time.perf_counter() - start
    summary_path = _find_output(run_dir / "artifacts", "compare-and-report", "results")
    summary = json.loads(summary_path.read_text())
    report_src = summary_path.with_name("report")
    report = run_dir / "report.html"
    shutil.copyfile(report_src, report)
    results = compact_results(summary, run_seconds=seconds, report=str(report), run_id=run_id)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    _point_latest(Path(runs_dir).resolve(), run_dir)
    return results


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
    return {
        "profile": summary.get("profile"),
        "dataset": summary.get("dataset"),
        "methods": methods,
        "best": summary.get("best"),
        "decision": summary.get("decision"),
        **extra,
    }


def _find_output(root: Path, task: str, output: str) -> Path:
    matches = sorted(root.glob(f"*/{task}*/{output}"), key=lambda p: p.stat().st_mtime)
    if not matches:
        raise FileNotFoundError(f"the pipeline finished without {task}/{output} under {root}")
    return matches[-1]


def _point_latest(runs_dir: Path, run_dir: Path) -> None:
    latest = runs_dir / "latest"
    staging = runs_dir / f".latest-{uuid.uuid4().hex[:6]}"
    staging.symlink_to(run_dir.name)
    os.replace(staging, latest)
