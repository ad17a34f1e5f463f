"""Benchmark `contrastive.data`: Fashion-MNIST ingest and read-back throughput.

Targets (2-core machine): ingest >= 20,000 images/s, read + decode >= 50,000 images/s.
Also measures what the design choices rest on: raw bytes vs PNG for array sources (encode,
ingest and read rates, bytes per image) and thread scaling for image-folder ingest.

Usage:
    PYTHONPATH=src python bench/bench_ingest.py [--repeats 3] [--folder-images 4000]
        [--output bench/results/ingest.json]

Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
Prints one line per figure and writes all of them as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

INGEST_TARGET = 20_000
READ_TARGET = 50_000
BATCH_SIZE = 256


def machine() -> dict:
    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import tensorflow as tf

    return {
        "hostname": platform.node(),
        "cpu": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def rates(counts_and_seconds: list[tuple[int, float]]) -> dict:
    values = [count / seconds for count, seconds in counts_and_seconds]
    return {
        "images_per_second_best": round(max(values)),
        "images_per_second_median": round(statistics.median(values)),
        "runs": [round(v) for v in values],
    }


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def bench_ingest(work: Path, repeats: int, array_format: str = "raw") -> tuple[dict, str]:
    from contrastive import data

    output = str(work / f"fashion_mnist_{array_format}")
    runs = []
    for _ in range(repeats):
        manifest, seconds = timed(
            lambda: data.ingest(
                "fashion_mnist", output, overwrite=True, progress=False, array_format=array_format
            )
        )
        total = sum(entry["num_examples"] for entry in manifest["splits"].values())
        runs.append((total, seconds))
    num_bytes = sum(
        shard["num_bytes"] for entry in manifest["splits"].values() for shard in entry["shards"]
    )
    return {**rates(runs), "examples": total, "bytes_per_example": round(num_bytes / total)}, output


def bench_read(uri: str, repeats: int) -> dict:
    """Every split, batch 256: pipeline construction, shard check, read, parse and decode."""
    from contrastive import data

    splits = list(data.read_manifest(uri)["splits"])

    def read_all():
        count = 0
        for split in splits:
            for _, labels in data.read_split(uri, split, BATCH_SIZE):
                count += int(labels.shape[0])
        return count

    runs = [timed(read_all) for _ in range(repeats)]

    def read_shuffled(seed):
        batches = data.read_split(uri, "train", BATCH_SIZE, shuffle=True, seed=seed)
        return sum(int(labels.shape[0]) for _, labels in batches)

    shuffled = [timed(read_shuffled, seed) for seed in range(repeats)]
    arrays = [
        timed(lambda: sum(len(data.load_arrays(uri, split)[1]) for split in splits))
        for _ in range(repeats)
    ]
    return {
        **rates(runs),
        "train_shuffled": rates(shuffled),
        "load_arrays": rates(arrays),
    }


def bench_encoders(count: int) -> dict:
    """Encoding one Fashion-MNIST image as raw bytes, PNG via PIL, PNG via tf.data."""
    import tensorflow as tf
    from PIL import Image

    from contrastive.data.sources import read_idx

    images = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", 3)[:count]

    def pil_png():
        sizes = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            sizes.append(buffer.tell())
        return sizes

    def tf_png():
        dataset = tf.data.Dataset.from_tensor_slices(images[..., None]).map(
            tf.io.encode_png, num_parallel_calls=tf.data.AUTOTUNE
        )
        return [len(encoded) for encoded in dataset.batch(1024).unbatch().as_numpy_iterator()]

    results = {}
    for name, function in (
        ("raw_tobytes", lambda: [len(image.tobytes()) for image in images]),
        ("pil_png", pil_png),
        ("tf_encode_png_tf_data", tf_png),
    ):
        sizes, seconds = timed(function)
        results[name] = {
            "images_per_second": round(count / seconds),
            "bytes_per_image": round(float(np.mean(sizes))),
        }
    return results


def bench_folders(work: Path, count: int) -> dict:
    """Folder ingest (read, validate by full decode, keep bytes) against the thread count."""
    from PIL import Image

    from contrastive import data
    from contrastive.data.sources import read_idx

    images = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", 3)[:count]
    labels = read_idx("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", 1)[:count]
    kinds = {"png_28x28_grey": work / "folder_png", "jpeg_112x112_rgb": work / "folder_jpeg"}
    for number, (image, label) in enumerate(zip(images, labels, strict=True)):
        for kind, root in kinds.items():
            directory = root / str(label)
            directory.mkdir(parents=True, exist_ok=True)
            if kind.startswith("png"):
                Image.fromarray(image).save(directory / f"{number}.png")
            else:
                large = np.repeat(np.kron(image, np.ones((4, 4), np.uint8))[..., None], 3, axis=-1)
                Image.fromarray(large).save(directory / f"{number}.jpg", quality=90)
    results = {}
    for kind, root in kinds.items():
        results[kind] = {}
        for workers in (1, 2, 4, 8):
            output = str(work / f"out_{kind}")
            options = dict(num_workers=workers, overwrite=True, progress=False)
            runs = [(count, timed(data.ingest, str(root), output, **options)[1])]
            results[kind][f"num_workers={workers}"] = rates(runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder-images", type=int, default=4000)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "ingest.json"))
    arguments = parser.parse_args()

    results = {
        "benchmark": "bench/bench_ingest.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "dataset": "Fashion-MNIST, 60k train + 10k test, 28x28x1 (IDX from dataset-fashion-mnist)",
        "batch_size": BATCH_SIZE,
        "targets": {
            "ingest_images_per_second": INGEST_TARGET,
            "read_images_per_second": READ_TARGET,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as work:
        work = Path(work)
        results["ingest_raw"], raw_uri = bench_ingest(work, arguments.repeats)
        print(f"ingest (raw):      {results['ingest_raw']['images_per_second_best']:>9,} images/s")
        results["read_raw"] = bench_read(raw_uri, arguments.repeats)
        print(f"read + decode:     {results['read_raw']['images_per_second_best']:>9,} images/s")
        results["ingest_png"], png_uri = bench_ingest(work, 1, array_format="png")
        print(f"ingest (png):      {results['ingest_png']['images_per_second_best']:>9,} images/s")
        results["read_png"] = bench_read(png_uri, 1)
        print(f"read + decode png: {results['read_png']['images_per_second_best']:>9,} images/s")
        results["encoders"] = bench_encoders(20_000)
        for name, figures in results["encoders"].items():
            print(
                f"encode {name}: {figures['images_per_second']:,} images/s, "
                f"{figures['bytes_per_image']} bytes"
            )
        if arguments.folder_images:
            results["folder_ingest"] = bench_folders(work, arguments.folder_images)
            for kind, by_workers in results["folder_ingest"].items():
                figures = ", ".join(
                    f"{workers.split('=')[1]}: {value['images_per_second_best']:,}"
                    for workers, value in by_workers.items()
                )
                print(f"folder ingest {kind} (workers: images/s): {figures}")
    results["ingest_meets_target"] = (
        results["ingest_raw"]["images_per_second_best"] >= INGEST_TARGET
    )
    results["read_meets_target"] = results["read_raw"]["images_per_second_best"] >= READ_TARGET
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
