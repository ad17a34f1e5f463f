"""Fuzzing ingest (Hypothesis, bounded): folder, npz and IDX sources whose files are corrupted,
truncated, emptied or renamed. Every run either succeeds with exact counts and the exact
pixels of what decodes, or raises `DataError` naming the file (or the source) at fault; never
another exception, a hang past the deadline, memory growth past a bound, or a manifest after
a failure."""

import gzip
import io
import os
import resource
import struct
import tempfile
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from contrastive import data
from contrastive.data import DataError

FUZZ = settings(
    max_examples=30,
    deadline=10_000,  # ms per example; an ingest here takes ~0.1 s
    derandomize=True,  # the same examples on every CI run
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_RSS_GROWTH_KB = 256 * 1024


def _ingest(*args, **kwargs):
    """`data.ingest`, asserting its peak memory grows by less than MAX_RSS_GROWTH_KB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        return data.ingest(*args, validation_fraction=0.0, progress=False, **kwargs)
    finally:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown < MAX_RSS_GROWTH_KB, f"peak RSS grew by {grown} kB during ingest"


# A mutation: (kind, position in [0, 1), byte value). Positions are fractions of the file size.
MUTATION = st.tuples(
    st.sampled_from(["truncate", "flip", "zero_run", "empty", "garbage", "rename"]),
    st.floats(0, 0.999),
    st.integers(0, 255),
)


def _mutate(raw: bytes, kind: str, where: float, value: int) -> bytes:
    position = int(where * len(raw))
    if kind == "truncate":
        return raw[:position]
    if kind == "flip":
        return raw[:position] + bytes([raw[position] ^ (value or 1)]) + raw[position + 1 :]
    if kind == "zero_run":
        return raw[:position] + bytes(min(16, len(raw) - position)) + raw[position + 16 :]
    if kind == "empty":
        return b""
    if kind == "garbage":
        return bytes([value]) * 40
    return raw  # rename: same bytes, another name


def _check_failure(error: DataError, names: list[str], output: str) -> None:
    message = str(error)
    assert any(name in message for name in names), message
    assert not os.path.exists(os.path.join(output, "manifest.json"))


def _png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _reference_decode(raw: bytes):
    """What a file decodes to, independently of ingest: NumPy pixels, or None."""
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
        return np.asarray(image.convert("L"))
    except Exception:
        return None


@pytest.mark.timeout(300)  # a hang fails the test instead of CI
@FUZZ
@given(mutations=st.dictionaries(st.integers(0, 7), MUTATION, max_size=4))
def test_fuzzed_folder(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(os.fsencode(tmp), b"images")
        rng = np.random.default_rng(0)
        files = {}  # relative bytes path -> pixels expected in the dataset, or None
        for number in range(8):
            folder = (b"a", b"b")[number % 2]
            pixels = rng.integers(0, 256, (5, 4), dtype=np.uint8)
            raw = _png_bytes(pixels)
            name = b"%d.png" % number
            if number in mutations:
                kind, where, value = mutations[number]
                raw = _mutate(raw, kind, where, value)
                if kind == "rename":
                    name = (b"%d\xe9.jpg", b"%d.txt", b"%d")[value % 3] % number
                decoded = _reference_decode(raw)
                pixels = decoded if decoded is not None and decoded.shape == (5, 4) else None
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            with open(os.path.join(root, folder, name), "wb") as handle:
                handle.write(raw)
            files[folder + b"/" + name] = pixels
        output = os.path.join(tmp, "out")
        try:
            manifest = _ingest(os.fsdecode(root), output)
        except DataError as error:
            _check_failure(
                error,
                [
                    os.fsdecode(root)
                    .encode("utf-8", "surrogateescape")
                    .decode("utf-8", "backslashreplace")
                ],
                output,
            )
            return
        images, _ = data.load_arrays(output, "train")
        rows = sorted(
            pq.read_table(os.path.join(output, "index.parquet")).to_pylist(),
            key=lambda row: row["record"],
        )
        expected = {
            path.decode("utf-8", "backslashreplace"): pixels
            for path, pixels in files.items()
            if pixels is not None
        }
        assert sorted(row["id"] for row in rows) == sorted(expected)
        for row, image in zip(rows, images, strict=True):
            np.testing.assert_array_equal(image[..., 0], expected[row["id"]])
        dropped = len(manifest["skipped"]) + len(manifest["ignored"])
        assert len(rows) + dropped == len(files)


def _npz_bytes(x_train, y_train, compressed):
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x_train=x_train, y_train=y_train)
    return buffer.getvalue()


def _reference_npz(raw: bytes):
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            assert archive.testzip() is None
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return npz["x_train"], npz["y_train"]
    except Exception:
        return None


@pytest.mark.timeout(300)  # a hang fails the test instead of CI
@FUZZ
@given(mutation=MUTATION, compressed=st.booleans())
def test_fuzzed_npz(mutation, compressed):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (12, 4, 3), dtype=np.uint8)
    y_train = np.arange(12) % 3
    raw = _mutate(_npz_bytes(x_train, y_train, compressed), *mutation)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d.npz")
        with open(path, "wb") as handle:
            handle.write(raw)
        output = os.path.join(tmp, "out")
        try:
            manifest = _ingest(f"npz:{path}", output)
        except DataError as error:
            _check_failure(error, [path], output)
            return
        reference = _reference_npz(raw)
        assert reference is not None, "ingest accepted an npz that does not load"
        x_expected, y_expected = reference
        assert manifest["splits"]["train"]["num_examples"] == len(y_expected)
        images, labels = data.load_arrays(output, "train")
        got = sorted(
            (int(label), image.tobytes()) for label, image in zip(labels, images, strict=True)
        )
        want = sorted(
            (int(label), image.reshape(images.shape[1:]).tobytes())
            for label, image in zip(y_expected, x_expected, strict=True)
        )
        assert got == want  # train is written shuffled: compare (label, pixels) multisets


def _idx_bytes(array, gz):
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    return gzip.compress(raw) if gz else raw


def _reference_idx(raw: bytes, ndim: int):
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        if len(raw) < 4 + 4 * ndim or raw[:3] != b"\0\0\x08" or raw[3] != ndim:
            return None
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        body = raw[4 + 4 * ndim :]
        if len(body) != int(np.prod(dims)):
            return None
        return np.frombuffer(body, np.uint8).reshape(dims)
    except Exception:
        return None


@pytest.mark.timeout(300)  # a hang fails the test instead of CI
@FUZZ
@given(mutation=MUTATION, target=st.sampled_from(["images", "labels"]), gz=st.booleans())
def test_fuzzed_idx(mutation, target, gz):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (10, 4, 3), dtype=np.uint8)
    labels = (np.arange(10) % 2).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        suffix = ".gz" if gz else ""
        paths = {
            "images": os.path.join(tmp, f"train-images-idx3-ubyte{suffix}"),
            "labels": os.path.join(tmp, f"train-labels-idx1-ubyte{suffix}"),
        }
        contents = {"images": _idx_bytes(images, gz), "labels": _idx_bytes(labels, gz)}
        contents[target] = _mutate(contents[target], *mutation)
        for name, path in paths.items():
            with open(path, "wb") as handle:
                handle.write(contents[name])
        output = os.path.join(tmp, "out")
        try:
            manifest = _ingest(f"idx:{tmp}", output)
        except DataError as error:
            _check_failure(error, [paths[target], tmp], output)
            return
        x_expected = _reference_idx(contents["images"], 3)
        y_expected = _reference_idx(contents["labels"], 1)
        assert x_expected is not None and y_expected is not None
        assert manifest["splits"]["train"]["num_examples"] == len(y_expected)
        x, y = data.load_arrays(output, "train")
        got = sorted((int(label), image.tobytes()) for label, image in zip(y, x, strict=True))
        want = sorted(
            (int(label), image.tobytes())
            for label, image in zip(y_expected, x_expected, strict=True)
        )
        assert got == want
