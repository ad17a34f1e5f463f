"""`contrastive ingest` on messy inputs, as a user runs it (in this process, through the CLI's
`main`): a one-line error naming the file or value, exit code 2, no traceback (unless -v), and
no manifest; or success with every dropped file listed."""

import contextlib
import gzip
import io
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines.local.logs import is_notice


def _ingest(*args):
    """`contrastive ingest <args>` in this process (`cli.main`, what the script calls): a
    CompletedProcess with its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["ingest", *map(str, args)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _png(path, seed, array=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array is None:
        array = np.random.default_rng(seed).integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(array).save(path, format="PNG")


def _folder(root):
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            _png(os.path.join(root, name, f"{i}.png"), label * 10 + i)


def _npz_big_label(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x_train=np.zeros((4, 4, 4), np.uint8), y_train=np.array([0, 1, 0, 10**12]))
    return f"npz:{path}", [], f"{path}:y_train at position 3: label 1000000000000"


def _huge_image_size(tmp_path):
    _folder(tmp_path / "images")
    return str(tmp_path / "images"), ["--image-size", "100000,100000"], "image_size=100000,100000"


def _npy_as_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    return f"npz:{tmp_path / 'a.npy'}", [], f"{tmp_path / 'a.npy'}: not an npz file"


def _corrupt_gz_idx(tmp_path):
    root = tmp_path / "idx"
    root.mkdir()
    payload = gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", 2, 2, 2) + bytes(8))
    (root / "train-images-idx3-ubyte.gz").write_bytes(payload[:10] + b"\xff" + payload[11:])
    (root / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + struct.pack(">I", 2) + b"\0\1")
    return f"idx:{root}", [], f"{root / 'train-images-idx3-ubyte.gz'}: corrupt gzip data"


def _zero_byte_jpg_fail(tmp_path):
    _folder(tmp_path / "images")
    (tmp_path / "images" / "a" / "zero.jpg").write_bytes(b"")
    return (
        str(tmp_path / "images"),
        ["--on-error", "fail"],
        f"{tmp_path / 'images' / 'a' / 'zero.jpg'}: named as an image",
    )


def _test_without_train(tmp_path):
    _folder(tmp_path / "images" / "test")
    return str(tmp_path / "images"), [], f"{tmp_path / 'images' / 'test'} holds class folders"


def _unwritable_output(tmp_path):
    _folder(tmp_path / "images")
    (tmp_path / "file").write_text("x")
    return str(tmp_path / "images"), [], str(tmp_path / "file")


@pytest.mark.parametrize(
    "case",
    [
        _npz_big_label,
        _huge_image_size,
        _npy_as_npz,
        _corrupt_gz_idx,
        _zero_byte_jpg_fail,
        _test_without_train,
        _unwritable_output,
    ],
)
def test_bad_input_is_one_line_naming_it_exit_2_no_manifest(tmp_path, case):
    source, extra, named = case(tmp_path)
    output = tmp_path / "file" / "out" if case is _unwritable_output else tmp_path / "out"
    result = _ingest("--source", source, "--output", output, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and named in errors[0], result.stderr[-2000:]
    assert not (output / "manifest.json").exists()


def test_messy_folder_succeeds_and_lists_what_it_dropped(tmp_path, caplog):
    root = os.fsencode(tmp_path / "images")
    _folder(os.fsdecode(root))
    raw = np.random.default_rng(0).integers(0, 65536, (6, 5)).astype(np.uint16)
    _png(os.fsdecode(os.path.join(root, b"a", b"deep.png")), 0, raw)
    _png(os.fsdecode(os.path.join(root, b"caf\xe9", b"x\xff.png")), 1)
    _png(os.fsdecode(os.path.join(root, b"caf\xe9", b"y.png")), 2)
    os.mkfifo(os.path.join(root, b"b", b"pipe.png"))
    os.makedirs(os.path.join(root, b"b", b"nested"))
    (tmp_path / "images" / "b" / "text.jpg").write_text("hello")
    output = tmp_path / "out"
    result = _ingest("--source", os.fsdecode(root), "--output", output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not any(map(is_notice, result.stderr.splitlines())), result.stderr  # as `run`
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["class_names"] == ["a", "b", "caf\\xe9"]
    assert sum(split["num_examples"] for split in manifest["splits"].values()) == 9
    assert [entry["path"] for entry in manifest["skipped"]] == [
        f"{tmp_path}/images/b/pipe.png",
        f"{tmp_path}/images/b/text.jpg",
    ]
    assert manifest["ignored"] == [
        {"path": f"{tmp_path}/images/b/nested", "reason": "folder below the class level"}
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for entry in manifest["skipped"] + manifest["ignored"]:  # logged: on stderr in a terminal
        assert any(f"{entry['path']}: {entry['reason']}" in line for line in warnings), entry


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (zlib.error("Error -3 while decompressing data"), "error: zlib.error: Error -3 while"),
        (MemoryError(), "error: MemoryError: MemoryError()"),
        (
            PermissionError(13, "Permission denied", "/data/x.png"),
            "error: PermissionError: [Errno 13] Permission denied: '/data/x.png'",
        ),
    ],
)
def test_any_exception_becomes_one_line_with_the_inputs(monkeypatch, capsys, error, expected):
    from contrastive import tasks

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(tasks, "run_ingest", fail)
    code = cli.main(["ingest", "--source", "src-folder", "--output", "out-uri"])
    captured = capsys.readouterr()
    assert code == 2
    (line, hint) = captured.err.strip().splitlines()
    assert line.startswith(expected)
    assert line.endswith("(contrastive ingest --source=src-folder --output=out-uri)")
    assert hint == "(run `contrastive -v ...` for the traceback)"

    assert cli.main(["-v", "ingest", "--source", "src-folder", "--output", "out-uri"]) == 2
    verbose = capsys.readouterr().err
    assert verbose.startswith("Traceback (most recent call last):")
    assert verbose.strip().splitlines()[-1].startswith(expected)
