"""Tests for contrastive.data.ingest with array sources (npz, IDX, Fashion-MNIST, TFDS)."""

import gzip
import hashlib
import json
import logging
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contrastive import data
from contrastive.data import FASHION_MNIST_CLASSES, DataError

SRC = Path(__file__).resolve().parents[2] / "src"


def make_arrays(num_train=120, num_test=30, num_classes=3, shape=(6, 5, 1), seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
        "y_train": np.arange(num_train) % num_classes,
        "x_test": rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
        "y_test": np.arange(num_test) % num_classes,
    }


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


def write_idx(path, array, *, gz=False, count=None):
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    payload = struct.pack(f">BBBB{len(dims)}I", 0, 0, 8, len(dims), *dims) + array.tobytes()
    Path(path).write_bytes(gzip.compress(payload) if gz else payload)


def records(uri, split):
    """Every record of a split, parsed, in shard order: dicts of the Example's features."""
    manifest = data.read_manifest(uri)
    rows = []
    for shard in manifest["splits"][split]["shards"]:
        for raw in tf.data.TFRecordDataset(os.path.join(uri, shard["path"])).as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            rows.append(
                {
                    "shard": shard["path"],
                    "id": feature["id"].bytes_list.value[0].decode(),
                    "label": feature["label"].int64_list.value[0],
                    "format": feature["format"].bytes_list.value[0].decode(),
                    "image": feature["image"].bytes_list.value[0],
                }
            )
    return rows


def read_index(uri):
    return pq.read_table(os.path.join(uri, "index.parquet")).to_pylist()


# --- round trip and layout ---------------------------------------------------------------------


def test_npz_round_trip_same_pixels_labels_and_every_id_once(tmp_path):
    arrays = make_arrays()
    arrays["x_unlabeled"] = np.full((7, 6, 5, 1), 9, np.uint8)
    source = write_npz(tmp_path / "d.npz", **arrays)
    out = str(tmp_path / "out")
    manifest = data.ingest(source, out, validation_fraction=0.2, progress=False)

    assert manifest["image_shape"] == [6, 5, 1]
    assert manifest["class_names"] == ["0", "1", "2"]
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {
        "train": 96,
        "validation": 24,
        "test": 30,
        "unlabeled": 7,
    }
    ids = []
    for split in manifest["splits"]:
        x, y = data.load_arrays(out, split)
        rows = [r for r in read_index(out) if r["split"] == split]
        assert len(rows) == len(x)  # one shard per split: stored order = index order
        for image, label, row in zip(x, y, rows, strict=True):
            source_split, position = row["id"].split("/")
            np.testing.assert_array_equal(image, arrays[f"x_{source_split}"][int(position)])
            if split == "unlabeled":
                assert label == -1
            else:
                assert label == arrays[f"y_{source_split}"][int(position)]
        ids += [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 120 + 30 + 7


def test_manifest_counts_and_index_match_the_shards(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays(num_train=300))
    out = str(tmp_path / "out")
    manifest = data.ingest(source, out, shard_size_bytes=2000, progress=False)
    index = read_index(out)
    assert len(manifest["splits"]["train"]["shards"]) > 3
    for split, entry in manifest["splits"].items():
        rows = records(out, split)
        assert entry["num_examples"] == len(rows)
        for shard in entry["shards"]:
            path = Path(out) / shard["path"]
            assert shard["num_examples"] == sum(r["shard"] == shard["path"] for r in rows)
            assert shard["num_bytes"] == path.stat().st_size
            assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        by_id = {r["id"]: r for r in rows}
        split_index = [r for r in index if r["split"] == split]
        assert len(split_index) == len(rows)
        for row in split_index:
            record = by_id[row["id"]]
            assert row["shard"] == record["shard"]
            assert row["label"] == record["label"]
            assert row["sha256"] == hashlib.sha256(record["image"]).hexdigest()
            assert row["format"] == record["format"] == "raw"
        numbered = [(r["shard"], r["record"]) for r in split_index]
        assert len(set(numbered)) == len(numbered)
    assert sorted(Path(out).iterdir()) == sorted(
        Path(out) / name
        for name in ["index.parquet", "manifest.json", "train", "validation", "test"]
    )


def test_manifest_fields(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = tmp_path / "out"
    manifest = data.ingest(source, str(out), seed=4, limit=60, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["format_version"] == 1
    assert manifest["source"] == source
    assert manifest["num_classes"] == 3
    assert manifest["skipped"] == []
    assert manifest["package_version"]
    assert manifest["created_at"].endswith("+00:00")
    parameters = manifest["parameters"]
    assert (parameters["seed"], parameters["limit"], parameters["validation_fraction"]) == (
        4,
        60,
        0.1,
    )
    assert parameters["labeled_fraction"] is None


def test_splits_are_disjoint_stratified_and_reproducible(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays(num_train=150))

    def held_out(out, seed):
        data.ingest(source, str(tmp_path / out), validation_fraction=0.2, seed=seed, progress=False)
        index = read_index(tmp_path / out)
        return {
            r["split"]: sorted(x["id"] for x in index if x["split"] == r["split"]) for r in index
        }

    first = held_out("a", seed=1)
    assert set(first["train"]).isdisjoint(first["validation"])
    assert len(first["validation"]) == 30
    labels = [int(i.split("/")[1]) % 3 for i in first["validation"]]
    assert np.bincount(labels).tolist() == [10, 10, 10]
    assert held_out("b", seed=1) == first
    assert held_out("c", seed=2)["validation"] != first["validation"]


def test_labeled_fraction_moves_the_rest_to_unlabeled(tmp_path):
    arrays = make_arrays(num_train=120)
    arrays["x_unlabeled"] = np.zeros((5, 6, 5, 1), np.uint8)
    source = write_npz(tmp_path / "d.npz", **arrays)
    out = str(tmp_path / "out")
    manifest = data.ingest(
        source, out, validation_fraction=0.25, labeled_fraction=0.2, progress=False
    )
    counts = {k: v["num_examples"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 18, "validation": 30, "test": 30, "unlabeled": 72 + 5}
    _, y_train = data.load_arrays(out, "train")
    assert np.bincount(y_train).tolist() == [6, 6, 6]
    _, y_unlabeled = data.load_arrays(out, "unlabeled")
    assert set(y_unlabeled.tolist()) == {-1}
    moved = [
        r for r in read_index(out) if r["split"] == "unlabeled" and r["id"].startswith("train")
    ]
    assert len(moved) == 72
    assert all(r["source_label"] == int(r["id"].split("/")[1]) % 3 for r in moved)


def test_limit_gives_a_small_stratified_dataset(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays(num_train=300, num_test=90))
    out = str(tmp_path / "out")
    manifest = data.ingest(source, out, limit=30, validation_fraction=0.2, progress=False)
    counts = {k: v["num_examples"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 24, "validation": 6, "test": 30}
    assert np.bincount(data.load_arrays(out, "test")[1]).tolist() == [10, 10, 10]


def test_png_array_format_and_resize(tmp_path):
    arrays = make_arrays(shape=(6, 5, 3))
    source = write_npz(tmp_path / "d.npz", **arrays)
    out = str(tmp_path / "png")
    manifest = data.ingest(source, out, array_format="png", progress=False)
    assert manifest["splits"]["test"]["formats"] == {"png": 30}
    x, _ = data.load_arrays(out, "test")
    np.testing.assert_array_equal(x, arrays["x_test"])  # PNG is lossless

    resized = str(tmp_path / "resized")
    manifest = data.ingest(source, resized, image_size="12,10", progress=False)
    assert manifest["image_shape"] == [12, 10, 3]
    assert data.load_arrays(resized, "test")[0].shape == (30, 12, 10, 3)


def test_summary_line_is_logged(tmp_path, caplog):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    with caplog.at_level(logging.INFO, logger="contrastive.data"):
        data.ingest(source, str(tmp_path / "out"), progress=True)  # stderr is not a tty here
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingested")]
    assert len(summaries) == 1
    assert "train=108" in summaries[0] and "images/s" in summaries[0]


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    arrays = make_arrays(num_train=40, num_test=10, shape=(4, 4))
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", arrays["x_train"], gz=gz)
    write_idx(
        tmp_path / f"train-labels-idx1-ubyte{suffix}", arrays["y_train"].astype(np.uint8), gz=gz
    )
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", arrays["x_test"], gz=gz)
    write_idx(
        tmp_path / f"t10k-labels-idx1-ubyte{suffix}", arrays["y_test"].astype(np.uint8), gz=gz
    )
    out = str(tmp_path / "out")
    manifest = data.ingest(f"idx:{tmp_path}", out, class_names=["a", "b", "c"], progress=False)
    assert manifest["class_names"] == ["a", "b", "c"]
    assert manifest["image_shape"] == [4, 4, 1]
    x, y = data.load_arrays(out, "test")
    np.testing.assert_array_equal(x[..., 0], arrays["x_test"])
    np.testing.assert_array_equal(y, arrays["y_test"])


def test_idx_count_mismatch_names_both_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(9, dtype=np.uint8) % 2)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="count mismatch") as error:
        data.ingest(f"idx:{tmp_path}", str(out), progress=False)
    assert "train-images-idx3-ubyte holds 10" in str(error.value)
    assert "train-labels-idx1-ubyte holds 9" in str(error.value)
    assert not (out / "manifest.json").exists()


def test_idx_truncated_file_is_named(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 4, 4), np.uint8), count=11)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(10, dtype=np.uint8) % 2)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: IDX count mismatch.*11x4x4"):
        data.ingest(f"idx:{tmp_path}", str(tmp_path / "out"), progress=False)


def test_idx_label_outside_the_class_range(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 0, 1, 7, 0], np.uint8))
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte: label 7 at position 4 is outside the class range \[0, 2\)",
    ):
        data.ingest(
            f"idx:{tmp_path}", str(tmp_path / "out"), class_names=["a", "b"], progress=False
        )


@pytest.mark.skipif(
    not Path(data.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_with_limit(tmp_path):
    out = str(tmp_path / "out")
    manifest = data.ingest("fashion_mnist", out, limit=200, progress=False)
    assert manifest["class_names"] == list(FASHION_MNIST_CLASSES)
    assert manifest["source_location"] == data.FASHION_MNIST_DIR
    assert manifest["image_shape"] == [28, 28, 1]
    counts = {k: v["num_examples"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 180, "validation": 20, "test": 200}
    x, y = data.load_arrays(out, "validation")
    assert np.bincount(y).tolist() == [2] * 10
    assert x.dtype == np.uint8 and x.max() > 0


# --- TFDS (tfds.testing.mock_data: nothing is downloaded) ------------------------------------


def test_tfds_stl10_unlabelled_becomes_unlabeled(tmp_path):
    import tensorflow_datasets as tfds

    # Real split metadata, so that the mock reports stl10's three splits.
    metadata = tmp_path / "tfds" / "stl10" / "1.0.0"
    metadata.mkdir(parents=True)
    splits = [{"name": n, "shardLengths": ["12"]} for n in ("train", "test", "unlabelled")]
    (metadata / "dataset_info.json").write_text(
        json.dumps({"name": "stl10", "version": "1.0.0", "splits": splits})
    )
    out = str(tmp_path / "out")
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path / "tfds")):
        manifest = data.ingest(
            "tfds:stl10",
            out,
            tfds_data_dir=str(tmp_path / "tfds"),
            validation_fraction=0.25,
            progress=False,
        )
    assert manifest["source_kind"] == "tfds"
    assert manifest["image_shape"] == [96, 96, 3]
    counts = {k: v["num_examples"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 9, "validation": 3, "test": 12, "unlabeled": 12}
    x, y = data.load_arrays(out, "unlabeled")
    assert x.shape == (12, 96, 96, 3) and set(y.tolist()) == {-1}


def test_tfds_cifar10_with_limit_and_image_size(tmp_path):
    import tensorflow_datasets as tfds

    out = str(tmp_path / "out")
    with tfds.testing.mock_data(num_examples=20):
        manifest = data.ingest(
            "tfds:cifar10",
            out,
            limit=10,
            image_size=(16, 16),
            validation_fraction=0.2,
            progress=False,
        )
    assert len(manifest["class_names"]) == 10
    assert manifest["image_shape"] == [16, 16, 3]
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {
        "train": 8,
        "validation": 2,
        "test": 10,
    }


def test_fashion_mnist_falls_back_to_tfds(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        manifest = data.ingest(
            "fashion_mnist",
            str(tmp_path / "out"),
            fashion_mnist_dir=str(tmp_path / "absent"),
            progress=False,
        )
    assert manifest["source_kind"] == "tfds"
    assert manifest["class_names"] == list(FASHION_MNIST_CLASSES)
    assert manifest["image_shape"] == [28, 28, 1]


def test_fashion_mnist_without_idx_or_tfds_says_what_to_install(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "builder", offline)
    with pytest.raises(DataError, match="dataset-fashion-mnist") as error:
        data.ingest("fashion_mnist", str(tmp_path / "out"), fashion_mnist_dir=str(tmp_path))
    assert "no network" in str(error.value)


# --- commit protocol ---------------------------------------------------------------------------


def test_committed_output_is_refused_without_overwrite(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = str(tmp_path / "out")
    first = data.ingest(source, out, seed=1, progress=False)
    with pytest.raises(DataError, match="already holds a committed dataset"):
        data.ingest(source, out, seed=2, progress=False)
    assert data.read_manifest(out) == first
    second = data.ingest(source, out, seed=2, overwrite=True, progress=False)
    assert data.read_manifest(out) == second
    assert second["parameters"]["seed"] == 2
    assert [p.name for p in Path(out).iterdir() if p.name.startswith(".tmp")] == []


def test_overwrite_with_fewer_shards_leaves_only_the_new_shards(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = tmp_path / "out"
    first = data.ingest(source, str(out), shard_size_bytes=500, progress=False)
    second = data.ingest(source, str(out), overwrite=True, progress=False)
    for split, entry in second["splits"].items():
        assert len(first["splits"][split]["shards"]) > len(entry["shards"])
        on_disk = sorted(f"{split}/{p.name}" for p in (out / split).iterdir())
        assert on_disk == sorted(shard["path"] for shard in entry["shards"])


def test_overwrite_failing_mid_commit_keeps_the_old_dataset_readable(tmp_path, monkeypatch):
    from contrastive.data import ingestion

    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = tmp_path / "out"
    first = data.ingest(source, str(out), seed=1, progress=False)
    expected_x, expected_y = data.load_arrays(str(out), "train")
    moved = []

    def rename(source_path, destination):
        if len(moved) == 2:  # fail halfway through moving the new shards in
            raise OSError(f"injected failure moving {source_path}")
        moved.append(destination)
        return real_rename(source_path, destination)

    real_rename = ingestion.storage.rename
    monkeypatch.setattr(ingestion.storage, "rename", rename)
    with pytest.raises(OSError, match="injected failure"):
        data.ingest(source, str(out), seed=2, overwrite=True, progress=False)
    monkeypatch.undo()

    assert len(moved) == 2  # new shards were in place beside the old ones
    assert data.read_manifest(str(out)) == first
    x, y = data.load_arrays(str(out), "train")  # every shard the old manifest names is there
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    second = data.ingest(source, str(out), seed=2, overwrite=True, progress=False)
    on_disk = sorted(
        f"{split}/{p.name}" for split in second["splits"] for p in (out / split).iterdir()
    )
    assert on_disk == sorted(s["path"] for e in second["splits"].values() for s in e["shards"])
    assert sorted(p.name for p in out.glob("index*.parquet")) == [second["index"]]


def test_stale_partial_files_are_cleaned(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "train-00007.tfrecord").write_bytes(b"partial")
    (out / ".tmp-0123").mkdir()
    (out / ".tmp-0123" / "junk").write_bytes(b"x")
    manifest = data.ingest(source, str(out), progress=False)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["train-00000.tfrecord"]
    assert not (out / ".tmp-0123").exists()
    assert (
        data.load_arrays(str(out), "train")[0].shape[0]
        == manifest["splits"]["train"]["num_examples"]
    )


def test_foreign_files_in_the_output_are_not_deleted(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="which an ingest did not write"):
        data.ingest(source, str(out), progress=False)
    assert (out / "train" / "notes.txt").read_text() == "mine"


_SLOW_INGEST = """
import sys, time
from contrastive.data import ingestion, writer
close = writer.ShardWriter._close_shard
def slow_close(self):
    close(self)
    print("shard", flush=True)
    time.sleep(0.5)
writer.ShardWriter._close_shard = slow_close
ingestion.ingest(sys.argv[1], sys.argv[2], shard_size_bytes=1000, progress=False)
"""


@pytest.mark.slow
def test_killed_ingest_leaves_no_manifest_and_a_rerun_completes(tmp_path):
    source = write_npz(tmp_path / "d.npz", **make_arrays(num_train=200))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_INGEST, source, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        for _ in range(2):  # two shards closed: mid-way through train
            assert process.stdout.readline().strip() == b"shard"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (out / "manifest.json").exists()
    assert list(out.glob(".tmp-*/train/*.tfrecord"))
    with pytest.raises(data.DatasetIncompleteError, match="dataset incomplete"):
        data.read_split(str(out), "train", 8)

    manifest = data.ingest(source, str(out), shard_size_bytes=1000, progress=False)
    assert not list(out.glob(".tmp-*"))
    x, _ = data.load_arrays(str(out), "train")
    assert len(x) == manifest["splits"]["train"]["num_examples"] == 180


@pytest.mark.slow  # the second ingest runs in a child process
def test_the_same_source_ingested_in_two_processes_gives_identical_shards(tmp_path):
    """Shards are reproducible across processes (a protobuf map serializes in a per-process
    order unless asked for a deterministic one), so a re-ingest in a rerun pipeline has the
    same `dataset_digest` and the training steps' checkpoints and outputs stay reusable."""
    source = write_npz(tmp_path / "d.npz", **make_arrays())
    code = "import sys; from contrastive import data; data.ingest(*sys.argv[1:3], progress=False)"
    for name in ("a", "b"):
        subprocess.run(
            [sys.executable, "-c", code, source, str(tmp_path / name)],
            check=True,
            env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": "random"},
            timeout=300,
        )
    first, second = (data.read_manifest(str(tmp_path / name)) for name in ("a", "b"))
    assert [s["sha256"] for s in first["splits"]["train"]["shards"]] == [
        s["sha256"] for s in second["splits"]["train"]["shards"]
    ]
    assert data.dataset_digest(first) == data.dataset_digest(second)
