"""Benchmark the two ingest engines on one synthetic image folder: in-process (threads) and
the Beam DirectRunner at 1 and 2 worker processes.

Each run is a fresh `python -c "contrastive.data.ingest(...)"` process; a sampler (psutil,
every 0.2 s) follows it and its children (the DirectRunner's workers) and records the wall
time, the CPU seconds of the whole process tree (user + system, the last value seen of each
process) and the peak of the tree's summed resident memory. On a shared machine the CPU
seconds are the figure to compare; files/s follows the load (recorded before and after).

Usage:
    PYTHONPATH=src python bench/bench_ingest_beam.py [--files 100000] [--work DIR]
        [--runs inprocess,direct1,direct2] [--output bench/results/ingest_beam.json]
    PYTHONPATH=src python bench/bench_ingest_beam.py --photo-cost   # CPU ms per photo

The folder (`--files` 28x28 grey PNGs in 10 class folders, random pixels, ~0.9 kB each) is
made once under `--work` and reused.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now, print_table, write_json  # noqa: E402

RUNS = {
    "inprocess": {"runner": "inprocess"},
    "direct1": {"runner": "direct", "num_workers": 1},
    "direct2": {"runner": "direct", "num_workers": 2},
}
_INGEST = (
    "import json, sys; from contrastive import data; "
    "m = data.ingest(sys.argv[1], sys.argv[2], progress=False, test_fraction=0.1, "
    "**json.loads(sys.argv[3])); "
    "print(json.dumps({k: v['num_examples'] for k, v in m['splits'].items()}))"
)


def make_folder(root: Path, files: int) -> None:
    from PIL import Image

    if root.exists() and sum(1 for _ in root.rglob("*.png")) == files:
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for number in range(files):
        folder = root / f"class{number % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(buffer, "PNG")
        (folder / f"{number:07d}.png").write_bytes(buffer.getvalue())


def measure(source: Path, output: Path, options: dict) -> dict:
    import psutil

    shutil.rmtree(output, ignore_errors=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _INGEST, str(source), str(output), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    cpu: dict[int, float] = {}
    peak = [0]

    def sample():
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                rss = 0
                for member in tree:
                    try:
                        times = member.cpu_times()
                        cpu[member.pid] = times.user + times.system
                        rss += member.memory_info().rss
                    except psutil.Error:
                        continue
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate(timeout=7200)
    seconds = time.perf_counter() - started
    sampler.join(timeout=5)
    if process.returncode:
        raise RuntimeError(f"ingest {options} exited {process.returncode}")
    counts = json.loads(out.strip().splitlines()[-1])
    total = sum(counts.values())
    return {
        "options": options,
        "splits": counts,
        "examples": total,
        "wall_seconds": round(seconds, 1),
        "files_per_second": round(total / seconds),
        "cpu_seconds": round(sum(cpu.values()), 1),
        "cpu_ms_per_file": round(1000 * sum(cpu.values()) / total, 3),
        "peak_rss_mib": round(peak[0] / 2**20),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def photo_cost(repeats: int = 5) -> dict:
    """CPU ms (process time, so the machine's load does not count) of `reading.prepare` on one
    synthetic photo-like JPEG (smooth gradients + mild noise, quality 90) per size, resized to
    224x224: the per-file cost that sizes a Dataflow job (docs/BENCHMARKS.md section 5b)."""
    from PIL import Image

    from contrastive.data.reading import ImageRules, Payload, prepare

    rng = np.random.default_rng(0)
    figures = {}
    for height, width in ((3000, 4000), (1200, 1600)):
        y, x = np.mgrid[0:height, 0:width]
        diagonal = (x + y) * 255 // (width + height)
        base = np.stack([x * 255 // width, y * 255 // height, diagonal], -1)
        noise = rng.integers(-12, 12, base.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(
            buffer, "JPEG", quality=90
        )
        payload = Payload(data=buffer.getvalue(), declared=True)
        rules = ImageRules((224, 224), 40_000_000)
        prepare(payload, rules)  # warm-up
        started = time.process_time()
        for _ in range(repeats):
            result = prepare(payload, rules)
        figures[f"{height}x{width}"] = {
            "jpeg_bytes": len(payload.data),
            "stored_bytes": len(result.data),
            "cpu_ms": round(1000 * (time.process_time() - started) / repeats, 1),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/contrastive-bench-beam"))
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--output", type=Path, default=Path("bench/results/ingest_beam.json"))
    parser.add_argument(
        "--photo-cost",
        action="store_true",
        help="only measure the CPU per photo (12 MP and 2 MP JPEG -> 224x224) and print it",
    )
    args = parser.parse_args(argv)
    if args.photo_cost:  # added to the results file of the throughput runs
        figures = {"created_at": now(), "load_average": list(os.getloadavg()), **photo_cost()}
        print(json.dumps(figures, indent=2))
        results = json.loads(args.output.read_text()) if args.output.exists() else {}
        write_json(args.output, {**results, "photo_cost": figures})
        return 0
    source = args.work / f"folder-{args.files}"
    made = time.perf_counter()
    make_folder(source, args.files)
    print(f"folder {source}: {args.files} files ({time.perf_counter() - made:.0f} s)")
    results = {}
    for name in args.runs.split(","):
        results[name] = measure(source, args.work / f"out-{name}", RUNS[name])
        print(name, json.dumps(results[name]), flush=True)
    reference = results.get("inprocess")
    rows = []
    for name, result in results.items():
        ratio = result["cpu_seconds"] / reference["cpu_seconds"] if reference else None
        rows.append(
            [
                name,
                result["files_per_second"],
                result["wall_seconds"],
                result["cpu_seconds"],
                result["cpu_ms_per_file"],
                result["peak_rss_mib"],
                "" if ratio is None else round(ratio, 2),
                "/".join(f"{v:.1f}" for v in result["load_average_before"]),
            ]
        )
    print_table(
        f"Ingest of {args.files:,} files (28x28 PNG)",
        [
            "engine",
            "files/s",
            "wall s",
            "CPU s",
            "CPU ms/file",
            "peak RSS MiB",
            "CPU vs in-process",
            "load 1/5/15 min",
        ],
        rows,
    )
    write_json(
        args.output,
        {
            "benchmark": "ingest engines (bench/bench_ingest_beam.py)",
            "created_at": now(),
            "machine": machine(),
            "files": args.files,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
