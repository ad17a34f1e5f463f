"""Image sources: where `ingest` reads examples from.

`open_source` turns a source string into a `Source`: class names plus, per source split
(`train`, `test`, `unlabeled`), either in-memory arrays (`ArraySplit`: IDX, npz, TFDS) or a list
of image files still to be read (`FileSplit`: image folders). Labels are known up front in both
cases, so splits can be planned before any image is encoded.

Source strings (`FORMATS` holds each `scheme:LOCATION` form; a new format is a module with
its opener and one `SourceFormat` entry there):
    fashion_mnist          IDX files in `fashion_mnist_dir` (Debian package
                           dataset-fashion-mnist), else TFDS `fashion_mnist`.
    idx:DIR                MNIST-format IDX files: train-/t10k- images and labels, gz or not.
    tfds:NAME              a TFDS dataset (`unlabelled` split -> our `unlabeled`).
    npz:FILE               arrays x_train, y_train, x_test, y_test (+ x_unlabeled, class_names).
    csv:FILE | jsonl:FILE  a Vertex AI image-classification import file (`import_files.py`):
                           `[ML_USE,]URI[,LABEL]` rows, or JSON Lines with `imageGcsUri`.
    parquet:PATH           a Parquet file or folder with an image column (bytes, a path, or the
                           Hugging Face `{bytes, path}` struct) and a label column
                           (`parquet_source.py`).
    PATH | gs://B/PREFIX   an image folder: <root>/<class>/<image> or
                           <root>/{train,test}/<class>/<image>, optional <root>/unlabeled/.

Names are matched exactly, and names that differ only in case or Unicode normalisation are
never left to chance: two class names that do (`Cat/` and `cat/`, or `Café` composed and
decomposed) are refused naming both, or merged with `class_name_variants="merge"`
(`Source.merged_classes` records how); a folder spelt like a split folder but not exactly
(`Test/` beside `train/`) is refused. Two IDX files for one split are refused unless their
decompressed contents are identical; an npz is read field by field, never unpickling.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import logging
import os
import stat
import struct
import sys
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    SizeRules,
    crop_resize,
    decode_checked,
    looks_like_image_name,
    sniff_format,
)

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Most classes a source may declare: labels are checked against it before any list of class
# names is built (an npz label of 10**12 must not allocate 10**12 names).
MAX_CLASSES = 100_000
# Source splits a source may hold; `validation` only from sources that name it (an import
# file's ML_USE, a Parquet dataset's validation files), otherwise it is cut from train.
SOURCE_SPLITS = ("train", "validation", "test", "unlabeled")
# What to do with class names that differ only in case or Unicode normalisation.
CLASS_NAME_VARIANTS = ("refuse", "merge")
# npz fields ingest reads; any other field is listed in the log and `ignored`, never loaded.
NPZ_FIELDS = ("x_train", "y_train", "x_test", "y_test", "x_unlabeled", "class_names")

_IDX_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
_TFDS_SPLITS = {
    "train": "train",
    "test": "test",
    "unlabelled": "unlabeled",
    "unlabeled": "unlabeled",
}
_TFDS_BATCH = 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def display_path(path: str) -> str:
    """`path` as text that any encoder accepts: bytes of a name that is not valid UTF-8 (held
    by Python as surrogate escapes) are written `\\xNN`. For ids, the manifest, the index and
    messages; the original `path` is still what opens the file."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ArraySplit:
    """Decoded images held in memory."""

    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N]; -1 = unlabeled
    origin: str  # the file (or TFDS split) the images came from
    labels_origin: str = ""  # the file the labels came from, when not `origin`
    offsets: np.ndarray | None = None  # int64 [N]: position in `origin` (None: 0..N-1)
    orientations: np.ndarray | None = None  # int64 [N]: EXIF orientation applied (None: 0s)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FileSplit:
    """Image files not read yet; each file's id is its path relative to `root`, or `ids`."""

    paths: list[str]
    labels: np.ndarray  # int64 [N]; -1 = unlabeled
    root: str
    ids: list[str] | None = None  # explicit example ids (import files: the URI as listed)
    # True when the source lists every path as an image (an import file): a file that is not
    # one is refused (skipped, named), never ignored as a folder's stray file is.
    declared: bool = False

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TableSplit:
    """Encoded images in a table (Parquet): per row its bytes, or a path to read instead.

    Ids are `<source split>/<position>`; `source_path` is the row's file (`files[file_of]`)
    and `source_offset` its row within that file.
    """

    blobs: object  # pyarrow BinaryArray [N], null where the row gives a path
    paths: list[str | None]  # [N]: the file to read where the bytes are null
    labels: np.ndarray  # int64 [N]; -1 = unlabeled
    files: list[str]  # the Parquet files the rows came from
    file_of: np.ndarray  # int64 [N]: index into `files`
    rows: np.ndarray  # int64 [N]: row within that file

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class OpenContext:
    """What `open_source` was given besides the source string, for a format's opener."""

    scheme: str  # the source's `scheme:` (one opener may serve several: csv, jsonl)
    fashion_mnist_dir: str
    tfds_data_dir: str | None
    class_names: Sequence[str] | None  # only for formats with `takes_class_names`
    tfds: _TfdsOptions  # image size, limit and per-image rules of sources decoded here


@dataclass(frozen=True)
class SourceFormat:
    """A `scheme:LOCATION` source format: how it is written and what opens it.

    `opener` is a function `(location, context: OpenContext) -> Source`, or its
    `"module:function"` (imported on first use, so a format's libraries load only when it is
    read). Its splits are `ArraySplit`s, `FileSplit`s or `TableSplit`s; reading, planning and
    both ingest engines take any of them.
    """

    scheme: str
    form: str  # how help and errors write it: "npz:FILE"
    opener: Callable[[str, OpenContext], Source] | str
    # LOCATION may itself be a URI (`csv:gs://b/import.csv`): matched before `://` sources.
    uri_location: bool = False
    # `open_source(class_names=...)` names its label ids (others name their own classes).
    takes_class_names: bool = False

    def open(self, location: str, context: OpenContext) -> Source:
        opener = self.opener
        if isinstance(opener, str):
            module, _, function = opener.partition(":")
            opener = getattr(importlib.import_module(module), function)
        return opener(location, context)


def _idx_source(location: str, context: OpenContext) -> Source:
    return _open_idx(location, context.class_names)


def _npz_source(location: str, context: OpenContext) -> Source:
    return _open_npz(location, context.class_names)


def _tfds_source(location: str, context: OpenContext) -> Source:
    return _open_tfds(location, context.tfds_data_dir, context.tfds)


def _import_file_source(location: str, context: OpenContext) -> Source:
    from contrastive.data.import_files import open_import_file

    return open_import_file(location, context.scheme)


def _parquet_source(location: str, context: OpenContext) -> Source:
    from contrastive.data.parquet_source import open_parquet

    return open_parquet(location)


# Every `scheme:LOCATION` source, by scheme: the only list of them (help, errors, the
# pipeline's parameter description derive from it). `fashion_mnist` and image folders (a
# path, `gs://`, or `folder:PATH`) are not schemes of their own.
FORMATS: dict[str, SourceFormat] = {
    entry.scheme: entry
    for entry in (
        SourceFormat("idx", "idx:DIR", _idx_source, takes_class_names=True),
        SourceFormat("tfds", "tfds:NAME", _tfds_source),
        SourceFormat("npz", "npz:FILE", _npz_source, takes_class_names=True),
        SourceFormat(
            "csv", "csv:FILE (a Vertex AI import file)", _import_file_source, uri_location=True
        ),
        SourceFormat(
            "jsonl", "jsonl:FILE (a Vertex AI import file)", _import_file_source, uri_location=True
        ),
        SourceFormat(
            "parquet", "parquet:PATH[?image=COL&label=COL]", _parquet_source, uri_location=True
        ),
    )
}


def source_forms() -> str:
    """Every source string's form, for help and errors."""
    forms = ", ".join(entry.form for entry in FORMATS.values())
    return f"fashion_mnist, {forms}, or an image folder (path or gs://)"


SOURCE_FORMS = source_forms()


@dataclass
class Source:
    kind: str  # a scheme of `FORMATS`, "folder" or "idx" (fashion_mnist's files)
    location: str  # resolved directory, file or TFDS name
    class_names: list[str]
    splits: dict[str, ArraySplit | FileSplit | TableSplit]
    skipped: list[dict] = field(default_factory=list)  # refused while listing: {path, reason}
    ignored: list[dict] = field(default_factory=list)  # not images: {path, reason}
    # Class names merged by `class_name_variants="merge"`: kept name -> the source names.
    merged_classes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def encoded(self) -> bool:
        """True when the images are still encoded (files, table cells): each is read, checked
        and converted at ingest (`reading.prepare`); False for decoded arrays."""
        return not any(isinstance(split, ArraySplit) for split in self.splits.values())


def open_source(
    source: str,
    *,
    fashion_mnist_dir: str = FASHION_MNIST_DIR,
    tfds_data_dir: str | None = None,
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    tfds_limit: int | None = None,
    class_name_variants: str = "refuse",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size_rules: SizeRules = SizeRules(),
    num_workers: int | None = None,
) -> Source:
    """Open `source` (see the module docstring) and check its labels.

    Args:
        class_names: names for label ids 0..K-1 of IDX/npz sources (default: "0".."K-1", or the
            npz's `class_names`); other sources name their own classes.
        image_size: `(height, width)`; TFDS images are resized while loading, which also lets
            datasets with images of varying size be ingested.
        tfds_limit: read at most this many examples per TFDS split (TFDS files are already
            shuffled, so the first N are a fair sample).
        class_name_variants: `"refuse"` class names that differ only in case or Unicode
            normalisation (the error names both), or `"merge"` them into one class (the
            spelling with the most examples; `Source.merged_classes` records the merge).
        max_pixels, size_rules: the per-image checks (`images.prepare_encoded`) for sources
            decoded here (TFDS): refused images are listed in `Source.skipped`.
        num_workers: threads decoding TFDS images (default `2 * cpu_count`).
    """
    if not isinstance(source, str) or not source.strip():
        raise DataError(
            f"source must be a non-empty string ({source_forms()}). Received: {source!r}"
        )
    source = source.strip()
    naming = [f"{scheme}:" for scheme, entry in FORMATS.items() if entry.takes_class_names]
    if class_names is not None and not source.startswith(tuple(naming)):
        raise DataError(
            f"class_names applies to {' and '.join(naming)} sources; {source} names its classes"
        )
    if class_name_variants not in CLASS_NAME_VARIANTS:
        raise DataError(
            f"class_name_variants must be one of {CLASS_NAME_VARIANTS}. "
            f"Received: class_name_variants={class_name_variants!r}"
        )
    tfds_options = _TfdsOptions(
        image_size, tfds_limit, max_pixels, size_rules, num_workers or 2 * (os.cpu_count() or 1)
    )
    context = OpenContext(
        source.partition(":")[0], fashion_mnist_dir, tfds_data_dir, class_names, tfds_options
    )
    try:
        opened = _open(source, context)
    except DataError:
        raise
    except Exception as error:  # OSError, MemoryError, a library's own: name what was read
        raise DataError(
            f"{display_path(source)}: cannot read the source ({type(error).__name__}: {error})"
        ) from error
    _check_labels(opened)
    if _resolve_class_name_variants(opened, class_name_variants):
        _check_labels(opened)
    return opened


def _open(source: str, context: OpenContext) -> Source:
    scheme, _, rest = source.partition(":")
    entry = FORMATS.get(scheme) if rest else None
    if source == "fashion_mnist":
        return _open_fashion_mnist(context.fashion_mnist_dir, context.tfds_data_dir, context.tfds)
    if entry is not None and entry.uri_location:  # before "://": csv:gs://b/import.csv
        return entry.open(rest, context)
    if "://" in source:
        if not source.startswith("gs://"):
            scheme = source.split("://")[0]
            raise DataError(
                f"unknown source scheme {scheme!r} in source={source!r}; expected {source_forms()}"
            )
        return _open_folder(source)
    if entry is not None:
        return entry.open(rest, context)
    if rest and scheme == "folder":
        return _open_folder(rest)
    if rest and len(scheme) > 1 and "/" not in scheme:
        raise DataError(
            f"unknown source scheme {scheme!r} in source={source!r}; expected {source_forms()}"
        )
    if not storage.isdir(source):
        hint = f" (did you mean tfds:{source}?)" if "/" not in source else ""
        raise DataError(f"image folder not found: {source}{hint}; expected {source_forms()}")
    return _open_folder(source)


def _check_labels(source: Source) -> None:
    num_classes = len(source.class_names)
    if num_classes < 2:
        raise DataError(
            f"{source.location}: a classifier needs at least 2 classes; found {num_classes} "
            f"({source.class_names})"
        )
    if "train" not in source.splits or not len(source.splits["train"]):
        raise DataError(f"{source.location}: no train examples")
    for name, split in source.splits.items():
        if name == "unlabeled":
            continue
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= num_classes))
        if len(bad):
            if isinstance(split, ArraySplit):
                where = split.labels_origin or split.origin
            elif isinstance(split, TableSplit):
                where = split.files[split.file_of[bad[0]]]
            else:
                where = split.paths[bad[0]]
            raise DataError(
                f"{where}: label {int(split.labels[bad[0]])} at position {int(bad[0])} is outside "
                f"the class range [0, {num_classes}) ({len(bad)} such labels in {name})"
            )
    present = np.unique(source.splits["train"].labels)
    if len(present) < 2:
        raise DataError(
            f"{source.location}: train examples hold a single class ({int(present[0])}); "
            "a classifier needs at least 2"
        )


def class_name_key(name: str) -> str:
    """The key under which two class names count as one: Unicode's canonical caseless match
    (`NFD(casefold(NFD(name)))`), so `Cat` = `cat` = `CAT`, `Straße` = `STRASSE`, and `é`
    composed (U+00E9) = `e` + combining acute (U+0301, how macOS writes file names)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def class_name_variants(names: Sequence[str]) -> list[list[int]]:
    """Groups of positions into `names` whose names differ only in case or Unicode
    normalisation (`class_name_key`); each group has >= 2 members, in order of first member."""
    groups: dict[str, list[int]] = {}
    for position, name in enumerate(names):
        groups.setdefault(class_name_key(name), []).append(position)
    return [members for members in groups.values() if len(members) > 1]


def _spell(names: Sequence[str]) -> str:
    """`'Cat' and 'cat'`; names that are not plain ASCII also as code points, since composed
    and decomposed forms print alike (`'Café' (Caf\\xe9)`)."""
    shown = [f"{name!r}" + ("" if name.isascii() else f" ({ascii(name)[1:-1]})") for name in names]
    return ", ".join(shown[:-1]) + f" and {shown[-1]}"


def _resolve_class_name_variants(opened: Source, policy: str) -> bool:
    """Refuse (`policy="refuse"`) or merge class names that differ only in case or Unicode
    normalisation; True when classes were merged (labels renumbered in place).

    Merging keeps the spelling with the most labelled examples (ties: the first name) and
    renumbers labels so that they stay 0..K-1 in the order of the kept names.
    """
    groups = class_name_variants(opened.class_names)
    if not groups:
        return False
    names = opened.class_names
    if policy == "refuse":
        what = "class folders" if opened.kind == "folder" else "class names"
        more = f" ({len(groups) - 1} more such groups)" if len(groups) > 1 else ""
        raise DataError(
            f"{opened.location}: {what} {_spell([names[i] for i in groups[0]])} differ only in "
            f"case or Unicode normalisation{more}; they would be separate classes of the same "
            "things. Rename them to one spelling, or merge them with "
            "class_name_variants='merge' (--class-name-variants merge)"
        )
    counts = np.zeros(len(names), np.int64)
    for name, split in opened.splits.items():
        if name != "unlabeled":
            counts += np.bincount(split.labels[split.labels >= 0], minlength=len(names))
    kept_of = np.arange(len(names))
    merged = {}
    for members in groups:
        kept = max(members, key=lambda i: (counts[i], -i))
        kept_of[members] = kept
        merged[names[kept]] = [names[i] for i in members]
        logger.warning(
            "class names %s differ only in case or Unicode normalisation: merged into %r "
            "(class_name_variants='merge'); examples per name: %s",
            _spell([names[i] for i in members]),
            names[kept],
            ", ".join(f"{names[i]!r}: {counts[i]}" for i in members),
        )
    survivors = np.flatnonzero(kept_of == np.arange(len(names)))
    new_label = np.full(len(names), -1, np.int64)
    new_label[survivors] = np.arange(len(survivors))
    mapping = new_label[kept_of]
    for name, split in opened.splits.items():
        labels = np.where(split.labels >= 0, mapping[np.maximum(split.labels, 0)], split.labels)
        opened.splits[name] = dataclasses.replace(split, labels=labels)
    opened.class_names = [names[i] for i in survivors]
    opened.merged_classes = merged
    return True


def _default_class_names(
    splits: dict[str, ArraySplit], class_names: Sequence[str] | None
) -> list[str]:
    """The given names, else "0".."K-1" for the largest label K-1; K is checked first."""
    if class_names is not None:
        if len(class_names) > MAX_CLASSES:
            raise DataError(
                f"class_names holds {len(class_names):,} names; at most MAX_CLASSES="
                f"{MAX_CLASSES:,} classes are supported"
            )
        return [str(name) for name in class_names]
    top, where = -1, ""
    for name, split in splits.items():
        if name != "unlabeled" and len(split.labels):
            position = int(np.argmax(split.labels))
            if int(split.labels[position]) > top:
                top = int(split.labels[position])
                where = f"{split.labels_origin or split.origin} at position {position}"
    if top >= MAX_CLASSES:
        raise DataError(
            f"{where}: label {top} implies {top + 1:,} classes; at most MAX_CLASSES="
            f"{MAX_CLASSES:,} are supported (labels must be class ids 0..K-1)"
        )
    return [str(label) for label in range(top + 1)]


# --- IDX (MNIST format) ---------------------------------------------------------------------


def _open_fashion_mnist(directory, tfds_data_dir, tfds_options) -> Source:
    if storage.isdir(directory) and _find_idx_files(directory).get("train"):
        opened = _open_idx(directory, FASHION_MNIST_CLASSES)
        opened.kind = "idx"
        return opened
    try:
        opened = _open_tfds("fashion_mnist", tfds_data_dir, tfds_options)
    except DataError as error:
        raise DataError(
            f"fashion_mnist: no IDX files in {directory} (install the Debian package "
            f"dataset-fashion-mnist, or pass fashion_mnist_dir) and TFDS could not provide it "
            f"either: {error}"
        ) from None
    opened.class_names = list(FASHION_MNIST_CLASSES)
    return opened


def _find_idx_files(directory: str) -> dict[str, tuple[list[str], list[str]]]:
    """Split -> (candidate images files, candidate labels files), each list sorted and not
    empty; a split with neither is left out. Several candidates (`x` and `x.gz`, `t10k-` and
    `test-`) are resolved by `_read_idx_candidates`."""
    names = [entry.name for entry in storage.list_dir(directory) if not entry.is_dir]
    found = {}
    for split, prefixes in _IDX_PREFIXES.items():
        images = [n for n in names if n.startswith(tuple(f"{p}-images" for p in prefixes))]
        labels = [n for n in names if n.startswith(tuple(f"{p}-labels" for p in prefixes))]
        if images and labels:
            found[split] = (
                [storage.join(directory, name) for name in images],
                [storage.join(directory, name) for name in labels],
            )
        elif images or labels:
            present = (images or labels)[0]
            missing = "labels" if images else "images"
            raise DataError(f"{storage.join(directory, present)} has no matching {missing} file")
    return found


def _open_idx(directory: str, class_names: Sequence[str] | None) -> Source:
    directory = storage.strip_trailing_slash(directory)
    if not storage.isdir(directory):
        raise DataError(f"IDX directory not found: {directory}")
    files = _find_idx_files(directory)
    if "train" not in files:
        raise DataError(
            f"{directory}: no IDX train files (expected train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz])"
        )
    splits = {}
    for split, (images_paths, labels_paths) in files.items():
        images_path, images = _read_idx_candidates(images_paths, 3, f"{split} images")
        labels_path, labels = _read_idx_candidates(labels_paths, 1, f"{split} labels")
        if len(images) != len(labels):
            raise DataError(
                f"IDX count mismatch: {images_path} holds {len(images)} images but "
                f"{labels_path} holds {len(labels)} labels"
            )
        splits[split] = ArraySplit(
            images[..., None], labels.astype(np.int64), images_path, labels_path
        )
    return Source("idx", directory, _default_class_names(splits, class_names), splits)


def _read_idx_candidates(paths: list[str], ndim: int, what: str) -> tuple[str, np.ndarray]:
    """`(path, array)` of the IDX file for `what` ("train images", ...) among `paths`.

    One candidate is simply read. Several (`t10k-images-idx3-ubyte` beside its `.gz`, or a
    `test-` beside a `t10k-` file) are all read and decompressed: identical contents are one
    file stored twice (the first is used, the log says so); different contents, or one that
    does not read, are refused naming both, since choosing one would be a guess.
    """
    if len(paths) == 1:
        return paths[0], read_idx(paths[0], ndim)
    arrays = []
    for path in paths:
        try:
            arrays.append(read_idx(path, ndim))
        except DataError as error:
            others = " and ".join(p for p in paths if p != path)
            raise DataError(
                f"{path} and {others} are both candidate IDX {what} files and {path} does not "
                f"read ({error}); remove the one that is not the {what}"
            ) from None
    for path, array in zip(paths[1:], arrays[1:], strict=True):
        if array.shape != arrays[0].shape or not np.array_equal(array, arrays[0]):
            shapes = f"{'x'.join(map(str, arrays[0].shape))} vs {'x'.join(map(str, array.shape))}"
            raise DataError(
                f"{paths[0]} and {path} are both candidate IDX {what} files and their contents "
                f"differ after decompression ({shapes}); remove the one that is not the {what}"
            )
    logger.info(
        "%s: identical contents after decompression; using %s", " and ".join(paths), paths[0]
    )
    return paths[0], arrays[0]


def read_idx(path: str, ndim: int) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes with `ndim` dimensions, as uint8."""
    data = storage.read_bytes(path)
    header = 4 + 4 * ndim
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip_idx(data, path, header)
    if len(data) < header or data[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX type code 0x{data[2]:02x} is not unsigned byte (0x08)")
    if data[3] != ndim:
        raise DataError(f"{path}: IDX file has {data[3]} dimensions, expected {ndim}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX count mismatch: header declares {'x'.join(map(str, dims))} = "
            f"{expected} bytes of data, the file holds {len(data) - header}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _gunzip_idx(data: bytes, path: str, header: int) -> bytes:
    """Decompress an IDX file, never more than its header declares plus one byte (to detect
    excess): a corrupt or hostile stream cannot grow memory past the declared size."""
    try:
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        head = stream.decompress(data, header)
        declared = 0
        if len(head) == header and head[:3] == b"\0\0\x08":
            dims = struct.unpack(f">{(header - 4) // 4}I", head[4:header])
            declared = min(int(np.prod(dims, dtype=object)), sys.maxsize - 1)
        body = stream.decompress(stream.unconsumed_tail, declared + 1)
        if not stream.eof and len(body) <= declared:  # only the gzip trailer may be left
            body += stream.decompress(stream.unconsumed_tail, 1)
        if not stream.eof and len(head) + len(body) <= header + declared:
            raise DataError(f"{path}: corrupt gzip data (the compressed stream is truncated)")
        return head + body
    except zlib.error as error:
        raise DataError(f"{path}: corrupt gzip data ({error})") from None


# --- npz --------------------------------------------------------------------------------------


def _open_npz(path: str, class_names: Sequence[str] | None) -> Source:
    if not storage.exists(path):
        raise DataError(f"npz file not found: {path}")
    data = storage.read_bytes(path)
    if not data.startswith(_ZIP_MAGIC):
        what = "a single .npy array" if data.startswith(_NPY_MAGIC) else "not a zip archive"
        raise DataError(
            f"{path}: not an npz file ({what}); npz: expects np.savez output with x_train and "
            "y_train"
        )
    try:
        # Lazy: reads the zip directory now, each member only when asked for; never unpickles.
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # zipfile and numpy format errors alike
        raise DataError(
            f"{path}: not a readable npz file ({type(error).__name__}: {error})"
        ) from None
    with npz:
        fields = list(npz.files)
        if "x_train" not in fields or "y_train" not in fields:
            raise DataError(f"{path}: npz needs fields x_train and y_train; found {sorted(fields)}")
        ignored = [
            {"path": f"{path}:{key}", "reason": f"npz field not used ({_npz_describe(npz, key)})"}
            for key in fields
            if key not in NPZ_FIELDS
        ]
        if ignored:
            logger.warning(
                "%s: %d npz fields not used (ingest reads %s):\n%s",
                path,
                len(ignored),
                ", ".join(NPZ_FIELDS),
                "\n".join(f"  {entry['path']}: {entry['reason']}" for entry in ignored),
            )
        wanted = [key for key in NPZ_FIELDS if key in fields]
        if class_names is not None:
            wanted = [key for key in wanted if key != "class_names"]
        arrays = {key: _npz_field(npz, key, path) for key in wanted}
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: npz has only one of x_test / y_test; give both or neither")
    splits = {}
    for split, x_key, y_key in (
        ("train", "x_train", "y_train"),
        ("test", "x_test", "y_test"),
        ("unlabeled", "x_unlabeled", None),
    ):
        if x_key not in arrays:
            continue
        images = _npz_images(arrays[x_key], path, x_key)
        if y_key is None:
            labels = np.full(len(images), -1, np.int64)
        else:
            labels = _npz_labels(arrays[y_key], path, y_key)
            if len(labels) != len(images):
                raise DataError(
                    f"{path}: {x_key} holds {len(images)} images but {y_key} holds "
                    f"{len(labels)} labels"
                )
        splits[split] = ArraySplit(images, labels, f"{path}:{x_key}", f"{path}:{y_key}")
    shapes = {split.images.shape[1:] for split in splits.values()}
    if len(shapes) > 1:
        raise DataError(f"{path}: image shapes differ between fields: {sorted(shapes)}")
    if class_names is None and "class_names" in arrays:
        class_names = _npz_class_names(arrays["class_names"], path)
    source = Source("npz", path, _default_class_names(splits, class_names), splits)
    source.ignored = ignored
    return source


def _npy_header(npz, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """`(shape, dtype)` of one npz member from its .npy header, no data read; None when the
    header is not one NumPy's public readers know."""
    names = npz.zip.namelist()
    member = key if key in names else f"{key}.npy"
    try:
        with npz.zip.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
    except Exception:  # not a .npy member (np.savez writes only .npy; another tool may not)
        return None
    return shape, dtype


def _npz_describe(npz, key: str) -> str:
    header = _npy_header(npz, key)
    if header is None:
        return "not a .npy array"
    shape, dtype = header
    kind = "object array" if dtype.hasobject else f"dtype {dtype}"
    return f"{kind}, shape {shape}"


def _npz_field(npz, key: str, path: str) -> np.ndarray:
    """One needed npz member as an array; an object array (it would need unpickling) is
    refused naming the field, before its data is read."""
    header = _npy_header(npz, key)
    wanted = "a string array: np.array(names, dtype=str)" if key == "class_names" else "numbers"
    refusal = (
        f"{path}: field {key} is an object array, which would need unpickling (ingest loads "
        f"npz files with allow_pickle=False); save it as {wanted}"
    )
    if header is not None and header[1].hasobject:
        raise DataError(refusal)
    try:
        return npz[key]
    except (MemoryError, KeyboardInterrupt):
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(refusal) from None
        raise DataError(f"{path}: field {key} is not readable ({error})") from None
    except Exception as error:  # zipfile, zlib and numpy format errors alike
        raise DataError(
            f"{path}: field {key} is not readable ({type(error).__name__}: {error})"
        ) from None


def _npz_class_names(names: np.ndarray, path: str) -> list[str]:
    """An npz's `class_names`: a 1-D array of strings (or UTF-8 bytes, as `np.savez` stores
    a list of `bytes`)."""
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{path}: field class_names must be a 1-D array of strings; found dtype "
            f"{names.dtype} and shape {names.shape}"
        )
    if names.dtype.kind == "U":
        return [str(name) for name in names.tolist()]
    try:
        return [name.decode("utf-8") for name in names.tolist()]
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: field class_names holds bytes that are not UTF-8 ({error})"
        ) from None


def _npz_images(x: np.ndarray, path: str, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: field {key} must be [N, H, W] or [N, H, W, C] with C 1 or 3; "
            f"found shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer) and (not x.size or (x.min() >= 0 and x.max() <= 255)):
        return x.astype(np.uint8)
    raise DataError(
        f"{path}: field {key} must hold uint8 pixels in [0, 255]; found dtype {x.dtype}"
        + (f" with range [{x.min()}, {x.max()}]" if x.size else "")
    )


def _npz_labels(y: np.ndarray, path: str, key: str) -> np.ndarray:
    y = np.squeeze(y) if y.ndim == 2 and y.shape[-1] == 1 else y
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise DataError(
            f"{path}: field {key} must be integer class ids of shape [N]; found dtype {y.dtype} "
            f"and shape {y.shape}"
        )
    return y.astype(np.int64)


# --- TFDS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TfdsOptions:
    """How TFDS images are read: each is decoded here, with the per-image checks of folders."""

    image_size: tuple[int, int] | None
    limit: int | None
    max_pixels: int
    size_rules: SizeRules
    num_workers: int


def _open_tfds(name: str, data_dir: str | None, options: _TfdsOptions) -> Source:
    """A TFDS dataset's splits as arrays. TFDS keeps the original bytes of the files a dataset
    was built from (EXIF included) and decodes them with `tf.io.decode_image`, which ignores
    the EXIF orientation; so the image feature is read undecoded (`SkipDecoding`) and every
    image goes through `images.decode_checked`, as a folder image does: upright, refused when
    over `max_pixels` or too degenerate to resize (`Source.skipped`), resized with Pillow."""
    import tensorflow_datasets as tfds

    where = data_dir or "the default TFDS data_dir"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:
        raise DataError(f"tfds:{name}: unknown TFDS dataset ({error})") from None
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise DataError(
            f"tfds:{name}: not prepared in {where} and could not be downloaded ({error})"
        ) from None
    features = builder.info.features
    image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if not image_keys or not label_keys:
        raise DataError(
            f"tfds:{name}: needs an Image and a ClassLabel feature; found {dict(features)}"
        )
    image_key = "image" if "image" in image_keys else image_keys[0]
    label_key = "label" if "label" in label_keys else label_keys[0]
    image_shape = features[image_key].shape
    if options.image_size is None and None in image_shape[:2]:
        raise DataError(f"tfds:{name}: images vary in size ({image_shape}); pass image_size")

    # Datasets prepared elsewhere list their splits; without that metadata use the usual two.
    available = list(builder.info.splits) or ["train", "test"]
    decoders = {image_key: tfds.decode.SkipDecoding()}
    splits, skipped = {}, []
    for tfds_split in available:
        ours = _TFDS_SPLITS.get(tfds_split)
        if ours is None:
            logger.warning("tfds:%s: split %r is not ingested", name, tfds_split)
            continue
        dataset = builder.as_dataset(split=tfds_split, shuffle_files=False, decoders=decoders)
        dataset = dataset.map(lambda example: (example[image_key], example[label_key]))
        if options.limit is not None:
            dataset = dataset.take(options.limit)
        origin = f"tfds:{name}/{tfds_split}"
        split = _decode_tfds_split(dataset, origin, options, image_shape[-1], skipped)
        if split is not None:
            if ours == "unlabeled":
                split.labels[:] = -1
            splits[ours] = split
    class_names = list(features[label_key].names)
    return Source("tfds", f"tfds:{name}", class_names, splits, skipped)


def _decode_tfds_split(
    dataset, origin: str, options: _TfdsOptions, channels: int | None, skipped: list[dict]
) -> ArraySplit | None:
    """Decode `(encoded image, label)` pairs on a thread pool (Pillow releases the GIL) into
    one `ArraySplit` with the source positions and orientations; refused images go to
    `skipped` as `<origin>[<position>]`. None when no image is left."""

    def decode(data: bytes):
        source_format = sniff_format(data[:32])
        if source_format is None:
            return ImageRejected(f"not a supported image format (content starting {data[:8]!r})")
        try:
            return decode_checked(
                data,
                source_format,
                image_size=options.image_size,
                max_pixels=options.max_pixels,
                size_rules=options.size_rules,
            )
        except ImageRejected as rejected:
            return rejected
        except Exception as error:  # a decoder bug must not end the ingest unnamed
            return ImageRejected(f"undecodable {source_format}: {type(error).__name__}: {error}")

    images, labels, offsets, orientations = [], [], [], []
    first: tuple[tuple[int, int], str] | None = None
    position = 0
    with ThreadPoolExecutor(options.num_workers) as executor:
        for data_batch, label_batch in dataset.batch(_TFDS_BATCH).as_numpy_iterator():
            for result, label in zip(executor.map(decode, data_batch), label_batch, strict=True):
                where = f"{origin}[{position}]"
                position += 1
                if isinstance(result, ImageRejected):
                    skipped.append({"path": where, "reason": result.reason})
                    continue
                pixels = result.pixels
                if options.image_size is not None and pixels.shape[:2] != options.image_size:
                    pixels = crop_resize(pixels, options.image_size)
                if first is None:
                    first = (pixels.shape[:2], where)
                elif pixels.shape[:2] != first[0]:
                    raise DataError(
                        f"images differ in size: {first[1]} is {first[0][0]}x{first[0][1]}, "
                        f"{where} is {pixels.shape[0]}x{pixels.shape[1]} (height x width, "
                        "upright); pass image_size to resize them"
                    )
                images.append(pixels)
                labels.append(int(label))
                offsets.append(position - 1)
                orientations.append(result.orientation)
    if not images:
        return None
    rgb = channels == 3 or (channels != 1 and any(image.ndim == 3 for image in images))
    stacked = np.stack([_with_channels(image, 3 if rgb else 1) for image in images])
    return ArraySplit(
        stacked,
        np.asarray(labels, np.int64),
        origin,
        offsets=np.asarray(offsets, np.int64),
        orientations=np.asarray(orientations, np.int64),
    )


def _with_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """uint8 `[H, W]` or `[H, W, 3]` -> `[H, W, channels]`: grey repeated into RGB, RGB to grey
    by Pillow's ITU-R 601-2 luma (what TFDS's `decode_image(channels=1)` does likewise)."""
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], channels, axis=-1)
    if channels == 3:
        return pixels
    return np.asarray(Image.fromarray(pixels).convert("L"))[..., None]


# --- image folders ---------------------------------------------------------------------------


def _open_folder(root: str) -> Source:
    root = storage.strip_trailing_slash(root)
    if not storage.isdir(root):
        raise DataError(f"image folder not found: {root}")
    entries = storage.list_dir(root)
    directories = {entry.name for entry in entries if entry.is_dir}
    _refuse_split_folder_variants(root, directories)
    skipped: list[dict] = []
    ignored: list[dict] = []
    for entry in entries:
        if not entry.is_dir:
            _refuse_file(
                storage.join(root, entry.name), "file beside the class folders", skipped, ignored
            )

    if "train" in directories:
        split_roots = {"train": storage.join(root, "train")}
        if "test" in directories:
            split_roots["test"] = storage.join(root, "test")
        extra = directories - {"train", "test", "unlabeled"}
        class_dirs = {}
        for split, split_root in split_roots.items():
            split_entries = storage.list_dir(split_root)
            class_dirs[split] = {entry.name for entry in split_entries if entry.is_dir}
            for entry in split_entries:
                if not entry.is_dir:
                    path = storage.join(split_root, entry.name)
                    _refuse_file(path, f"file beside the {split} class folders", skipped, ignored)
        # A test folder spelt like a train class but for case or normalisation joins that
        # class's name list, where the variant check refuses or merges it.
        train_keys = {class_name_key(display_path(name)) for name in class_dirs["train"]}
        variants = {
            name
            for name in class_dirs.get("test", set()) - class_dirs["train"]
            if class_name_key(display_path(name)) in train_keys
        }
        class_names = sorted(class_dirs["train"] | variants)
        unknown = class_dirs.get("test", set()) - set(class_names)
        if unknown:
            raise DataError(
                f"{display_path(storage.join(split_roots['test'], sorted(unknown)[0]))}: test "
                f"class folder has no train counterpart (train classes: "
                f"{[display_path(name) for name in class_names]})"
            )
    else:
        if "test" in directories and _holds_folders(storage.join(root, "test")):
            raise DataError(
                f"{display_path(storage.join(root, 'test'))} holds class folders but {root} has "
                "no train/ folder: a split layout needs <root>/train/<class>/ (and optionally "
                "<root>/test/<class>/); a class named 'test' holds images, not folders"
            )
        split_roots = {"train": root}
        extra = set()
        class_dirs = {"train": directories - {"unlabeled"}}
        class_names = sorted(class_dirs["train"])
    for name in sorted(extra):
        ignored.append({"path": storage.join(root, name), "reason": "folder outside train/test"})
    if not class_names:
        raise DataError(f"{root}: no class folders (expected <root>/<class>/<image>)")
    if len(class_names) == 1:
        raise DataError(
            f"{root}: only one class folder ({display_path(class_names[0])!r}); a classifier "
            "needs at least 2"
        )
    if len(class_names) > MAX_CLASSES:
        raise DataError(
            f"{root}: {len(class_names):,} class folders; at most MAX_CLASSES={MAX_CLASSES:,} "
            "classes are supported"
        )

    splits = {}
    for split, split_root in split_roots.items():
        paths, labels = [], []
        for label, class_name in enumerate(class_names):
            if class_name not in class_dirs[split]:
                continue
            class_dir = storage.join(split_root, class_name)
            files = _list_images(root, class_dir, skipped, ignored)
            if not files:
                raise DataError(f"class folder is empty: {display_path(class_dir)}")
            paths += files
            labels += [label] * len(files)
        splits[split] = FileSplit(paths, np.asarray(labels, np.int64), root)
    if "unlabeled" in directories:
        files = _list_images(root, storage.join(root, "unlabeled"), skipped, ignored)
        splits["unlabeled"] = FileSplit(files, np.full(len(files), -1, np.int64), root)
    names = [display_path(name) for name in class_names]
    return Source("folder", root, names, splits, skipped, ignored)


def _refuse_split_folder_variants(root: str, directories: set[str]) -> None:
    """Refuse a folder spelt like a split folder (`train`, `test`, `unlabeled`) but for case or
    Unicode normalisation, where the layout would read it as something else: beside an exact
    `train/` (it would be ignored), an `Unlabeled/` anywhere (it would become a class), a
    `Train/` or `Test/` holding folders (a split layout whose split is not recognised). A
    `Train/` of images in a flat layout stays a class."""
    splits = {class_name_key(name): name for name in ("train", "test", "unlabeled")}
    unlabeled_hint = " (images without labels), or a class to another name"
    for name in sorted(directories):
        exact = splits.get(class_name_key(display_path(name)))
        if exact is None or name == exact:
            continue
        path = storage.join(root, name)
        if "train" in directories or exact == "unlabeled" or _holds_folders(path):
            raise DataError(
                f"{display_path(path)}: folder name differs from the split folder {exact!r} "
                f"only in case or Unicode normalisation; split folders are matched exactly: "
                f"rename it to {exact!r}" + (unlabeled_hint if exact == "unlabeled" else "")
            )


def _holds_folders(directory: str) -> bool:
    return any(entry.is_dir for entry in storage.list_dir(directory))


def _refuse_file(path: str, reason: str, skipped: list, ignored: list) -> None:
    """A file outside the layout: skipped when named like an image, else ignored; both listed."""
    target = skipped if looks_like_image_name(path) else ignored
    target.append({"path": display_path(path), "reason": reason})


def _list_images(root: str, directory: str, skipped: list, ignored: list) -> list[str]:
    """Candidate image files directly inside `directory`; content is checked when read.

    Only regular files are candidates: a named pipe, socket or device is never opened (reading
    a pipe would block forever). Sub-folders are listed in `ignored`.
    """
    if storage.escapes_root(root, directory):
        raise DataError(
            f"{display_path(directory)}: folder escapes the source root {root} (symlink or '..')"
        )
    local = storage.is_local(directory)
    files = []
    for entry in storage.list_dir(directory):
        path = storage.join(directory, entry.name)
        if entry.is_dir:
            ignored.append({"path": display_path(path), "reason": "folder below the class level"})
        # Local names from a directory scan have no "..", so only symlinks can leave the root.
        elif (entry.is_link or not local) and storage.escapes_root(root, path):
            skipped.append({"path": display_path(path), "reason": "path escapes the source root"})
        elif local and (kind := _special_file_kind(path)):
            _refuse_file(path, f"not a regular file ({kind})", skipped, ignored)
        else:
            files.append(path)
    return files


def _special_file_kind(path: str) -> str | None:
    """None for a regular file (after symlinks), else what it is: 'named pipe', 'socket', ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot stat: {error.strerror}"
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"
