"""What the encoder's space finds: suspect labels among known flipped labels, and the drift
test's false alarms and detections, on Fashion-MNIST.

Label noise: the first `--train-limit` training images with `--noise` of their labels flipped
to another class (seeded), ingested (`validation_fraction` 0.1), then the `--profile` SupCon
encoder + linear classifier and the cross-entropy baseline trained on the noisy labels with
the pipeline's own steps; `run_explain_neighbours` lists the suspects of each, and the
precision and recall of the list against the flipped labels of the train split are printed,
with the same vote on raw pixels and on an untrained encoder as controls, and a sweep of
`min_share`.

Drift: the SupCon encoder above embeds Fashion-MNIST's 60k training images; a reference
sample and a new sample of `DriftSettings.sample_size` each are drawn without overlap
(`--drift-seeds` seeds) and `drift.mmd_test` (the pipeline's settings) compares them: two
draws of the same distribution (false alarms), one class removed from the new sample, and
the new images' brightness scaled by 0.9 and 0.8.

Usage (from the repository root; ~10 min on 2 cores):
    KERAS_BACKEND=tensorflow PYTHONPATH=src:. .venv/bin/python bench/bench_embedding.py \
        [--train-limit 20000] [--noise 0.02] [--drift-seeds 20] [--output FILE]
    ... bench/bench_embedding.py --smoke --output FILE   # the tiny profile on 600 images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SHARES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def flip_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(noisy labels, flipped positions)`: `fraction` of the labels moved to another class,
    uniformly among the other nine."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=round(fraction * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, common.NUM_CLASSES, len(flipped))) % 10
    return noisy, flipped


def score(found_ids, flipped_ids) -> dict:
    found, flipped = set(found_ids), set(flipped_ids)
    hits = len(found & flipped)
    return {
        "suspects": len(found),
        "flipped": len(flipped),
        "found": hits,
        "precision": hits / len(found) if found else None,
        "recall": hits / len(flipped) if flipped else None,
    }


def sweep(features, labels, ids, flipped_ids) -> dict:
    from contrastive import neighbours

    rows = {}
    for share in SHARES:
        found = neighbours.suspect_labels(features, labels, k=10, min_share=share)
        rows[f"{share:g}"] = score([ids[i] for i in found["index"]], flipped_ids)
    return rows


def label_noise(args, workdir: Path) -> tuple[dict, str]:
    from contrastive import data, neighbours, tasks
    from contrastive.config import resolve_config
    from contrastive.models import build_encoder
    from contrastive.tasks import inspecting

    x, y = common.load_fashion_mnist("train", limit=args.train_limit)
    x_test, y_test = common.load_fashion_mnist("test")
    noisy, flipped = flip_labels(y, args.noise, args.seed)
    npz = workdir / "noisy.npz"
    np.savez(npz, x_train=x, y_train=noisy, x_test=x_test, y_test=y_test)
    dataset = str(workdir / "dataset")
    if not (workdir / "dataset" / "manifest.json").exists():
        data.ingest(f"npz:{npz}", dataset, validation_fraction=0.1, seed=args.seed, progress=False)
    flipped_ids = {f"train/{position}" for position in flipped}
    in_train = set(_train_ids(dataset))
    flipped_train = sorted(flipped_ids & in_train)

    config = resolve_config(args.profile, seed=args.seed)
    models, seconds = {}, {}
    clock = time.perf_counter()
    tasks.run_pretrain(dataset, workdir / "encoder", config, method="supcon")
    tasks.run_train_classifier(dataset, workdir / "encoder", workdir / "supcon", config)
    seconds["supcon"] = time.perf_counter() - clock
    clock = time.perf_counter()
    tasks.run_train_baseline(dataset, workdir / "baseline", config)
    seconds["baseline"] = time.perf_counter() - clock  # (a complete model is reused: ~0 s)
    results = {}
    for name in ("supcon", "baseline"):
        evaluation = workdir / f"{name}.json"
        evaluated = tasks.run_evaluate(dataset, workdir / name, embedding_points=0)
        evaluation.write_text(json.dumps(evaluated))
        models[name] = (str(evaluation), str(workdir / name))
        clock = time.perf_counter()
        explained = inspecting.run_explain_neighbours(
            dataset,
            {name: models[name]},
            output_path=workdir / f"{name}-neighbours.json",
            suspects_path=workdir / f"{name}-suspects.csv",
        )
        explain_seconds = time.perf_counter() - clock
        listed = [
            line.split(",", 1)[0]
            for line in (workdir / f"{name}-suspects.csv").read_text().splitlines()[1:]
        ]
        results[name] = {
            "test_accuracy": evaluated["accuracy"],
            "train_seconds": round(seconds[name], 1),
            "explain_seconds": round(explain_seconds, 1),
            "nearest_neighbour_agreement": explained["agreement"]["overall"],
            "default": score(listed, flipped_train),
        }
    # The sweep and the controls over the same reference (the whole train split, in order).
    import keras

    from contrastive.models import find_encoder

    encoders = {
        "supcon": find_encoder(keras.saving.load_model(workdir / "supcon" / "model.keras")),
        "baseline": find_encoder(keras.saving.load_model(workdir / "baseline" / "model.keras")),
        "untrained": build_encoder("small_cnn", (28, 28, 1), seed=args.seed),
    }
    for name, encoder in encoders.items():
        _, features, labels, ids, _ = inspecting.embed_sample(
            encoder, dataset, "train", 10**9, batch_size=512, seed=0
        )
        results.setdefault(name, {})["sweep"] = sweep(features, labels, ids, flipped_train)
        # the space the explain step searches (`neighbours.NeighbourSpace`, its default
        # directions) against the features as they are
        space = neighbours.NeighbourSpace.fit(
            features, inspecting.NeighbourSettings().neighbour_dim
        )
        results[name]["sweep_searched_space"] = sweep(space(features), labels, ids, flipped_train)
        results[name]["feature_dim"] = int(features.shape[1])
    pixels, labels, ids = _pixels(dataset)
    results["pixels"] = {"sweep": sweep(pixels, labels, ids, flipped_train)}
    summary = {
        "train_images": len(in_train),
        "flipped_in_train": len(flipped_train),
        "noise": args.noise,
        "methods": results,
    }
    return summary, str(workdir / "supcon")


def _train_ids(dataset: str) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(dataset) / "index.parquet", columns=["id", "split"])
    ids, splits = table["id"].to_pylist(), table["split"].to_pylist()
    return [i for i, s in zip(ids, splits, strict=True) if s == "train"]


def _pixels(dataset: str):
    from contrastive import data

    images, labels, ids = [], [], []
    for batch, label, record in data.read_split(dataset, "train", 4096, with_ids=True):
        images.append(batch.numpy().reshape(len(label), -1).astype(np.float32))
        labels.append(label.numpy())
        ids += [value.decode() for value in record.numpy()]
    return np.concatenate(images), np.concatenate(labels), ids


def drift_rates(args, model_dir: str) -> dict:
    import keras

    from contrastive import drift, training
    from contrastive.models import find_encoder

    settings = drift.DriftSettings()
    encoder = find_encoder(keras.saving.load_model(Path(model_dir) / "model.keras"))
    x, y = common.load_fashion_mnist("train", limit=args.drift_limit or None)
    features = training.embed(encoder, x)
    n = settings.sample_size
    conditions = {}
    for seed in range(args.drift_seeds):
        rng = np.random.default_rng(1000 + seed)
        order = rng.permutation(len(y))
        reference, rest = order[:n], order[n:]
        samples = {"same distribution": features[rest[:n]]}
        removed = seed % common.NUM_CLASSES
        samples["one class removed"] = features[rest[y[rest] != removed][:n]]
        for factor in (0.9, 0.8):
            darker = np.round(x[rest[:n]].astype(np.float32) * factor).astype(np.uint8)
            samples[f"brightness x{factor:g}"] = training.embed(encoder, darker)
        for name, sample in samples.items():
            for space, normalize in (("features", False), ("normalised", True)):
                test = drift.mmd_test(
                    features[reference],
                    sample,
                    permutations=settings.permutations,
                    seed=seed,
                    normalize=normalize,
                )
                row = {k: test[k] for k in ("statistic", "p_value")}
                conditions.setdefault(f"{name} ({space})", []).append(row)
    return {
        name: {
            "runs": len(rows),
            "alpha": settings.alpha,
            "detected": sum(row["p_value"] < settings.alpha for row in rows),
            "rate": sum(row["p_value"] < settings.alpha for row in rows) / len(rows),
            "median_statistic": float(np.median([row["statistic"] for row in rows])),
            "median_p_value": float(np.median([row["p_value"] for row in rows])),
        }
        for name, rows in conditions.items()
    } | {"sample_size": n, "permutations": settings.permutations}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--train-limit", type=int, default=20_000)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift-seeds", type=int, default=20)
    parser.add_argument("--output", default=str(common.RESULTS_DIR / "embedding.json"))
    parser.add_argument(
        "--workdir",
        help="keep the dataset and models here (reused when complete); default: a temporary folder",
    )
    parser.add_argument("--only", choices=("noise", "drift"), help="run one part only")
    parser.add_argument(
        "--drift-limit",
        type=int,
        default=0,
        help="training images the drift part embeds (0 = all 60k)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: the tiny profile on 600 images (5 %% noise), one drift seed on 3,000",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.profile, args.train_limit, args.noise = "tiny", 600, 0.05
        args.drift_seeds, args.drift_limit = 1, 3000
    started, date = time.perf_counter(), common.now()
    machine = common.machine()
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as folder:
        workdir = Path(args.workdir or folder)
        workdir.mkdir(parents=True, exist_ok=True)
        noise, rates = None, None
        if args.only != "drift":
            noise, _ = label_noise(args, workdir)
            print(json.dumps(noise, indent=1), flush=True)
        if args.only != "noise":
            rates = drift_rates(args, str(workdir / "supcon"))
            print(json.dumps(rates, indent=1))
    payload = {
        "date": date,
        "command": "bench/bench_embedding.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine,
        "seconds": round(time.perf_counter() - started, 1),
        "label_noise": noise,
        "drift": rates,
    }
    Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.output} ({payload['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
