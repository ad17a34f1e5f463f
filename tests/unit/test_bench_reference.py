"""Tests for the benchmark scripts: the seed reference's loss, IDX reading, the TensorFlow-free
JAX path, and that `--help` and `--smoke` work."""

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import seed_reference  # noqa: E402

from contrastive.losses import npairs_loss  # noqa: E402

HAS_FASHION_MNIST = (common.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists()


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


@pytest.mark.backend
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_seed_npairs_loss_equals_library_npairs_loss(temperature):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, 16)).astype("float32")
    labels = rng.integers(0, 5, size=32)
    expected = float(npairs_loss(features, labels, temperature=temperature))
    got = float(seed_reference.seed_npairs_loss(labels, features, temperature))
    # Keras hands a loss function float labels of shape [batch, 1]; the result must not change.
    got_float = float(
        seed_reference.seed_npairs_loss(labels.astype("float32")[:, None], features, temperature)
    )
    assert got == pytest.approx(expected, rel=1e-5)
    assert got_float == pytest.approx(expected, rel=1e-5)


@pytest.mark.backend
def test_seed_npairs_loss_known_value():
    # Two orthogonal pairs, one class each: row i's targets are {i, partner} with weight 1/2.
    features = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32")
    labels = np.array([0, 0, 1, 1])
    temperature = 0.5
    # logits per row: 2, 2, 0, 0 -> log_softmax of the positives = 2 - log(2 e^2 + 2).
    expected = -(2.0 - np.log(2 * np.exp(2.0) + 2.0))
    got = float(seed_reference.seed_npairs_loss(labels, features, temperature))
    assert got == pytest.approx(expected, rel=1e-5)


def test_read_idx_round_trip(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    path = tmp_path / "images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(header + images.tobytes())
    np.testing.assert_array_equal(common.read_idx(path), images)


def test_read_idx_rejects_non_byte_payload(tmp_path):
    path = tmp_path / "floats-idx1"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + b"\0" * 8)
    with pytest.raises(ValueError, match="magic=0xd01"):
        common.read_idx(path)


def test_split_train_validation_is_stratified_and_disjoint():
    x = np.arange(1000).reshape(1000, 1, 1, 1)
    y = np.repeat(np.arange(10), 100)
    (x_train, y_train), (x_val, y_val) = common.split_train_validation(x, y, seed=0)
    assert len(y_val) == 100 and np.all(np.bincount(y_val) == 10)
    assert set(x_train.ravel()).isdisjoint(x_val.ravel())
    assert len(y_train) + len(y_val) == 1000


@pytest.mark.slow
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


@pytest.mark.parametrize("script", ["bench_speed.py", "bench_quality.py", "bench_memory.py"])
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


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_speed_smoke_writes_rates_and_ratios(tmp_path):
    output = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_speed.py"), "--smoke", "--output", str(output)],
        env=_env(KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    block = json.loads(output.read_text())["speed"][0]
    assert set(block["variants"]) == {"seed_pretrain", "ours_pretrain", "seed_ce", "ours_ce"}
    assert block["variants"]["ours_pretrain"]["items_per_step"] == 2 * 32  # two views count
    assert all(entry["median"] > 0 for entry in block["variants"].values())
    assert set(block["ratios"]) == {"ours_pretrain/seed_pretrain", "ours_ce/seed_ce"}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_quality_smoke_reports_every_variant(tmp_path):
    output = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_quality.py"), "--smoke", "--output", str(output)],
        env=_env(KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(output.read_text())
    assert set(payload["summary"]) == {
        "baseline",
        "supcon",
        "simclr",
        "npairs_seed",
        "random_init",
    }
    assert payload["budget"]["train_images"] == 256
    for run in payload["runs"]:
        assert 0.0 <= run["test_accuracy"] <= 1.0 and 0.0 <= run["knn_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs dataset-fashion-mnist")
def test_quality_fractions_smoke_summarizes_every_fraction_and_method(tmp_path):
    """The few-labels mode end to end (its summary once failed on a figure its runs lacked):
    every fraction x method ran, on nested subsets, and is summarized by fraction."""
    output = tmp_path / "fractions.json"
    command = [sys.executable, str(BENCH / "bench_quality.py"), "--smoke", "--profile"]
    command += ["few-labels", "--labeled-fractions", "0.1,1"]  # --smoke: seed 0, 256 images
    result = subprocess.run(
        [*command, "--output", str(output)],
        env=_env(KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(output.read_text())
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


@pytest.mark.slow
def test_memory_smoke_records_a_peak_per_size(tmp_path):
    output = tmp_path / "memory.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_memory.py"), "--smoke", "--output", str(output)],
        env=_env(KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    block = json.loads(output.read_text())["streaming"]
    assert [run["train_images"] for run in block["runs"]] == [64, 128]
    assert all(run["peak_rss_mib"] > 100 for run in block["runs"])  # TensorFlow alone is more
    assert block["growth"] == pytest.approx(
        max(r["peak_rss_mib"] for r in block["runs"])
        / min(r["peak_rss_mib"] for r in block["runs"])
        - 1,
        abs=1e-3,
    )
