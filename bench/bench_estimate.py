"""The training-time estimate against the training time it estimates, on this machine.

Runs `contrastive run` (in a new runs folder: nothing cached) as a user would, reads the
estimate it printed and recorded (`results.json`: `estimated_training_seconds`) and adds up
what every training step measured itself (each model folder's `metrics.json`: a pretraining
or baseline step's `train_seconds`, a classifier's `classifier_seconds`), the figures the
estimate predicts. Prints both, their ratio per branch and in all, the load average before
and after (the CPU may be shared), and appends the record to `bench/results/estimate.json`.

    python bench/bench_estimate.py [--name quick] [--keep DIR] -- [contrastive run flags]
    python bench/bench_estimate.py --name photos -- --source /tmp/photos
    python bench/bench_estimate.py --name few-labels -- --profile few-labels
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine, now  # noqa: E402

RUN_TIMEOUT_SECONDS = 3 * 3600


def measured_steps(run_dir: Path) -> dict[str, float]:
    """{task folder: seconds} of every training step of a finished run, from the model
    folders' `metrics.json` (pretraining and baseline: `train_seconds`; a classifier:
    `classifier_seconds`, its own training without its encoder's)."""
    steps = {}
    for metrics_path in sorted(run_dir.glob("artifacts/*/*/*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        seconds = metrics.get("classifier_seconds", metrics.get("train_seconds"))
        if seconds is not None:
            steps[metrics_path.parent.parent.name] = float(seconds)
    return steps


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="quick", help="the record's name")
    parser.add_argument("--keep", default="", help="copy the run's logs to this folder")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="-- contrastive run flags")
    args = parser.parse_args(argv)
    flags = [flag for flag in args.flags if flag != "--"]
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as folder:
        runs = Path(folder) / "runs"
        command = [sys.executable, "-m", "pipelines.cli", "run", "--runs-dir", str(runs), *flags]
        load_before, started = load_average(), time.perf_counter()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
        )
        wall, load_after = time.perf_counter() - started, load_average()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (cpu.ru_utime - cpu_before.ru_utime) + (cpu.ru_stime - cpu_before.ru_stime)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return done.returncode
        results = json.loads((runs / "latest" / "results.json").read_text())
        steps = measured_steps((runs / "latest").resolve())
        if args.keep:
            shutil.copytree(runs / "latest" / "logs", Path(args.keep) / args.name)
    estimate = results.get("estimated_training_seconds")
    measured = sum(steps.values())
    line = next((x for x in done.stdout.splitlines() if x.startswith("estimated training")), "")
    record = {
        "name": args.name,
        "command": "contrastive run " + " ".join(flags),
        "date": now(),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu_seconds, 1),  # user + sys of the run and all its tasks
        "pipeline_seconds": round(results["run_seconds"], 1),
        "estimated_training_seconds": estimate,
        "measured_training_seconds": round(measured, 1),
        "ratio": round(estimate / measured, 3) if estimate and measured else None,
        "steps": {name: round(seconds, 1) for name, seconds in steps.items()},
        "test_accuracy": {
            name: method["test_accuracy"] for name, method in results["methods"].items()
        },
        "estimate_line": line,
    }
    print(json.dumps(record, indent=2))
    path = RESULTS_DIR / "estimate.json"
    records = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*records, record], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
