"""Quality at equal budget on Fashion-MNIST: cross-entropy baseline vs SupCon, SimCLR and the
seeds' npairs formulation, each on the same encoder and epochs, over several seeds.

Every variant starts from one profile (`--profile`, `quick` by default) and trains in this
process with the library's entry points (`contrastive.training`), fed NumPy arrays:

- `baseline`: `train_baseline` for `train.epochs + train.classifier_epochs` epochs;
- `supcon`, `simclr`: `pretrain` for `train.epochs`, then a linear classifier on the frozen
  encoder (`train_classifier(mode="linear")`) for `train.classifier_epochs`;
- `npairs_seed`: the seeds' formulation with their heads (npairs loss on one view,
  temperature 0.05, linear 128-d projection head, dropout-512-dropout classifier head), then
  the same classifier phase.

Reported per run: test accuracy of the classifier on the 10k test images, and the weighted
kNN accuracy (k = `train.knn_k`, temperature `train.knn_temperature`) of its encoder's
features, the training subset as references and the test set as queries. Summaries are
mean +- sample std over seeds. The training set is the pipeline's stratified 54k split of the
60k training images (seed 0), cut to its first `--limit` images.

Few labels (`--labeled-fractions 0.01,0.1,1`, seed 003's experiment): per seed, SimCLR
pretrains once on every training image (its loss uses no label), then per fraction the
labelled subset is `contrastive.data.splits.labeled_subset` of the training images
(stratified, seeded by the seed, nested) and
- `baseline`: cross-entropy on the subset only;
- `simclr`: a linear classifier on the subset, on the one SimCLR encoder;
- `supcon`: SupCon pretraining on every image, labels only on the subset (the others are
  anchors whose only positives are their own views), then the classifier on the subset.
An epoch over a subset lasts at least `train.labeled_steps_per_epoch` batches (the subset
repeated), as in the pipeline. Test accuracy on the whole test set; kNN with the subset as
references.

Usage:
    python bench/bench_quality.py                                   # ~12 min on 2 cores
    python bench/bench_quality.py --profile few-labels --labeled-fractions 0.01,0.1,1 \
        --output bench/results/quality_few_labels.json              # the label-efficiency curve
    python bench/bench_quality.py --variant "name=supcon_t02 method=supcon train.temperature=0.2" \
        --output bench/results/quality_levers.json                  # a lever, 3 seeds
    python bench/bench_quality.py --smoke                           # seconds
    KERAS_BACKEND=jax python bench/bench_quality.py --profile full --limit 0 \
        --output bench/results/quality_gpu.json                     # GPU (JAX, no TensorFlow)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

DEFAULT_OUTPUT = common.RESULTS_DIR / "quality.json"

# The seeds' npairs formulation and heads (keras-io SupCon examples, seeds 000-002).
SEED_NPAIRS = {
    "train.method": "npairs",
    "train.num_views": 1,
    "train.temperature": 0.05,
    "model.projection_head": "linear",
    "model.projection_dim": 128,
    "model.classifier_head": "seed",
    "model.classifier_hidden_dim": 512,
    "model.dropout": 0.5,
}
DEFAULT_VARIANTS = [
    {"name": "baseline", "method": "baseline", "overrides": {}},
    {"name": "supcon", "method": "supcon", "overrides": {"train.method": "supcon"}},
    {"name": "simclr", "method": "simclr", "overrides": {"train.method": "simclr"}},
    {"name": "npairs_seed", "method": "npairs", "overrides": SEED_NPAIRS},
]


def parse_variant(text: str) -> dict:
    """`"name=N method=M key=value ..."` -> variant dict (method: baseline or a pretraining
    method; the other pairs are config overrides)."""
    import yaml

    from contrastive import methods

    fields = dict(token.split("=", 1) for token in text.split())
    name, method = fields.pop("name", None), fields.pop("method", None)
    if not name or method not in methods.names():
        raise SystemExit(
            f"--variant needs name=NAME and method={'|'.join(methods.names())}. Received: {text!r}"
        )
    overrides = {key: yaml.safe_load(value) for key, value in fields.items()}
    if method == "npairs":
        overrides = {**SEED_NPAIRS, **overrides}
    elif methods.get(method).pretrains:
        overrides = {"train.method": method, **overrides}
    return {"name": name, "method": method, "overrides": overrides}


def run_one(variant: dict, config, train, test) -> dict:
    """Trains one variant with one seed; returns accuracies, timings and final losses."""
    import numpy as np

    from contrastive import methods, training
    from contrastive.models import find_encoder
    from contrastive.training.optim import machine_mixed_precision

    started, cpu_started = time.perf_counter(), time.process_time()
    phases = {}
    if methods.get(variant["method"]).end_to_end:
        model, history = training.train_baseline(config, train, num_classes=common.NUM_CLASSES)
        phases["baseline_seconds"] = time.perf_counter() - started
        final = {"loss": history["loss"][-1], "accuracy": history["accuracy"][-1]}
    else:
        encoder, pre_history = training.pretrain(config, train, num_classes=common.NUM_CLASSES)
        phases["pretrain_seconds"] = time.perf_counter() - started
        middle = time.perf_counter()
        model, history = training.train_classifier(
            config, encoder, train, num_classes=common.NUM_CLASSES, mode="linear"
        )
        phases["classifier_seconds"] = time.perf_counter() - middle
        final = {
            "pretrain_loss": pre_history["loss"][-1],
            "contrastive_accuracy": pre_history.get("contrastive_accuracy", [None])[-1],
            "classifier_loss": history["loss"][-1],
            "classifier_accuracy": history["accuracy"][-1],
        }
    train_seconds = time.perf_counter() - started
    # CPU seconds of all threads: comparable between configurations under other jobs' load
    train_cpu_seconds = time.process_time() - cpu_started
    probabilities = training.predict_proba(model, test[0])
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == test[1]))
    encoder = find_encoder(model)
    knn = training.knn_accuracy(
        encoder,
        *train,
        *test,
        k=config.train.knn_k,
        temperature=config.train.knn_temperature,
    )
    return {
        "test_accuracy": round(test_accuracy, 4),
        "knn_accuracy": round(knn, 4),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "mixed_precision": machine_mixed_precision(config.train.mixed_precision)[0],
        **{key: round(value, 1) for key, value in phases.items()},
        "final": {k: (None if v is None else round(float(v), 4)) for k, v in final.items()},
    }


def run_fractions(base, seeds, fractions, train, test) -> list[dict]:
    """The few-labels runs (see the module docstring): one dict per seed, fraction and method."""
    import numpy as np

    from contrastive import training
    from contrastive.data.splits import labeled_subset, subset_epoch_examples

    x, y = train
    runs = []
    for seed in seeds:

        def config(overrides, seed=seed):
            fixed = {"train.seed": seed, "train.verbose": 0, "train.checkpoint_every": 0}
            return base.replace({**overrides, **fixed})

        started = time.perf_counter()
        simclr_config = config({"train.method": "simclr"})
        simclr_encoder, _ = training.pretrain(simclr_config, train, num_classes=common.NUM_CLASSES)
        simclr_pretrain_seconds = time.perf_counter() - started
        for fraction in fractions:
            subset = labeled_subset(y, fraction, seed)
            epoch = subset_epoch_examples(
                len(subset), base.train.batch_size, base.train.labeled_steps_per_epoch
            )
            repeated = np.resize(subset, epoch)  # the subset cycled to fill the epoch
            labelled = (x[repeated], y[repeated])
            references = (x[subset], y[subset])
            masked = np.full_like(y, -1)
            masked[subset] = y[subset]
            for method in ("baseline", "supcon", "simclr"):
                started, cpu_started = time.perf_counter(), time.process_time()
                phases = {}
                if method == "baseline":
                    model, _ = training.train_baseline(
                        config({}), labelled, num_classes=common.NUM_CLASSES
                    )
                else:
                    if method == "supcon":
                        supcon_config = config(
                            {"train.method": "supcon", "train.use_unlabeled": True}
                        )
                        encoder, _ = training.pretrain(
                            supcon_config, (x, masked), num_classes=common.NUM_CLASSES
                        )
                        phases["pretrain_seconds"] = time.perf_counter() - started
                    else:
                        encoder = simclr_encoder
                        phases["pretrain_seconds"] = simclr_pretrain_seconds  # once per seed
                    middle = time.perf_counter()
                    model, _ = training.train_classifier(
                        config({}), encoder, labelled, num_classes=common.NUM_CLASSES, mode="linear"
                    )
                    phases["classifier_seconds"] = time.perf_counter() - middle
                probabilities = training.predict_proba(model, test[0])
                accuracy = float(np.mean(probabilities.argmax(axis=1) == test[1]))
                from contrastive.models import find_encoder

                knn = training.knn_accuracy(
                    find_encoder(model),
                    *references,
                    *test,
                    k=min(base.train.knn_k, len(subset)),
                    temperature=base.train.knn_temperature,
                )
                result = {
                    "variant": method,
                    "seed": seed,
                    "labeled_fraction": fraction,
                    "labeled_images": int(len(subset)),
                    "test_accuracy": round(accuracy, 4),
                    "knn_accuracy": round(knn, 4),
                    "train_seconds": round(time.perf_counter() - started, 1),
                    "train_cpu_seconds": round(time.process_time() - cpu_started, 1),
                    **{key: round(value, 1) for key, value in phases.items()},
                }
                runs.append(result)
                print(
                    f"{method:>9} {fraction:>5g} seed {seed}: test {accuracy:.4f}, "
                    f"kNN {knn:.4f}, {result['train_seconds']:.0f} s",
                    flush=True,
                )
    return runs


def summarize_fractions(runs: list[dict]) -> dict:
    """`{fraction: {method: summary}}` (fractions as text keys, as in results.json)."""
    out = {}
    for fraction in dict.fromkeys(run["labeled_fraction"] for run in runs):
        mine = [run for run in runs if run["labeled_fraction"] == fraction]
        out[f"{fraction:g}"] = summarize(mine)
    return out


def summarize(runs: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == name]
        entry = {"n": len(mine)}
        for metric in ("test_accuracy", "knn_accuracy", "train_seconds", "train_cpu_seconds"):
            values = [run[metric] for run in mine]
            entry[f"{metric}_mean"] = round(statistics.fmean(values), 4)
            entry[f"{metric}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out[name] = entry
    return out


def _relative(path: Path) -> str:
    return str(path.relative_to(common.REPO_ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="quick", help="base profile (default: quick)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every variant (repeatable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help='"name=N method=M key=value ..." (repeatable); replaces the '
        "default variants baseline, supcon, simclr, npairs_seed",
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma list of train.seed (0,1,2)")
    parser.add_argument(
        "--labeled-fractions",
        default="",
        help="comma list of labelled fractions, e.g. 0.01,0.1,1: the few-labels runs "
        "(baseline, supcon, simclr per fraction) instead of the variants",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=20_000,
        help="training images (first N of the 54k split; 0 = all). Default 20000",
    )
    parser.add_argument("--test-limit", type=int, default=0, help="test images (0 = all 10k)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: 256 images, 1 + 1 epochs, one seed, all variants",
    )
    parser.add_argument(
        "--idx-dir",
        type=Path,
        default=common.FASHION_MNIST_DIR,
        help=f"folder of the Fashion-MNIST IDX .gz files (default: {common.FASHION_MNIST_DIR})",
    )
    parser.add_argument(
        "--no-tf",
        action="store_true",
        help="make any TensorFlow import fail (proves the JAX path needs none)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"JSON results (default: {_relative(DEFAULT_OUTPUT)})",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_tf:
        common.forbid_tensorflow()
    overrides = list(args.override)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    limit, test_limit = args.limit, args.test_limit
    if args.smoke:
        overrides += [
            "train.epochs=1",
            "train.classifier_epochs=1",
            "train.batch_size=64",
            "train.knn_k=10",
        ]
        seeds, limit, test_limit = [0], 256, 256
    variants = [parse_variant(text) for text in args.variant] or DEFAULT_VARIANTS

    from contrastive.config import load_config

    started, date = time.perf_counter(), common.now()
    x, y = common.load_fashion_mnist("train", directory=args.idx_dir)
    train, _ = common.split_train_validation(x, y, validation_fraction=0.1, seed=0)
    if limit:
        train = (train[0][:limit], train[1][:limit])
    test = common.load_fashion_mnist("test", limit=test_limit or None, directory=args.idx_dir)
    base = load_config(args.profile, overrides)
    budget = {
        "profile": args.profile,
        "overrides": overrides,
        "train_images": int(len(train[1])),
        "test_images": int(len(test[1])),
        "pretrain_epochs": base.train.epochs,
        "classifier_epochs": base.train.classifier_epochs,
        "baseline_epochs": base.train.epochs + base.train.classifier_epochs,
        "batch_size": base.train.batch_size,
        "encoder": base.model.encoder,
        "seeds": seeds,
    }
    print(f"budget: {budget}", flush=True)
    fractions = [float(value) for value in args.labeled_fractions.split(",") if value.strip()]
    if fractions:
        return _main_fractions(
            args, argv, base, budget, seeds, fractions, (train, test), (started, date)
        )
    runs = []
    for seed in seeds:
        for variant in variants:
            values = {
                **variant["overrides"],
                "train.seed": seed,
                "train.verbose": 0,
                "train.checkpoint_every": 0,
            }
            config = base.replace(values)
            result = run_one(variant, config, train, test)
            runs.append({"variant": variant["name"], "seed": seed, **result})
            print(
                f"{variant['name']:>14} seed {seed}: test {result['test_accuracy']:.4f}, "
                f"kNN {result['knn_accuracy']:.4f}, {result['train_seconds']:.0f} s "
                f"({result['train_cpu_seconds']:.0f} CPU s, {result['mixed_precision']})",
                flush=True,
            )
    summary = summarize(runs)
    payload = _payload(
        argv, date, started, budget=budget, variants=variants, summary=summary, runs=runs
    )
    common.write_json(args.output, payload)
    rows = [
        [
            name,
            s["n"],
            f"{s['test_accuracy_mean']:.4f} ± {s['test_accuracy_std']:.4f}",
            f"{s['knn_accuracy_mean']:.4f} ± {s['knn_accuracy_std']:.4f}",
            s["train_seconds_mean"],
        ]
        for name, s in summary.items()
    ]
    common.print_table(
        f"quality ({budget['train_images']} train images, {budget['pretrain_epochs']}+"
        f"{budget['classifier_epochs']} epochs, {budget['encoder']}, batch {budget['batch_size']})",
        ["variant", "seeds", "test accuracy", "kNN accuracy", "train s"],
        rows,
    )
    print(f"\nwrote {args.output} ({payload['wall_seconds']} s)")
    return 0


def _payload(argv, date: str, started: float, **fields) -> dict:
    """The results file: what ran (command, start date, machine, backend), `fields` (budget,
    summary, runs, ...) and the wall time since `started`."""
    import os

    return {
        "benchmark": "bench/bench_quality.py",
        "command": shlex.join(["python", "bench/bench_quality.py", *(argv or sys.argv[1:])]),
        "date": date,  # the start
        "machine": common.machine(),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        **fields,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _main_fractions(args, argv, base, budget, seeds, fractions, data, clock) -> int:

    (train, test), (started, date) = data, clock
    budget = {
        **budget,
        "labeled_fractions": fractions,
        "labeled_steps_per_epoch": base.train.labeled_steps_per_epoch,
    }
    runs = run_fractions(base, seeds, fractions, train, test)
    summary = summarize_fractions(runs)
    payload = _payload(argv, date, started, budget=budget, summary_by_fraction=summary, runs=runs)
    common.write_json(args.output, payload)
    rows = [
        [
            fraction,
            name,
            s["n"],
            f"{s['test_accuracy_mean']:.4f} ± {s['test_accuracy_std']:.4f}",
            f"{s['knn_accuracy_mean']:.4f} ± {s['knn_accuracy_std']:.4f}",
            s["train_seconds_mean"],
        ]
        for fraction, methods in summary.items()
        for name, s in methods.items()
    ]
    common.print_table(
        f"label efficiency ({budget['train_images']} train images, {budget['pretrain_epochs']}+"
        f"{budget['classifier_epochs']} epochs, {budget['encoder']}, batch {budget['batch_size']})",
        ["fraction", "method", "seeds", "test accuracy", "kNN accuracy", "train s"],
        rows,
    )
    print(f"\nwrote {args.output} ({payload['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
