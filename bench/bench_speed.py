"""Training speed: our pretraining and baseline against the seeds' way of training, scaling with
batch and image size, and whether training is input-bound.

Parts (`--parts`, all by default):

- `speed`: in one process per backend, the seed-faithful reference (`bench/seed_reference.py`:
  NumPy arrays into `fit`, seed 000's Keras augmentation layers, npairs on one view, linear
  ReLU head, Adam 1e-3) and ours (`PretrainModel` from `build_pretrain_model`, SupCon, two
  views in one concatenated pass, our augmenter; the `quick` profile) on the same encoder and
  batch, plus the cross-entropy pair (seed classifier vs `build_baseline`) and speed levers
  (XLA `jit_compile=True`, bfloat16) and a cost breakdown (no augmentation, no online probe,
  one view). Every variant is compiled and warmed up first, then the variants run in turn,
  `--repeats` times, so each ratio compares runs taken in the same process minutes apart.
  Once per backend, `contrastive.training.pretrain` / `train_baseline` run end to end with the
  same timer, to check the direct `fit` path matches the library entry points.
- `scaling`: ours, fresh process per point: views/s and peak RSS against batch size and
  image size (Fashion-MNIST resized).
- `input`: ours fed from TFRecords (`contrastive.data.read_split`, shuffle + batch +
  prefetch; and `stream_training_data`, the steps' own finite feed) vs from memory (NumPy),
  same steps, alternating (TensorFlow backend only).

Throughput: augmented views per second for pretraining (an image seen in two views counts
twice), images per second for cross-entropy. Each `fit` runs `--steps` steps; the first
`--warmup` steps of each run are excluded, and each step waits for its loss, so asynchronous
dispatch cannot hide compute. Figures are medians over `--repeats` runs.

Usage:
    python bench/bench_speed.py                          # everything, ~15 min on 2 cores
    python bench/bench_speed.py --parts speed --backends tensorflow --encoder resnet18 \
        --batch-size 32 --steps 8 --no-breakdown --output bench/results/speed_resnet18.json
    python bench/bench_speed.py --smoke                  # seconds; checks the plumbing
    KERAS_BACKEND=jax python bench/bench_speed.py --backends jax --parts speed,scaling \
        --batch-sizes 256,512,1024,2048,4096 --output bench/results/speed_gpu.json  # GPU

`--backends jax` never imports TensorFlow (Fashion-MNIST is read from the IDX `.gz` files), so
it runs on a JAX-only machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_OUTPUT = common.RESULTS_DIR / "speed.json"
NUM_CLASSES = common.NUM_CLASSES

# The cost breakdown and speed levers timed next to the four main variants.
_NO_AUGMENT = {
    "augment.strong.min_area": 1.0,
    "augment.strong.brightness": 0.0,
    "augment.strong.jitter": 0.0,
    "augment.strong.rotation": 0.0,
    "augment.strong.flip": False,
    "augment.weak.min_area": 1.0,
    "augment.weak.brightness": 0.0,
    "augment.weak.jitter": 0.0,
    "augment.weak.flip": False,
}


def speed_variants(backend: str, breakdown: bool) -> list[dict]:
    """The variants timed in one process: reference and ours, then levers and breakdown."""
    variants = [
        {"name": "seed_pretrain", "kind": "seed_pretrain"},
        {"name": "ours_pretrain", "kind": "ours_pretrain"},
        {"name": "seed_ce", "kind": "seed_ce"},
        {"name": "ours_ce", "kind": "ours_ce"},
    ]
    if backend == "tensorflow":  # on JAX every train step is jitted already
        variants += [
            {"name": "ours_pretrain_jit", "kind": "ours_pretrain", "jit_compile": True},
            {"name": "ours_ce_jit", "kind": "ours_ce", "jit_compile": True},
        ]
    variants += [
        {
            "name": "ours_pretrain_bf16",
            "kind": "ours_pretrain",
            "overrides": {"train.mixed_precision": "bfloat16"},
        },
    ]
    if breakdown:
        variants += [
            {"name": "seed_pretrain_noaug", "kind": "seed_pretrain", "augment": False},
            {"name": "ours_pretrain_noaug", "kind": "ours_pretrain", "overrides": _NO_AUGMENT},
            {
                "name": "ours_pretrain_noprobe",
                "kind": "ours_pretrain",
                "overrides": {"train.online_probe": False},
            },
            {
                "name": "ours_npairs_1view",
                "kind": "ours_pretrain",
                "overrides": {"train.method": "npairs", "train.num_views": 1},
            },
        ]
    return variants


# --------------------------------------------------------------------------------------------
# worker side (runs under the chosen KERAS_BACKEND)


def _ours_config(spec: dict, overrides: dict):
    from contrastive.config import load_config

    values = {
        "model.encoder": spec["encoder"],
        "train.batch_size": spec["batch_size"],
        "train.verbose": 0,
        "train.checkpoint_every": 0,
    }
    values.update(overrides)
    return load_config("quick", values)


def _build(variant: dict, spec: dict, x):
    """`(model, items_per_step)` for one variant, compiled as its training path compiles it."""
    import keras
    import seed_reference

    from contrastive.models import build_encoder
    from contrastive.training import build_baseline, build_optimizer, build_pretrain_model

    kind = variant["kind"]
    batch_size = spec["batch_size"]
    shape = tuple(x.shape[1:])
    jit = variant.get("jit_compile", "auto")
    if kind.startswith("seed_"):
        augmentation = seed_reference.build_seed_augmentation(
            x[:4096], augment=variant.get("augment", True), seed=0
        )
        encoder = build_encoder(spec["encoder"], shape, seed=0)
        seed_encoder = seed_reference.build_seed_encoder(encoder, augmentation)
        if kind == "seed_pretrain":
            model = seed_reference.build_seed_pretrain_model(seed_encoder, jit_compile=jit)
            return model, batch_size
        return seed_reference.build_seed_classifier(seed_encoder, NUM_CLASSES, jit_compile=jit), (
            batch_size
        )
    overrides = dict(variant.get("overrides", {}))
    if "jit_compile" in variant:
        overrides["train.jit_compile"] = variant["jit_compile"]
    config = _ours_config(spec, overrides)
    # A long schedule: the step count only shapes the learning-rate curve, not the speed.
    optimizer = build_optimizer(config.train, 1000, 10, config.train.learning_rate)
    if kind == "ours_pretrain":
        model = build_pretrain_model(config, shape, NUM_CLASSES)
        model.compile(optimizer=optimizer, jit_compile=config.train.jit_compile)
        return model, batch_size * config.train.num_views
    model = build_baseline(config, shape, NUM_CLASSES)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.jit_compile,
    )
    return model, batch_size


def _timed_fit(model, x, y, batch_size, warmup, items_per_step):
    """One `fit` epoch over `(x, y)`, as `contrastive.training.fitting.fit_model` calls it."""
    from contrastive.training import DivergenceGuard

    timer = common.step_timer(warmup)
    model.fit(
        x,
        y,
        batch_size=batch_size,
        shuffle=True,
        epochs=1,
        verbose=0,
        callbacks=[DivergenceGuard(), timer],
    )
    return timer.rate(items_per_step), timer


def _load(spec: dict):
    rows = spec["batch_size"] * spec["steps"]
    directory = spec.get("idx_dir", str(common.FASHION_MNIST_DIR))
    x, y = common.load_fashion_mnist("train", limit=max(rows, 4096), directory=directory)
    x = common.resize_images(x, spec.get("image_size", 28))
    return x[:rows], y[:rows], x


def worker_compare(spec: dict) -> dict:
    """Builds every variant, warms each up, then times them in turn `repeats` times."""
    import keras

    keras.utils.set_random_seed(0)
    x, y, x_adapt = _load(spec)
    batch_size, warmup = spec["batch_size"], spec["warmup"]
    built, results = {}, {}
    for variant in spec["variants"]:
        start = time.perf_counter()
        model, items = _build(variant, spec, x_adapt)
        warm = max(2, warmup)
        model.fit(
            x[: batch_size * warm],
            y[: batch_size * warm],
            batch_size=batch_size,
            epochs=1,
            verbose=0,
        )
        built[variant["name"]] = (model, items)
        results[variant["name"]] = {
            "variant": variant,
            "items_per_step": items,
            "build_compile_warmup_seconds": round(time.perf_counter() - start, 2),
            "rates": [],
            "step_seconds_median": [],
        }
        print(f"built {variant['name']}", file=sys.stderr, flush=True)
    for _ in range(spec["repeats"]):
        for name, (model, items) in built.items():
            rate, timer = _timed_fit(model, x, y, batch_size, warmup, items)
            results[name]["rates"].append(round(rate, 1))
            step = common.median(timer.step_seconds())
            results[name]["step_seconds_median"].append(round(step, 4))
            print(f"{name}: {rate:,.0f}/s", file=sys.stderr, flush=True)
    for entry in results.values():
        entry["median"] = round(common.median(entry["rates"]), 1)
    output = {"variants": results, "ratios": _ratios(results)}
    if spec.get("entry_points"):
        output["entry_points"] = _entry_points(spec, x, y)
    return output


def _ratios(results: dict) -> dict:
    """`ours / reference`: of the medians, and the median of the per-repeat ratios."""
    pairs = {}
    for name, entry in results.items():
        kind = entry["variant"]["kind"]
        if not kind.startswith("ours_"):
            continue
        reference = "seed_pretrain" if kind == "ours_pretrain" else "seed_ce"
        if reference not in results:
            continue
        ref_rates = results[reference]["rates"]
        per_repeat = [a / b for a, b in zip(entry["rates"], ref_rates, strict=False) if b]
        pairs[f"{name}/{reference}"] = {
            "ratio_of_medians": round(entry["median"] / results[reference]["median"], 3),
            "median_of_ratios": round(common.median(per_repeat), 3),
        }
    return pairs


def _entry_points(spec: dict, x, y) -> dict:
    """`pretrain` and `train_baseline` end to end (one epoch of `steps` steps) with the timer."""
    from contrastive.training import pretrain, train_baseline

    config = _ours_config(spec, {"train.epochs": 1, "train.classifier_epochs": 1})
    warmup = spec["warmup"]
    out = {}
    timer = common.step_timer(warmup)
    pretrain(config, (x, y), num_classes=NUM_CLASSES, callbacks=[timer])
    out["pretrain_views_per_second"] = round(timer.rate(spec["batch_size"] * 2), 1)
    # The baseline runs epochs + classifier_epochs = 2 epochs; time the second.
    timer = common.step_timer(warmup + spec["steps"])
    train_baseline(config, (x, y), num_classes=NUM_CLASSES, callbacks=[timer])
    out["train_baseline_images_per_second"] = round(timer.rate(spec["batch_size"]), 1)
    return out


def worker_scale(spec: dict) -> dict:
    """Ours only, one configuration: views/s (median of repeats) and peak RSS of the process."""
    import keras

    keras.utils.set_random_seed(0)
    with common.PeakMemory() as memory:
        x, y, x_adapt = _load(spec)
        start_rss = memory.peak_bytes
        model, items = _build({"kind": "ours_pretrain"}, spec, x_adapt)
        rates = []
        for _ in range(spec["repeats"]):
            rate, _ = _timed_fit(model, x, y, spec["batch_size"], spec["warmup"], items)
            rates.append(round(rate, 1))
    device_peak = common.accelerator_peak_bytes()
    return {
        "rates": rates,
        "median": round(common.median(rates), 1),
        "rss_after_import_mib": round(memory.start_bytes / 2**20, 1),
        "rss_after_data_mib": round(start_rss / 2**20, 1),
        "peak_rss_mib": round(memory.peak_bytes / 2**20, 1),
        "peak_device_mib": None if device_peak is None else round(device_peak / 2**20, 1),
    }


def worker_input(spec: dict) -> dict:
    """Ours fed from TFRecords vs NumPy in memory, alternating, same model and steps."""
    import keras

    from contrastive import data
    from contrastive.training import DivergenceGuard

    keras.utils.set_random_seed(0)
    batch_size, steps, warmup = spec["batch_size"], spec["steps"], spec["warmup"]
    with tempfile.TemporaryDirectory() as folder:
        uri = os.path.join(folder, "fmnist")
        data.ingest(
            "fashion_mnist",
            uri,
            validation_fraction=0.1,
            seed=0,
            progress=False,
            fashion_mnist_dir=spec.get("idx_dir", str(common.FASHION_MNIST_DIR)),
        )
        x, y = data.load_arrays(uri, "train", limit=batch_size * steps)
        model, items = _build({"kind": "ours_pretrain"}, spec, x)
        dataset = data.read_split(
            uri,
            "train",
            batch_size,
            shuffle=True,
            seed=0,
            repeat=True,
            drop_remainder=True,
            shuffle_buffer=spec["shuffle_buffer"],
        )
        # What the pipeline's steps feed `fit`: finite, shuffled with a bounded buffer,
        # a new order per epoch (`stream_training_data`, the quick profile's buffer).
        steps_feed = data.stream_training_data(
            uri, batch_size=batch_size, seed=0, shuffle_buffer=spec["shuffle_buffer"]
        ).train
        model.fit(dataset.take(warmup + 1), epochs=1, verbose=0)  # compile + warm up
        runs = {
            "numpy": [],
            "tfrecord": [],
            "steps_feed": [],
            "numpy_incl_first": [],
            "tfrecord_incl_first": [],
            "steps_feed_incl_first": [],
        }
        for _ in range(spec["repeats"]):
            rate, timer = _timed_fit(model, x, y, batch_size, warmup, items)
            runs["numpy"].append(round(rate, 1))
            runs["numpy_incl_first"].append(round(_rate_all(timer, items), 1))
            timer = common.step_timer(warmup)
            model.fit(
                dataset.take(steps), epochs=1, verbose=0, callbacks=[DivergenceGuard(), timer]
            )
            runs["tfrecord"].append(round(timer.rate(items), 1))
            runs["tfrecord_incl_first"].append(round(_rate_all(timer, items), 1))
            timer = common.step_timer(warmup)
            model.fit(
                steps_feed.take(steps), epochs=1, verbose=0, callbacks=[DivergenceGuard(), timer]
            )
            runs["steps_feed"].append(round(timer.rate(items), 1))
            runs["steps_feed_incl_first"].append(round(_rate_all(timer, items), 1))
    medians = {key: round(common.median(values), 1) for key, values in runs.items()}
    return {
        "runs": runs,
        "medians": medians,
        "tfrecord_over_numpy": round(medians["tfrecord"] / medians["numpy"], 3),
        "steps_feed_over_numpy": round(medians["steps_feed"] / medians["numpy"], 3),
    }


def _rate_all(timer, items):
    """Rate over every step of the run, iterator start-up included (not compilation)."""
    steps = len(timer.times) - 1
    return steps * items / (timer.times[-1] - timer.times[0])


WORKERS = {"compare": worker_compare, "scale": worker_scale, "input": worker_input}


# --------------------------------------------------------------------------------------------
# driver


def _relative(path: Path) -> str:
    return str(path.relative_to(common.REPO_ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts",
        default="speed,scaling,input",
        help="comma list of speed, scaling, input (default: all)",
    )
    parser.add_argument(
        "--backends",
        default="tensorflow,jax",
        help="Keras backends for the speed part, one process each "
        "(default: tensorflow,jax); scaling and input use the first",
    )
    parser.add_argument("--encoder", default="small_cnn", help="encoder (default: small_cnn)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (256)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed fit (20)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="steps excluded at the start of each timed fit (2)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (3)")
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="speed part: skip the cost-breakdown variants and the entry-point check "
        "(they run on the first backend only)",
    )
    parser.add_argument(
        "--batch-sizes",
        default="64,128,256,512,1024",
        help="scaling: batch sizes at 28 px (default 64..1024)",
    )
    parser.add_argument(
        "--image-sizes",
        default="28,32,64",
        help="scaling: image sizes at --batch-size (default 28,32,64)",
    )
    parser.add_argument(
        "--shuffle-buffer",
        type=int,
        default=20_000,
        help="input: TFRecord shuffle buffer (the config default, 20000)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: one tiny in-process comparison on the current backend",
    )
    parser.add_argument(
        "--no-tf",
        action="store_true",
        help="make any TensorFlow import fail (proves the JAX path needs none, "
        "as on the GPU machine); JAX workers always run this way",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"JSON results (default: {_relative(DEFAULT_OUTPUT)})",
    )
    parser.add_argument(
        "--idx-dir",
        type=Path,
        default=common.FASHION_MNIST_DIR,
        help=f"folder of the Fashion-MNIST IDX .gz files (default: {common.FASHION_MNIST_DIR})",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def run_smoke(args) -> dict:
    spec = {
        "encoder": "small_cnn",
        "batch_size": 32,
        "steps": 3,
        "warmup": 1,
        "repeats": 1,
        "idx_dir": str(args.idx_dir),
        "variants": speed_variants("smoke", breakdown=False)[:4],
    }
    result = worker_compare(spec)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return {"speed": [{"backend": backend, "encoder": "small_cnn", "batch_size": 32, **result}]}


def _worker(spec: dict, backend: str) -> dict:
    # The GPU machine has no TensorFlow: JAX workers run without it here too.
    return common.run_worker(SCRIPT, {**spec, "no_tf": backend == "jax"}, backend=backend)


def run_all(args) -> dict:
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - {"speed", "scaling", "input"})
    if unknown:
        raise SystemExit(f"--parts must be speed, scaling or input. Received: {unknown}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    base = {
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "idx_dir": str(args.idx_dir),
    }
    out = {}
    if "speed" in parts:
        out["speed"] = []
        for position, backend in enumerate(backends):
            detail = position == 0 and not args.no_breakdown
            spec = {
                **base,
                "encoder": args.encoder,
                "batch_size": args.batch_size,
                "variants": speed_variants(backend, detail),
                "entry_points": detail,
            }
            result = _worker(spec, backend)
            out["speed"].append(
                {
                    "backend": backend,
                    "encoder": args.encoder,
                    "batch_size": args.batch_size,
                    **result,
                }
            )
    backend = backends[0]
    if "scaling" in parts:
        points = [(b, 28) for b in _ints(args.batch_sizes)]
        points += [(args.batch_size, s) for s in _ints(args.image_sizes) if s != 28]
        out["scaling"] = []
        for batch_size, image_size in points:
            spec = {
                **base,
                "encoder": args.encoder,
                "batch_size": batch_size,
                "image_size": image_size,
            }
            result = _worker({**spec, "kind": "scale"}, backend)
            out["scaling"].append(
                {
                    "backend": backend,
                    "encoder": args.encoder,
                    "batch_size": batch_size,
                    "image_size": image_size,
                    **result,
                }
            )
            print(
                f"scaling b={batch_size} s={image_size}: {result['median']:,.0f} views/s, "
                f"peak {result['peak_rss_mib']:,.0f} MiB",
                flush=True,
            )
    if "input" in parts:
        if backend != "tensorflow":
            print("input part skipped: it needs TensorFlow (tf.data)", flush=True)
        else:
            spec = {
                **base,
                "kind": "input",
                "encoder": args.encoder,
                "batch_size": args.batch_size,
                "shuffle_buffer": args.shuffle_buffer,
            }
            out["input"] = {
                "backend": backend,
                "encoder": args.encoder,
                "batch_size": args.batch_size,
                "shuffle_buffer": args.shuffle_buffer,
                **_worker(spec, backend),
            }
    return out


def print_tables(results: dict) -> None:
    for block in results.get("speed", []):
        rows = []
        for name, entry in block["variants"].items():
            unit = "views/s" if "pretrain" in entry["variant"]["kind"] else "img/s"
            runs = ", ".join(f"{rate:,.0f}" for rate in entry["rates"])
            step = common.median(entry["step_seconds_median"])
            rows.append([name, unit, entry["median"], runs, step])
        common.print_table(
            f"speed: {block['backend']}, {block['encoder']}, batch {block['batch_size']}",
            ["variant", "unit", "median", "runs", "s/step"],
            rows,
        )
        ratio_rows = [
            [name, r["ratio_of_medians"], r["median_of_ratios"]]
            for name, r in block["ratios"].items()
        ]
        common.print_table(
            "ratios (ours / seed reference)",
            ["pair", "ratio of medians", "median of ratios"],
            ratio_rows,
        )
        if "entry_points" in block:
            print(f"\nentry points: {block['entry_points']}")
    if results.get("scaling"):
        rows = [
            [p["backend"], p["batch_size"], p["image_size"], p["median"], p["peak_rss_mib"]]
            for p in results["scaling"]
        ]
        common.print_table(
            "scaling (ours, supcon, 2 views)",
            ["backend", "batch", "image px", "views/s", "peak RSS MiB"],
            rows,
        )
    if results.get("input"):
        block = results["input"]
        rows = [[key, value] for key, value in block["medians"].items()]
        common.print_table(
            f"input pipeline ({block['backend']}, views/s)", ["feed", "views/s"], rows
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_tf:
        common.forbid_tensorflow()
    if args.worker:
        spec = json.loads(args.worker)
        if spec.get("no_tf"):
            common.forbid_tensorflow()
        print(json.dumps(WORKERS[spec.get("kind", "compare")](spec)), flush=True)
        return 0
    started = time.perf_counter()
    payload = {
        "benchmark": "bench/bench_speed.py",
        "command": shlex.join(["python", "bench/bench_speed.py", *(argv or sys.argv[1:])]),
        "date": common.now(),
        "machine": common.machine(),
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key != "worker"
        },
    }
    payload.update(run_smoke(args) if args.smoke else run_all(args))
    payload["wall_seconds"] = round(time.perf_counter() - started, 1)
    common.write_json(args.output, payload)
    print_tables(payload)
    print(f"\nwrote {args.output} ({payload['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
