"""Image sources: where `ingest` reads examples from.

`open_source` turns a source string into a `Source`: class names plus, per source split
(`train`, `test`, `unlabeled`), either in-memory arrays (`ArraySplit`: IDX, npz, TFDS) or a list
of image files still to be read (`FileSplit`: image folders). Labels are known up front in both
cases, so splits can be planned before any image is encoded.

Source strings:
    fashion_mnist          IDX files in `fashion_mnist_dir` (Debian package
                           dataset-fashion-mnist), else TFDS `fashion_mnist`.
    idx:DIR                MNIST-format IDX files: train-/t10k- images and labels, gz or not.
    tfds:NAME              a TFDS dataset (`unlabelled` split -> our `unlabeled`).
    npz:FILE               arrays x_train, y_train, x_test, y_test (+ x_unlabeled, class_names).
    PATH | gs://B/PREFIX   an image folder: <root>/<class>/<image> or
                           <root>/{train,test}/<class>/<image>, optional <root>/unlabeled/.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.images import looks_like_image_name

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
SOURCE_FORMS = "fashion_mnist, idx:DIR, tfds:NAME, npz:FILE, or an image folder (path or gs://)"

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

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FileSplit:
    """Image files not read yet; each file's id is its path relative to `root`."""

    paths: list[str]
    labels: np.ndarray  # int64 [N]; -1 = unlabeled
    root: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Source:
    kind: str  # "idx" | "npz" | "tfds" | "folder"
    location: str  # resolved directory, file or TFDS name
    class_names: list[str]
    splits: dict[str, ArraySplit | FileSplit]
    skipped: list[dict] = field(default_factory=list)  # refused while listing: {path, reason}
    ignored: list[dict] = field(default_factory=list)  # not images: {path, reason}


def open_source(
    source: str,
    *,
    fashion_mnist_dir: str = FASHION_MNIST_DIR,
    tfds_data_dir: str | None = None,
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    tfds_limit: int | None = None,
) -> Source:
    """Open `source` (see the module docstring) and check its labels.

    Args:
        class_names: names for label ids 0..K-1 of IDX/npz sources (default: "0".."K-1", or the
            npz's `class_names`); other sources name their own classes.
        image_size: `(height, width)`; TFDS images are resized while loading, which also lets
            datasets with images of varying size be ingested.
        tfds_limit: read at most this many examples per TFDS split (TFDS files are already
            shuffled, so the first N are a fair sample).
    """
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"source must be a non-empty string ({SOURCE_FORMS}). Received: {source!r}")
    source = source.strip()
    if class_names is not None and not source.startswith(("idx:", "npz:")):
        raise DataError(f"class_names applies to idx: and npz: sources; {source} names its classes")
    try:
        opened = _open(
            source, fashion_mnist_dir, tfds_data_dir, class_names, image_size, tfds_limit
        )
    except DataError:
        raise
    except Exception as error:  # OSError, MemoryError, a library's own: name what was read
        raise DataError(
            f"{display_path(source)}: cannot read the source ({type(error).__name__}: {error})"
        ) from error
    _check_labels(opened)
    return opened


def _open(source, fashion_mnist_dir, tfds_data_dir, class_names, image_size, tfds_limit):
    scheme, _, rest = source.partition(":")
    if source == "fashion_mnist":
        opened = _open_fashion_mnist(fashion_mnist_dir, tfds_data_dir, image_size, tfds_limit)
    elif "://" in source:
        if not source.startswith("gs://"):
            scheme = source.split("://")[0]
            raise DataError(
                f"unknown source scheme {scheme!r} in source={source!r}; expected {SOURCE_FORMS}"
            )
        opened = _open_folder(source)
    elif rest and scheme in ("idx", "tfds", "npz", "folder"):
        if scheme == "idx":
            opened = _open_idx(rest, class_names)
        elif scheme == "npz":
            opened = _open_npz(rest, class_names)
        elif scheme == "tfds":
            opened = _open_tfds(rest, tfds_data_dir, image_size, tfds_limit)
        else:
            opened = _open_folder(rest)
    elif rest and len(scheme) > 1 and "/" not in scheme:
        raise DataError(
            f"unknown source scheme {scheme!r} in source={source!r}; expected {SOURCE_FORMS}"
        )
    else:
        if not storage.isdir(source):
            hint = f" (did you mean tfds:{source}?)" if "/" not in source else ""
            raise DataError(f"image folder not found: {source}{hint}; expected {SOURCE_FORMS}")
        opened = _open_folder(source)
    return opened


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


def _open_fashion_mnist(directory, tfds_data_dir, image_size, tfds_limit) -> Source:
    if storage.isdir(directory) and _find_idx_files(directory).get("train"):
        opened = _open_idx(directory, FASHION_MNIST_CLASSES)
        opened.kind = "idx"
        return opened
    try:
        opened = _open_tfds("fashion_mnist", tfds_data_dir, image_size, tfds_limit)
    except DataError as error:
        raise DataError(
            f"fashion_mnist: no IDX files in {directory} (install the Debian package "
            f"dataset-fashion-mnist, or pass fashion_mnist_dir) and TFDS could not provide it "
            f"either: {error}"
        ) from None
    opened.class_names = list(FASHION_MNIST_CLASSES)
    return opened


def _find_idx_files(directory: str) -> dict[str, tuple[str, str]]:
    """Split -> (images file, labels file); a split with neither file is left out."""
    names = [entry.name for entry in storage.list_dir(directory) if not entry.is_dir]
    found = {}
    for split, prefixes in _IDX_PREFIXES.items():
        images = [n for n in names if n.startswith(tuple(f"{p}-images" for p in prefixes))]
        labels = [n for n in names if n.startswith(tuple(f"{p}-labels" for p in prefixes))]
        if images and labels:
            found[split] = (storage.join(directory, images[0]), storage.join(directory, labels[0]))
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
    for split, (images_path, labels_path) in files.items():
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if len(images) != len(labels):
            raise DataError(
                f"IDX count mismatch: {images_path} holds {len(images)} images but "
                f"{labels_path} holds {len(labels)} labels"
            )
        splits[split] = ArraySplit(
            images[..., None], labels.astype(np.int64), images_path, labels_path
        )
    return Source("idx", directory, _default_class_names(splits, class_names), splits)


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
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # zipfile, zlib, numpy format and pickle errors alike
        raise DataError(
            f"{path}: not a readable npz file ({type(error).__name__}: {error})"
        ) from None
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(f"{path}: npz needs fields x_train and y_train; found {sorted(arrays)}")
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
        class_names = [str(name) for name in arrays["class_names"].tolist()]
    return Source("npz", path, _default_class_names(splits, class_names), splits)


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


def _open_tfds(name, data_dir, image_size, limit) -> Source:
    import tensorflow as tf
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
    if image_size is None and None in image_shape[:2]:
        raise DataError(f"tfds:{name}: images vary in size ({image_shape}); pass image_size")

    # Datasets prepared elsewhere list their splits; without that metadata use the usual two.
    available = list(builder.info.splits) or ["train", "test"]
    splits = {}
    for tfds_split in available:
        ours = _TFDS_SPLITS.get(tfds_split)
        if ours is None:
            logger.warning("tfds:%s: split %r is not ingested", name, tfds_split)
            continue
        dataset = builder.as_dataset(split=tfds_split, shuffle_files=False)
        dataset = dataset.map(lambda example: (example[image_key], example[label_key]))
        if limit is not None:
            dataset = dataset.take(limit)
        if image_size is not None:
            dataset = dataset.map(
                lambda image, label: (_resize_uint8(tf, image, image_size), label),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        images, labels = [], []
        for image_batch, label_batch in dataset.batch(_TFDS_BATCH).as_numpy_iterator():
            images.append(image_batch)
            labels.append(label_batch)
        if not images:
            continue
        labels = np.concatenate(labels).astype(np.int64)
        if ours == "unlabeled":
            labels[:] = -1
        splits[ours] = ArraySplit(np.concatenate(images), labels, f"tfds:{name}/{tfds_split}")
    class_names = list(features[label_key].names)
    return Source("tfds", f"tfds:{name}", class_names, splits)


def _resize_uint8(tf, image, image_size):
    """`images.RESIZE_METHOD` in the graph (TFDS images may differ in size): centred crop to
    the target's aspect ratio, then bilinear."""
    from contrastive.data.images import resize_tensor

    height, width = tf.shape(image)[0], tf.shape(image)[1]
    high, wide = image_size
    crop_height = tf.minimum(height, tf.maximum(1, (width * high + wide // 2) // wide))
    crop_width = tf.minimum(width, tf.maximum(1, (height * wide + high // 2) // high))
    image = tf.image.crop_to_bounding_box(
        image, (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width
    )
    return resize_tensor(image, image_size)


# --- image folders ---------------------------------------------------------------------------


def _open_folder(root: str) -> Source:
    root = storage.strip_trailing_slash(root)
    if not storage.isdir(root):
        raise DataError(f"image folder not found: {root}")
    entries = storage.list_dir(root)
    directories = {entry.name for entry in entries if entry.is_dir}
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
        class_names = sorted(class_dirs["train"])
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
