"""Quality at equal budget on Fashion-MNIST: cross-entropy baseline vs SupCon, SimCLR, the
seeds' npairs formulation and the untrained-encoder control, each on the same encoder and
epochs, over several seeds.

Every variant starts from one profile (`--profile`, `quick` by default) and trains in this
process with the library's entry points (`contrastive.training`), fed NumPy arrays:

- `baseline`: `train_baseline` for `train.epochs + train.classifier_epochs` epochs;
- `supcon`, `simclr`: `pretrain` for `train.epochs`, then the profile's classifier
  (`train_classifier`, `train.classifier_mode`: a head fitted on the frozen features by
  default, its choice recorded per run);
- `random_init`: the control, `training.random_init` (the same encoder, untrained), then the same
  classifier;
- `npairs_seed`: the seeds' formulation with their heads (npairs loss on one view,
  temperature 0.05, linear 128-d projection head, dropout-512-dropout classifier head), then
  the same classifier phase.

Reported per run: test accuracy of the classifier on the 10k test images, and the weighted
kNN accuracy (k = `train.knn_k`, temperature `train.knn_temperature`) of its encoder's
features, the training subset as references and the test set as queries. Summaries are
mean +- sample std over seeds. The training set is the pipeline's stratified 54k split of the
60k training images (seed 0), cut to its first `--limit` images; the 6k validation split is
what the classifier step may choose on (fine-tuned or not), as in the pipeline. Every choice
is made on training or validation data; the test images are only scored.

Few labels (`--labeled-fractions 0.01,0.1,1`, seed 003's experiment): per seed, SimCLR
pretrains once on every training image (its loss uses no label), then per fraction the
labelled subset is `contrastive.data.splits.labeled_subset` of the training images
(stratified, seeded by the seed, nested) and
- `baseline`: cross-entropy on the subset only;
- `random_init`: the untrained encoder, then the classifier;
- `simclr`: the classifier on the one SimCLR encoder (its weights restored per fraction:
  fine-tuning changes them);
- `supcon`: SupCon pretraining on every image, labels only on the subset (the others are
  anchors whose only positives are their own views), then the classifier.
The classifier sees the whole pool with the others unlabelled (standardisation, label
spreading); fine-tuning and the baseline train on the subset, repeated to at least
`train.labeled_steps_per_epoch` batches an epoch, as in the pipeline. Test accuracy
on the whole test set; kNN with the subset as references.

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
    {"name": "random_init", "method": "random_init", "overrides": {"train.method": "random_init"}},
]
# The methods of the few-labels mode, in run order.
FRACTION_METHODS = ("baseline", "random_init", "supcon", "simclr")


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


def run_one(variant: dict, config, train, validation, test) -> dict:
    """Trains one variant with one seed; returns accuracies, timings and final losses."""
    from contrastive import methods, training
    from contrastive.training.optim import machine_mixed_precision

    started, cpu_started = time.perf_counter(), time.process_time()
    phases, details = {}, {}
    if methods.get(variant["method"]).end_to_end:
        model, history = training.train_baseline(
            config, train, validation, num_classes=common.NUM_CLASSES
        )
        phases["baseline_seconds"] = time.perf_counter() - started
        final = {"loss": history["loss"][-1], "accuracy": history["accuracy"][-1]}
    else:
        # train.method random_init (the control): pretrain returns the untrained encoder
        encoder, pre_history = training.pretrain(config, train, num_classes=common.NUM_CLASSES)
        phases["pretrain_seconds"] = time.perf_counter() - started
        middle = time.perf_counter()
        model, history = training.train_classifier(
            config, encoder, train, validation, num_classes=common.NUM_CLASSES, details=details
        )
        phases["classifier_seconds"] = time.perf_counter() - middle
        final = {
            "pretrain_loss": (pre_history.get("loss") or [None])[-1],
            "contrastive_accuracy": (pre_history.get("contrastive_accuracy") or [None])[-1],
            "classifier_loss": (history.get("loss") or [None])[-1],
            "classifier_accuracy": history["accuracy"][-1],
        }
    train_seconds = time.perf_counter() - started
    # CPU seconds of all threads: comparable between configurations under other jobs' load
    train_cpu_seconds = time.process_time() - cpu_started
    return {
        **_scores(model, config, train, test),
        "validation_accuracy": _accuracy(model, validation),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "mixed_precision": machine_mixed_precision(config.train.mixed_precision)[0],
        **{key: round(value, 1) for key, value in phases.items()},
        **_choice(details),
        "final": {k: (None if v is None else round(float(v), 4)) for k, v in final.items()},
    }


def _accuracy(model, images_and_labels) -> float | None:
    """Accuracy on the validation split: what a choice between settings may read."""
    import numpy as np

    from contrastive import training

    if images_and_labels is None or not len(images_and_labels[1]):
        return None
    images, labels = images_and_labels
    predicted = training.predict_proba(model, images).argmax(axis=1)
    return round(float(np.mean(predicted == labels)), 4)


def _scores(model, config, references, test) -> dict:
    """Test accuracy of `model` and the kNN accuracy of its encoder (`references` labelled)."""
    import numpy as np

    from contrastive import training
    from contrastive.models import find_encoder

    probabilities = training.predict_proba(model, test[0])
    x, y = references
    labelled = y >= 0
    knn = training.knn_accuracy(
        find_encoder(model),
        x[labelled],
        y[labelled],
        *test,
        k=min(config.train.knn_k, int(labelled.sum())),
        temperature=config.train.knn_temperature,
    )
    return {
        "test_accuracy": round(float(np.mean(probabilities.argmax(axis=1) == test[1])), 4),
        "knn_accuracy": round(knn, 4),
    }


def _choice(details: dict) -> dict:
    """How the classifier step chose (recorded per run): the fitted head, its cross-validated
    accuracy, and for fine-tuning which model was kept."""
    out = {}
    if details.get("chosen"):
        out["classifier"] = details["chosen"]
        out["classifier_cv_accuracy"] = round(details["cv_accuracy"], 4)
        out["classifier_setting"] = details.get("setting")
        # the best cross-validated head (the pool's heads are preferred within
        # train.probe_pool_tolerance standard errors of it)
        out["classifier_best"] = details.get("best")
        out["classifier_standard_error"] = details.get("standard_error")
    if details.get("distill_kept"):
        out["distill_kept"] = details["distill_kept"]
        out["fitted_val_accuracy"] = details.get("fitted_val_accuracy")
        out["distilled_val_accuracy"] = details.get("distilled_val_accuracy")
    if details.get("kept"):
        out["finetune_kept"] = details["kept"]
        out["fitted_val_accuracy"] = details.get("fitted_val_accuracy")
        out["finetuned_val_accuracy"] = details.get("finetuned_val_accuracy")
    return out


def run_fractions(base, seeds, fractions, data, methods) -> list[dict]:
    """The few-labels runs (see the module docstring): one dict per seed, fraction and method."""
    import numpy as np

    from contrastive import training
    from contrastive.data.splits import labeled_subset, subset_epoch_examples

    (x, y), validation, test = data
    runs = []
    for seed in seeds:

        def config(overrides, seed=seed):
            fixed = {"train.seed": seed, "train.verbose": 0, "train.checkpoint_every": 0}
            return base.replace({**overrides, **fixed})

        simclr = None
        if "simclr" in methods:
            started = time.perf_counter()
            simclr_config = config({"train.method": "simclr"})
            encoder, _ = training.pretrain(simclr_config, (x, y), num_classes=common.NUM_CLASSES)
            # fine-tuning changes the encoder in place: every fraction starts from these
            simclr = (encoder, encoder.get_weights(), time.perf_counter() - started)
        for fraction in fractions:
            subset = labeled_subset(y, fraction, seed)
            epoch = subset_epoch_examples(
                len(subset), base.train.batch_size, base.train.labeled_steps_per_epoch
            )
            repeated = np.resize(subset, epoch)  # the subset cycled to fill the epoch
            labelled = (x[repeated], y[repeated])
            masked = np.full_like(y, -1)
            masked[subset] = y[subset]
            for method in methods:
                started, cpu_started = time.perf_counter(), time.process_time()
                phases, details = {}, {}
                if method == "baseline":
                    model, _ = training.train_baseline(
                        config({}), labelled, validation, num_classes=common.NUM_CLASSES
                    )
                else:
                    if method == "supcon":
                        supcon_config = config(
                            {"train.method": "supcon", "train.use_unlabeled": True}
                        )
                        encoder, _ = training.pretrain(
                            supcon_config,
                            (x, masked),
                            num_classes=common.NUM_CLASSES,
                        )
                        phases["pretrain_seconds"] = time.perf_counter() - started
                    elif method == "simclr":
                        encoder, weights, seconds = simclr
                        encoder.set_weights(weights)
                        phases["pretrain_seconds"] = seconds  # once per seed
                    else:
                        encoder, _ = training.random_init(
                            config({}), (x, y), num_classes=common.NUM_CLASSES
                        )
                    middle = time.perf_counter()
                    model, _ = training.train_classifier(
                        config({}),
                        encoder,
                        (x, masked),
                        validation,
                        num_classes=common.NUM_CLASSES,
                        labelled_train=labelled,
                        details=details,
                    )
                    phases["classifier_seconds"] = time.perf_counter() - middle
                result = {
                    "variant": method,
                    "seed": seed,
                    "labeled_fraction": fraction,
                    "labeled_images": int(len(subset)),
                    **_scores(model, base, (x[subset], y[subset]), test),
                    "validation_accuracy": _accuracy(model, validation),
                    "train_seconds": round(time.perf_counter() - started, 1),
                    "train_cpu_seconds": round(time.process_time() - cpu_started, 1),
                    **{key: round(value, 1) for key, value in phases.items()},
                    **_choice(details),
                }
                runs.append(result)
                _print_run(result)
    return runs


def _print_run(result: dict) -> None:
    print(
        f"{result['variant']:>16} {result['labeled_fraction']:>5g} seed {result['seed']}: "
        f"test {result['test_accuracy']:.4f}, kNN {result['knn_accuracy']:.4f}, "
        f"{result.get('classifier', '-')}, {result['train_seconds']:.0f} s",
        flush=True,
    )


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
        "(the --methods per fraction) instead of the variants",
    )
    parser.add_argument(
        "--methods",
        default=",".join(FRACTION_METHODS),
        help="few-labels mode: comma list of methods (default: all of "
        f"{','.join(FRACTION_METHODS)})",
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
    train, validation = common.split_train_validation(x, y, validation_fraction=0.1, seed=0)
    if limit:
        validation = (validation[0][:limit], validation[1][:limit])
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
            args, argv, base, budget, seeds, fractions, (train, validation, test), (started, date)
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
            result = run_one(variant, config, train, validation, test)
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

    started, date = clock
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    for name in methods:
        if name not in FRACTION_METHODS:
            raise SystemExit(f"methods must be of {list(FRACTION_METHODS)}. Received: {name!r}")
    budget = {
        **budget,
        "labeled_fractions": fractions,
        "labeled_steps_per_epoch": base.train.labeled_steps_per_epoch,
        "classifier_mode": base.train.classifier_mode,
        "feature_layer": base.model.feature_layer,
        "methods": methods,
    }
    runs = run_fractions(base, seeds, fractions, data, methods)
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
