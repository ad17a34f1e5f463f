"""A source format added from the test suite (`tests/toy_source.py`: one module, one
`SourceFormat` entry) is opened by `contrastive ingest`, listed in its help and errors, and
ingested to the images and labels its file holds."""

import numpy as np
import pytest

from contrastive import data
from contrastive.data import DataError, sources
from pipelines.cli import build_parser, main
from tests import toy_source


@pytest.fixture
def hex_format(monkeypatch):
    monkeypatch.setitem(sources.FORMATS, toy_source.HEX.scheme, toy_source.HEX)


def _write_hex(path, rows):
    path.write_text(
        "".join(f"{split},{name},{image.tobytes().hex()}\n" for split, name, image in rows)
    )
    return f"hex:{path}"


def _rows(count=24, seed=0):
    rng = np.random.default_rng(seed)
    return [
        ("train" if i < count - 6 else "test", ("ant", "bee", "cat")[i % 3], image)
        for i, image in enumerate(rng.integers(0, 256, (count, 4, 4), dtype=np.uint8))
    ]


def _sorted(images, labels):
    """Rows as (label, pixel bytes) in one order: ingest shuffles."""
    return sorted(
        (int(label), image.tobytes()) for image, label in zip(images, labels, strict=True)
    )


def test_an_added_format_ingests_the_images_and_labels_its_file_holds(hex_format, tmp_path):
    rows = _rows()
    source = _write_hex(tmp_path / "images.hex", rows)
    output = str(tmp_path / "dataset")
    manifest = data.ingest(source, output, validation_fraction=0.0, progress=False)

    assert manifest["class_names"] == ["ant", "bee", "cat"]
    assert manifest["source_kind"] == "hex"
    for split in ("train", "test"):
        expected = [(["ant", "bee", "cat"].index(n), i.tobytes()) for s, n, i in rows if s == split]
        images, labels = data.load_arrays(output, split)
        assert _sorted(images[..., 0], labels) == sorted(expected)


def test_the_cli_lists_and_runs_an_added_format(hex_format, tmp_path, capsys):
    help_text = build_parser()._subparsers._group_actions[0].choices["ingest"].format_help()
    assert "hex:FILE" in " ".join(help_text.split())
    source = _write_hex(tmp_path / "images.hex", _rows())
    assert main(["ingest", "--source", source, "--output", str(tmp_path / "out")]) == 0
    assert data.read_manifest(str(tmp_path / "out"))["splits"]["test"]["num_examples"] == 6


def test_an_unknown_scheme_names_the_formats_there_are(tmp_path, monkeypatch):
    source = _write_hex(tmp_path / "images.hex", _rows())
    with pytest.raises(DataError, match="unknown source scheme 'hex'") as raised:
        sources.open_source(source)
    assert "hex:FILE" not in str(raised.value) and "parquet:PATH" in str(raised.value)
    monkeypatch.setitem(sources.FORMATS, "hex", toy_source.HEX)
    assert len(sources.open_source(source).splits["train"]) == 18
    with pytest.raises(DataError, match="unknown source scheme 'gif'") as raised:
        sources.open_source(f"gif:{tmp_path}")
    assert "hex:FILE" in str(raised.value)
