"""Smoke tests of the benchmark scripts (`make bench-smoke`; not part of `make test`, which
keeps the helpers' unit tests in tests/unit/test_bench_reference.py): `--help`, a `--smoke` run
of each script with its output's figures checked against each other, and the TensorFlow-free
JAX path of the GPU machine. Each runs the script in a child process, as a user does."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import common  # noqa: E402

HAS_FASHION_MNIST = (common.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists()


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def test_jax_path_imports_no_tensorflow():
    """The GPU machine has JAX and no TensorFlow: the bench code must not need it."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import common
        common.forbid_tensorflow()
        import numpy as np
        import bench_quality, bench_speed, seed_reference
        from contrastive.config import load_config
        from contrastive.models import build_encoder
        from contrastive.training import build_pretrain_model
        x = np.random.default_rng(0).integers(0, 255, (8, 28, 28, 1)).astype("uint8")
        y = np.arange(8) % 2
        encoder = seed_reference.build_seed_encoder(
            build_encoder("small_cnn", (28, 28, 1), seed=0),
            seed_reference.build_seed_augmentation(x, seed=0))
        model = seed_reference.build_seed_pretrain_model(encoder)
        assert float(model.compute_loss(x, y, model(x, training=True))) > 0
        ours = build_pretrain_model(load_config("tiny"), (28, 28, 1), num_classes=2)
        assert float(ours.compute_loss(x, y, ours(x, training=True))) > 0
        assert "tensorflow" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(BENCH)],
        env=_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_forbid_tensorflow_blocks_the_import():
    script = "import sys; sys.path.insert(0, sys.argv[1]); import common; " + (
        "common.forbid_tensorflow(); import tensorflow"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(BENCH)], env=_env(), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "blocked by --no-tf" in result.stderr


@pytest.mark.parametrize(
    "script", ["bench_speed.py", "bench_quality.py", "bench_memory.py", "bench_embedding.py"]
)
def test_help_lists_smoke_and_output(script):
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--smoke" in result.stdout and "--output" in result.stdout


def _smoke(script: str, output: Path, *flags: str) -> dict:
    """`script --smoke FLAGS --output OUTPUT` in a child on TensorFlow; what it wrote."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", *flags, "--output", str(output)],
        env=_env(KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(output.read_text())


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_speed_smoke_writes_rates_and_ratios(tmp_path):
    block = _smoke("bench_speed.py", tmp_path / "speed.json")["speed"][0]
    assert set(block["variants"]) == {"seed_pretrain", "ours_pretrain", "seed_ce", "ours_ce"}
    assert block["variants"]["ours_pretrain"]["items_per_step"] == 2 * 32  # two views count
    assert set(block["ratios"]) == {"ours_pretrain/seed_pretrain", "ours_ce/seed_ce"}
    for pair, ratio in block["ratios"].items():  # the ratios are of the variants' medians
        ours, seed = (block["variants"][name]["median"] for name in pair.split("/"))
        assert seed > 0 and ratio["ratio_of_medians"] == pytest.approx(ours / seed, abs=1e-3)
    for entry in block["variants"].values():  # each median is the median of its repeats
        assert entry["median"] == pytest.approx(float(np.median(entry["rates"])), abs=0.1)


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_quality_smoke_reports_every_variant(tmp_path):
    payload = _smoke("bench_quality.py", tmp_path / "quality.json")
    assert set(payload["summary"]) == {"baseline", "supcon", "simclr", "npairs_seed", "random_init"}
    assert payload["budget"]["train_images"] == 256
    assert sorted(run["variant"] for run in payload["runs"]) == sorted(payload["summary"])
    for run in payload["runs"]:  # one seed: each summary is its variant's one run
        summary = payload["summary"][run["variant"]]
        assert summary["n"] == 1 and summary["test_accuracy_std"] == 0.0
        assert summary["test_accuracy_mean"] == round(run["test_accuracy"], 4)
        assert summary["knn_accuracy_mean"] == round(run["knn_accuracy"], 4)
        assert 0.0 <= run["test_accuracy"] <= 1.0 and 0.0 <= run["knn_accuracy"] <= 1.0


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_quality_fractions_smoke_summarizes_every_fraction_and_method(tmp_path):
    """The few-labels mode end to end (its summary once failed on a figure its runs lacked):
    every fraction x method ran, on nested subsets, and is summarized by fraction."""
    flags = ["--profile", "few-labels", "--labeled-fractions", "0.1,1"]  # seed 0, 256 images
    payload = _smoke("bench_quality.py", tmp_path / "fractions.json", *flags)
    runs = payload["runs"]
    methods = ("baseline", "random_init", "supcon", "simclr")
    assert sorted((r["seed"], r["labeled_fraction"], r["variant"]) for r in runs) == sorted(
        (s, f, m) for s in (0,) for f in (0.1, 1.0) for m in methods
    )
    for run in runs:  # the fitted head's choice, recorded for every pretrained-encoder run
        assert (run["variant"] == "baseline") == ("classifier" not in run)
    images = {r["labeled_fraction"]: r["labeled_images"] for r in runs if r["seed"] == 0}
    assert images[0.1] == round(0.1 * images[1.0])
    summary = payload["summary_by_fraction"]
    assert list(summary) == ["0.1", "1"]
    for fraction in summary.values():
        assert set(fraction) == set(methods)
        assert all(
            entry["n"] == 1 and "train_cpu_seconds_mean" in entry for entry in fraction.values()
        )


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_embedding_smoke_scores_suspects_against_the_flipped_labels(tmp_path):
    """The label-noise part end to end on 600 images (5 % flipped) and one drift seed: every
    method's suspects scored against the flipped labels of the train split, the sweep over
    `min_share`, and each drift condition once in both spaces."""
    payload = _smoke("bench_embedding.py", tmp_path / "embedding.json")
    noise = payload["label_noise"]
    assert noise["train_images"] == 540 and noise["noise"] == 0.05  # 600 - 10 % validation
    assert 0 < noise["flipped_in_train"] <= 30
    for name in ("supcon", "baseline"):
        default = noise["methods"][name]["default"]
        assert default["flipped"] == noise["flipped_in_train"]
        assert 0 <= default["found"] <= min(default["suspects"], default["flipped"])
        if default["suspects"]:
            assert default["precision"] == default["found"] / default["suspects"]
    for name in ("supcon", "baseline", "untrained", "pixels"):
        sweep = noise["methods"][name]["sweep"]
        assert list(sweep) == ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]
        suspects = [row["suspects"] for row in sweep.values()]
        assert suspects == sorted(suspects, reverse=True)  # a higher share lists fewer
    drift = payload["drift"]
    conditions = [name for name in drift if name not in ("sample_size", "permutations")]
    assert len(conditions) == 8 and all(drift[name]["runs"] == 1 for name in conditions)


def test_memory_smoke_records_a_peak_per_size(tmp_path):
    block = _smoke("bench_memory.py", tmp_path / "memory.json")["streaming"]
    assert [run["train_images"] for run in block["runs"]] == [64, 128]
    assert all(run["peak_rss_mib"] > 100 for run in block["runs"])  # TensorFlow alone is more
    assert block["growth"] == pytest.approx(
        max(r["peak_rss_mib"] for r in block["runs"])
        / min(r["peak_rss_mib"] for r in block["runs"])
        - 1,
        abs=1e-3,
    )
