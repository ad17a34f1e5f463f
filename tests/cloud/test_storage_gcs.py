"""`contrastive.storage` on local folders and on a GCS-protocol server (gcp-storage-emulator)."""

import os

import pytest

from contrastive import storage


def test_storage_write_read_roundtrip(root):
    uri = storage.join(root, "a", "b.bin")
    storage.write_bytes(uri, b"\x00\x01payload")
    storage.write_json(storage.join(root, "c.json"), {"k": [1, 2]})

    assert storage.read_bytes(uri) == b"\x00\x01payload"
    assert storage.read_json(storage.join(root, "c.json")) == {"k": [1, 2]}
    storage.write_text(uri, "replaced")
    assert storage.read_text(uri) == "replaced"


def test_storage_missing_object_raises_file_not_found(root):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "absent.json"))


def test_storage_exists_for_files_and_folders(root):
    storage.write_bytes(storage.join(root, "models", "run-1", "model.keras"), b"m")

    assert storage.exists(storage.join(root, "models", "run-1", "model.keras"))
    assert storage.exists(storage.join(root, "models", "run-1"))
    assert storage.exists(storage.join(root, "models"))
    assert not storage.exists(storage.join(root, "models", "run-2"))
    assert not storage.exists(storage.join(root, "model"))  # a prefix of a name is no folder


def test_storage_list_files_is_recursive_relative_and_sorted(root):
    for name in ["z.txt", "a/COMPLETE", "a/b/weights.h5", "m.json"]:
        storage.write_bytes(storage.join(root, "tree", *name.split("/")), name.encode())

    assert storage.list_files(storage.join(root, "tree")) == [
        "a/COMPLETE",
        "a/b/weights.h5",
        "m.json",
        "z.txt",
    ]
    assert storage.list_files(storage.join(root, "nothing-here")) == []


def test_storage_copy_tree_between_local_and_gcs_keeps_marker_last(gcs, tmp_path, monkeypatch):
    source = tmp_path / "model"
    (source / "assets").mkdir(parents=True)
    (source / "COMPLETE").write_text("done")
    (source / "model.keras").write_bytes(b"k" * 1000)
    (source / "assets" / "labels.txt").write_text("cat\ndog\n")
    copied = []
    real_copy = storage.copy_file
    monkeypatch.setattr(
        storage, "copy_file", lambda s, d, **kw: (copied.append(d), real_copy(s, d, **kw))
    )

    up = storage.copy_tree(source, gcs.prefix + "/up", last="COMPLETE")
    across = storage.copy_tree(gcs.prefix + "/up", gcs.prefix + "/across", last="COMPLETE")
    down = storage.copy_tree(gcs.prefix + "/across", tmp_path / "down", last="COMPLETE")

    for order in (up, across, down):
        assert order[-1] == "COMPLETE"
        assert sorted(order) == ["COMPLETE", "assets/labels.txt", "model.keras"]
    assert copied[2].endswith("/up/COMPLETE")
    assert (tmp_path / "down" / "model.keras").read_bytes() == b"k" * 1000
    assert (tmp_path / "down" / "assets" / "labels.txt").read_text() == "cat\ndog\n"


def test_storage_generation_compare_and_swap(root):
    uri = storage.join(root, "pointer.json")
    assert storage.read_with_generation(uri) == (None, 0)

    first = storage.write_if_generation_match(uri, b"v1", 0)
    data, generation = storage.read_with_generation(uri)
    assert (data, generation) == (b"v1", first)

    with pytest.raises(storage.PreconditionFailedError):
        storage.write_if_generation_match(uri, b"again", 0)  # exists already
    second = storage.write_if_generation_match(uri, b"v2", first)
    with pytest.raises(storage.PreconditionFailedError):
        storage.write_if_generation_match(uri, b"stale", first)  # someone wrote v2 since
    assert storage.read_with_generation(uri) == (b"v2", second)


def test_storage_gcs_uploads_carry_if_generation_match(gcs):
    uri = gcs.prefix + "/pointer.json"
    first = storage.write_if_generation_match(uri, b"v1", 0)
    storage.write_if_generation_match(uri, b"v2", first)

    name = uri[len(f"gs://{gcs.bucket}/") :]
    assert gcs.preconditions == [(name, 0), (name, first)]


def test_storage_delete(root):
    uri = storage.join(root, "gone.txt")
    storage.write_bytes(uri, b"x")
    storage.remove(uri)
    storage.remove(uri)  # missing is fine
    assert not storage.exists(uri)


def test_storage_local_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "champion.json"
    storage.write_bytes(path, b"old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(path, b"new")

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["champion.json"]  # no temp file left behind


def test_storage_local_lock_refuses_a_second_writer_and_breaks_stale_locks(tmp_path):
    path = str(tmp_path / "pointer.json")
    lock = path + ".lock"
    with open(lock, "w") as stream:
        stream.write("12345\n")

    with pytest.raises(storage.PreconditionFailedError, match="held by another writer"):
        storage.write_if_generation_match(path, b"v1", 0)

    old = os.stat(lock).st_mtime - storage.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    storage.write_if_generation_match(path, b"v1", 0)
    assert not os.path.exists(lock)
    assert storage.read_bytes(path) == b"v1"


def test_storage_gcs_uri_parsing():
    assert storage.split_gcs("gs://bucket/a/b") == ("bucket", "a/b")
    assert storage.join("gs://bucket/a", "b", "c.json") == "gs://bucket/a/b/c.json"
    with pytest.raises(ValueError, match="no bucket"):
        storage.split_gcs("gs:///a")
    with pytest.raises(ValueError, match="not a gs:// URI"):
        storage.split_gcs("/local/path")


@pytest.mark.slow
def test_storage_module_imports_no_kfp_or_cloud_client():
    import subprocess
    import sys

    code = (
        "import sys, contrastive.storage, contrastive.registry;"
        "bad = [m for m in ('kfp', 'google.cloud.storage', 'tensorflow') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_storage_file_versions_change_with_a_rewrite_only(root):
    """What a source's fingerprint is built from: on GCS the object generation, locally the
    modification time; a file left alone keeps its version."""
    from contrastive.data.fingerprint import source_fingerprint

    folder = storage.join(root, "photos")
    for name in ("cats/1.jpg", "dogs/2.jpg"):
        storage.write_bytes(storage.join(folder, *name.split("/")), b"jpeg " + name.encode())
    before = storage.list_file_versions(folder)
    assert [(entry.path, entry.size) for entry in before] == [
        ("cats/1.jpg", 15),
        ("dogs/2.jpg", 15),
    ]
    fingerprint = source_fingerprint(folder)
    assert storage.list_file_versions(folder) == before
    assert source_fingerprint(folder) == fingerprint

    if storage.is_local(folder):  # a rewrite within the clock's tick keeps the mtime
        os.utime(storage.join(folder, "cats", "1.jpg"), ns=(1, 1))
    else:
        storage.write_bytes(storage.join(folder, "cats", "1.jpg"), b"jpeg cats/1.jpg")
    after = storage.list_file_versions(folder)
    assert after[1] == before[1] and after[0].size == before[0].size
    assert after[0].version != before[0].version
    assert source_fingerprint(folder) != fingerprint
    assert storage.file_version(storage.join(folder, "dogs", "2.jpg")).version == before[1].version
    with pytest.raises(FileNotFoundError):
        storage.file_version(storage.join(folder, "absent.jpg"))
    assert storage.list_file_versions(storage.join(root, "nothing-here")) == []
