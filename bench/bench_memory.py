"""Peak memory of one pretraining epoch against the dataset size: flat when the steps stream.

For each size N (default 1,000 / 4,000 / 16,000): synthetic 128x128 RGB images (smooth random
patterns, 10 classes) are ingested as raw TFRecords (the `npz:` source), then
`contrastive pretrain --profile tiny --override data.limit=null --epochs 1` runs in a fresh
process whose peak RSS (`ru_maxrss` from `os.wait4`, the kernel's high-water mark, the same
figure `/usr/bin/time -v` prints) is recorded with its wall time. Flat: the largest peak is
within 10 % of the smallest.

`--pythonpath DIR` runs the pretraining from another source tree (e.g. an export of an older
commit: `git archive REV | tar -x -C /tmp/old`, then `--pythonpath /tmp/old/src:/tmp/old`), to
measure the figures before a change with the same script.

Usage:
    .venv/bin/python bench/bench_memory.py [--sizes 1000,4000,16000] [--image-size 128]
        [--output bench/results/memory.json] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

DEFAULT_OUTPUT = common.RESULTS_DIR / "memory.json"
NUM_CLASSES = 10
TEST_IMAGES = 200
FLAT_TOLERANCE = 0.10


def synthetic_images(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` uint8 `[size, size, 3]` images: a class colour and a random low-frequency
    pattern (upsampled 8x8 noise), so that the classes differ and the pixels are not constant."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % NUM_CLASSES
    colours = rng.integers(40, 216, (NUM_CLASSES, 1, 1, 3))
    images = np.empty((count, size, size, 3), np.uint8)
    repeat = size // 8
    for start in range(0, count, 1000):
        stop = min(count, start + 1000)
        noise = rng.integers(-40, 40, (stop - start, 8, 8, 3))
        noise = noise.repeat(repeat, axis=1).repeat(repeat, axis=2)
        images[start:stop] = np.clip(colours[labels[start:stop]] + noise, 0, 255)
    return images, labels


def ingest(count: int, size: int, folder: Path) -> str:
    from contrastive import data

    x_train, y_train = synthetic_images(count, size, seed=count)
    x_test, y_test = synthetic_images(TEST_IMAGES, size, seed=1)
    source = folder / f"synthetic-{count}.npz"
    np.savez(source, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    del x_train
    output = folder / f"dataset-{count}"
    data.ingest(f"npz:{source}", str(output), validation_fraction=0.1, seed=0, progress=False)
    source.unlink()
    return str(output)


def pretrain_peak(dataset: str, output: Path, pythonpath: str | None) -> dict:
    """Peak RSS (MiB) and wall seconds of one pretraining epoch in a fresh process."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [
        sys.executable,
        "-c",
        "import sys; from pipelines.cli import main; sys.argv[0] = 'contrastive'; main()",
        "pretrain",
        "--data",
        dataset,
        "--output",
        str(output),
        "--profile",
        "tiny",
        "--override",
        "data.limit=null",
        "--epochs",
        "1",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    log = process.stdout.read().decode(errors="replace")
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"pretraining on {dataset} failed:\n{log[-3000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,16000", help="training images per run")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--pythonpath", default=None, help="source tree to run (see above)")
    parser.add_argument("--label", default="streaming", help="name of this run in the JSON")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds: 64 and 128 images of 16 px (plumbing)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.image_size = "64,128", 16
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows, runs = [], []
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        for count in sizes:
            dataset = ingest(count, args.image_size, folder)
            result = pretrain_peak(dataset, folder / f"encoder-{count}", args.pythonpath)
            raw_mib = count * args.image_size**2 * 3 / 2**20
            runs.append({"train_images": count, "raw_train_mib": round(raw_mib, 1), **result})
            rows.append([count, f"{raw_mib:.0f}", result["peak_rss_mib"], result["seconds"]])
            shutil.rmtree(dataset)
            shutil.rmtree(folder / f"encoder-{count}", ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    peaks = [run["peak_rss_mib"] for run in runs]
    growth = max(peaks) / min(peaks) - 1
    common.print_table(
        f"peak RSS of one pretraining epoch ({args.label}, {args.image_size}px RGB, tiny)",
        ["train images", "raw MiB", "peak RSS MiB", "seconds"],
        rows,
    )
    print(
        f"largest / smallest peak: +{growth:.1%} (flat within {FLAT_TOLERANCE:.0%}: "
        f"{'yes' if growth <= FLAT_TOLERANCE else 'no'})"
    )
    payload = {}
    if args.output.exists():
        payload = common.json.loads(args.output.read_text())
    payload.update(
        {
            "machine": common.machine(),
            "created_at": common.now(),
            args.label: {
                "command": " ".join(["python", "bench/bench_memory.py", *(argv or sys.argv[1:])]),
                "image_size": args.image_size,
                "runs": runs,
                "growth": round(growth, 4),
                "flat_within_10_percent": growth <= FLAT_TOLERANCE,
            },
        }
    )
    common.write_json(args.output, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
