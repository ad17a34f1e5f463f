"""`contrastive.data.fingerprint.source_fingerprint`: the same content gives the same digest,
any change to what the source holds gives another (the key of a local run's cache)."""

import json
import os

import numpy as np

from contrastive.data.fingerprint import source_fingerprint


def _touch(path, ns):
    os.utime(path, ns=(ns, ns))


def test_a_folder_changes_with_a_file_added_removed_resized_or_rewritten(tmp_path):
    photos = tmp_path / "photos"
    for name in ("cats/1.jpg", "dogs/2.jpg"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        (photos / name).write_bytes(b"jpeg")
    first = source_fingerprint(str(photos))
    assert source_fingerprint(str(photos)) == first
    assert source_fingerprint(str(photos) + "/") != first  # the source string is part of it
    seen = {first}

    (photos / "eels").mkdir()
    (photos / "eels" / "3.jpg").write_bytes(b"jpeg")
    seen.add(source_fingerprint(str(photos)))
    (photos / "eels" / "3.jpg").unlink()
    assert source_fingerprint(str(photos)) == first  # back to the same files

    mtime = (photos / "cats" / "1.jpg").stat().st_mtime_ns
    (photos / "cats" / "1.jpg").write_bytes(b"a longer jpeg")
    _touch(photos / "cats" / "1.jpg", mtime)
    seen.add(source_fingerprint(str(photos)))  # the size differs
    (photos / "cats" / "1.jpg").write_bytes(b"JPEG")
    _touch(photos / "cats" / "1.jpg", mtime + 1)
    seen.add(source_fingerprint(str(photos)))  # the same size, rewritten later
    (photos / "cats" / "1.jpg").rename(photos / "cats" / "9.jpg")
    seen.add(source_fingerprint(str(photos)))  # renamed
    assert len(seen) == 5
    assert source_fingerprint(f"folder:{photos}") != first


def test_npz_idx_and_the_embedded_set_follow_their_files(tmp_path):
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.array([0, 1]))
    first = source_fingerprint(f"npz:{npz}")
    assert source_fingerprint(f"npz:{npz}") == first
    np.savez(npz, x_train=np.ones((3, 4, 4), np.uint8), y_train=np.array([0, 1, 1]))
    assert source_fingerprint(f"npz:{npz}") != first

    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"images")
    (idx / "train-labels-idx1-ubyte.gz").write_bytes(b"labels")
    first = source_fingerprint(f"idx:{idx}")
    embedded = source_fingerprint("fashion_mnist", fashion_mnist_dir=str(idx))
    (idx / "t10k-images-idx3-ubyte.gz").write_bytes(b"test images")
    assert source_fingerprint(f"idx:{idx}") != first
    assert source_fingerprint("fashion_mnist", fashion_mnist_dir=str(idx)) != embedded

    assert source_fingerprint("tfds:cifar10") == source_fingerprint("tfds:cifar10")
    assert source_fingerprint("tfds:cifar10") != source_fingerprint("tfds:cifar100")


def test_an_ingested_dataset_is_its_manifest_and_a_missing_source_its_name(tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "train").mkdir(parents=True)
    (dataset / "train" / "train-00000.tfrecord").write_bytes(b"records")
    (dataset / "manifest.json").write_text(json.dumps({"splits": {"train": {"sha256": "a"}}}))
    first = source_fingerprint(str(dataset))
    (dataset / "train" / "train-00000.tfrecord").write_bytes(b"other records")
    assert source_fingerprint(str(dataset)) == first  # the manifest holds the shards' digests
    (dataset / "manifest.json").write_text(json.dumps({"splits": {"train": {"sha256": "b"}}}))
    assert source_fingerprint(str(dataset)) != first

    missing = str(tmp_path / "missing")
    assert source_fingerprint(missing) == source_fingerprint(missing)
    assert source_fingerprint(f"npz:{missing}.npz") != source_fingerprint(missing)
