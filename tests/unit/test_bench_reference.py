"""Tests for the benchmark helpers: the seed reference's loss and IDX reading. The scripts
themselves (`--help`, `--smoke`, the TensorFlow-free JAX path) are checked by
bench/test_smoke.py (`make bench-smoke`, not part of `make test`)."""

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import seed_reference  # noqa: E402

from contrastive.losses import npairs_loss  # noqa: E402


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
