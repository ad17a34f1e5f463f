"""All file I/O of the library: one set of calls for local paths and `gs://bucket/key` URIs.

Local paths use plain `os` calls. `gs://` objects, and the listing of `gs://` folders
(`list_dir`, `isdir`, `list_files`), go through google-cloud-storage; the other folder
operations on remote paths (and any other `scheme://` TensorFlow knows) go through
`tf.io.gfile`. Both are imported on first use, so the library (and the NumPy-only parts of
`contrastive.data`) import without them. Writes are atomic: a reader sees the old bytes or the
new ones, never a half-written file (locally: temp file + `os.replace`; on GCS a single-object
upload is atomic by itself).

Compare-and-swap for small pointer files (`read_with_generation` /
`write_if_generation_match`): on GCS the object generation with an `ifGenerationMatch`
precondition; locally a content fingerprint checked under an `O_EXCL` lock file.

Every call takes an optional `client` (a `google.cloud.storage.Client`); by default one
client per process is made from the environment's credentials (and honours
`STORAGE_EMULATOR_HOST`, read by google-cloud-storage itself).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

GCS_SCHEME = "gs://"
# A lock older than this is left over from a crashed writer and may be broken.
STALE_LOCK_SECONDS = 300.0
_READ_CHUNK_BYTES = 8 << 20


class PreconditionFailedError(Exception):
    """The object changed (or another writer holds it) since its generation was read."""


def is_gcs(uri: str | os.PathLike) -> bool:
    return os.fspath(uri).startswith(GCS_SCHEME)


def is_local(path: str | os.PathLike) -> bool:
    """True for a plain filesystem path (no `scheme://`)."""
    return "://" not in os.fspath(path)


def _gfile():
    """`tf.io.gfile`, for remote folder operations (TensorFlow imported on first use)."""
    import tensorflow as tf

    return tf.io.gfile


def split_gcs(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> `("bucket", "a/b")`."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI. Received: uri={uri!r}")
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI has no bucket. Received: uri={uri!r}")
    return bucket, name


def join(base: str | os.PathLike, *parts: str) -> str:
    """Joins path parts with `/` for remote URIs and `os.path.join` for local paths."""
    base = os.fspath(base)
    if not is_local(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def strip_trailing_slash(path: str) -> str:
    stripped = path.rstrip("/")
    if not stripped or stripped.endswith(":/"):  # "/" or "gs://": keep the root as given
        return path
    return stripped


@functools.lru_cache(maxsize=1)
def default_gcs_client():
    """The process-wide `google.cloud.storage.Client` (`cache_clear()` to rebuild it)."""
    from google.cloud import storage as gcs

    return gcs.Client()


def _blob(uri: str, client: Any):
    bucket, name = split_gcs(uri)
    if not name:
        raise ValueError(f"gs:// URI names no object. Received: uri={uri!r}")
    return (client or default_gcs_client()).bucket(bucket).blob(name)


def read_bytes(uri: str | os.PathLike, *, client: Any = None) -> bytes:
    """Whole content of a file or object; `FileNotFoundError` when it does not exist."""
    uri = os.fspath(uri)
    if is_local(uri):
        with open(uri, "rb") as stream:
            return stream.read()
    if not is_gcs(uri):
        if not _gfile().exists(uri):
            raise FileNotFoundError(f"no such file: {uri}")
        with _gfile().GFile(uri, "rb") as stream:
            return stream.read()
    from google.api_core import exceptions

    try:
        return _blob(uri, client).download_as_bytes()
    except exceptions.NotFound:
        raise FileNotFoundError(f"no such object: {uri}") from None


def read_text(uri: str | os.PathLike, *, client: Any = None) -> str:
    return read_bytes(uri, client=client).decode("utf-8")


def read_json(uri: str | os.PathLike, *, client: Any = None) -> Any:
    return json.loads(read_bytes(uri, client=client))


def write_bytes(uri: str | os.PathLike, data: bytes, *, client: Any = None) -> None:
    """Writes `data` atomically, creating local parent folders as needed."""
    uri = os.fspath(uri)
    if is_gcs(uri):
        _blob(uri, client).upload_from_string(data)
    elif not is_local(uri):
        with _gfile().GFile(uri, "wb") as stream:
            stream.write(data)
    else:
        _replace_local(uri, data)


def write_text(uri: str | os.PathLike, text: str, *, client: Any = None) -> None:
    write_bytes(uri, text.encode("utf-8"), client=client)


def write_json(uri: str | os.PathLike, value: Any, *, client: Any = None) -> None:
    write_bytes(uri, json_bytes(value), client=client)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Appends `line` and a newline to a local file (created with its folders), in one write,
    so a reader polling the file sees whole lines only. Local paths only: object stores have
    no append."""
    path = os.fspath(path)
    if not is_local(path):
        raise ValueError(f"append_line writes local files only. Received: path={path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(descriptor)


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _replace_local(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    except OSError as error:
        raise naming(error, path) from error
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; our files are meant to be read
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):  # a full disk names the file it could not write
            raise naming(error, path) from error
        raise


def naming(error: OSError, path: str) -> OSError:
    """`error` as an OSError of the same errno that names `path` (a write's ENOSPC names no
    file), for writers outside this module to raise too."""
    if error.filename == path:
        return error
    if error.errno is None:
        return OSError(f"cannot write {path}: {error}")
    return type(error)(error.errno, error.strerror or str(error), path)


def exists(uri: str | os.PathLike, *, client: Any = None) -> bool:
    """True for an existing file or folder; on GCS, an object or any object under `uri/`."""
    uri = os.fspath(uri)
    if is_local(uri):
        return os.path.exists(uri)
    if not is_gcs(uri):
        return _gfile().exists(uri)
    bucket, name = split_gcs(uri)
    client = client or default_gcs_client()
    if name and client.bucket(bucket).blob(name).exists():
        return True
    prefix = name.rstrip("/") + "/" if name else ""
    return any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1))


def list_files(uri: str | os.PathLike, *, client: Any = None) -> list[str]:
    """Files under the folder `uri`, recursively, as sorted `/`-separated relative paths."""
    uri = os.fspath(uri)
    if not is_local(uri) and not is_gcs(uri):
        root = strip_trailing_slash(uri)
        found = []
        for folder, _, files in _gfile().walk(root):
            relative = folder[len(root) :].strip("/")
            found.extend(posixpath.join(relative, name) if relative else name for name in files)
        return sorted(found)
    if not is_gcs(uri):
        found = []
        for folder, _, files in os.walk(uri):
            for name in files:
                relative = os.path.relpath(os.path.join(folder, name), uri)
                found.append(relative.replace(os.sep, "/"))
        return sorted(found)
    bucket, name = split_gcs(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    blobs = (client or default_gcs_client()).list_blobs(bucket, prefix=prefix)
    # Zero-byte "folder" placeholders some tools create end with "/": not files.
    return sorted(b.name[len(prefix) :] for b in blobs if not b.name.endswith("/"))


def remove(uri: str | os.PathLike, *, client: Any = None) -> None:
    """Removes one file or object; missing is fine."""
    uri = os.fspath(uri)
    if is_local(uri):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uri)
        return
    if not is_gcs(uri):
        if _gfile().exists(uri):
            _gfile().remove(uri)
        return
    from google.api_core import exceptions

    with contextlib.suppress(exceptions.NotFound):
        _blob(uri, client).delete()


def isdir(path: str, *, client: Any = None) -> bool:
    """True for a folder; on GCS, a prefix with at least one object under `path/`."""
    if is_local(path):
        return os.path.isdir(path)
    if not is_gcs(path):
        return _gfile().isdir(path)
    bucket, name = split_gcs(path)
    prefix = name.rstrip("/") + "/" if name.strip("/") else ""
    blobs = (client or default_gcs_client()).list_blobs(bucket, prefix=prefix, max_results=1)
    return any(True for _ in blobs)


def makedirs(path: str) -> None:
    """Creates a folder and its parents; an existing one is fine."""
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def rename(source: str, destination: str) -> None:
    """Moves one file, replacing `destination` (atomic on local disks; copy+delete remotely)."""
    if is_local(source) and is_local(destination):
        os.replace(source, destination)
    else:
        _gfile().rename(source, destination, overwrite=True)


def remove_tree(path: str) -> None:
    """Removes a folder and everything under it; missing is fine."""
    if is_local(path):
        if os.path.exists(path):
            shutil.rmtree(path)
    elif _gfile().exists(path):
        _gfile().rmtree(path)


def file_size(path: str) -> int:
    return os.path.getsize(path) if is_local(path) else _gfile().stat(path).length


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    opener = open if is_local(path) else _gfile().GFile
    with opener(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class Entry(NamedTuple):
    name: str
    is_dir: bool
    is_link: bool  # a local symlink (object stores have none)


def list_dir(path: str, *, include_hidden: bool = False, client: Any = None) -> list[Entry]:
    """Sorted entries of the folder `path`; hidden names (`.x`) only on request.

    Local folders are scanned with `os.scandir` (one call instead of a stat per entry;
    symlinks are followed). `gs://` is one delimited object listing (google-cloud-storage):
    objects directly under `path/` are files, common prefixes folders, and a zero-byte
    `path/` placeholder is neither. Other object stores (`tf.io.gfile`) report
    sub-"directories" with a trailing slash; an entry without one is asked `isdir` only when
    it has no file-like extension.
    """
    entries = []
    if is_gcs(path):
        bucket, name = split_gcs(path)
        prefix = name.rstrip("/") + "/" if name.strip("/") else ""
        blobs = (client or default_gcs_client()).list_blobs(bucket, prefix=prefix, delimiter="/")
        files = [blob.name[len(prefix) :] for blob in blobs]  # pages first: prefixes fill in
        folders = [folder[len(prefix) :].rstrip("/") for folder in blobs.prefixes]
        for names, is_dir in ((files, False), (folders, True)):
            for entry_name in names:
                if entry_name and (include_hidden or not entry_name.startswith(".")):
                    entries.append(Entry(entry_name, is_dir, False))
        return sorted(entries)
    if is_local(path):
        with os.scandir(path) as scan:
            for entry in scan:
                if include_hidden or not entry.name.startswith("."):
                    entries.append(Entry(entry.name, _scandir_is_dir(entry), entry.is_symlink()))
        return sorted(entries)
    for name in _gfile().listdir(path):
        is_dir = name.endswith("/")
        name = name.rstrip("/")
        if not name or (name.startswith(".") and not include_hidden):
            continue
        if not is_dir and not posixpath.splitext(name)[1]:
            is_dir = _gfile().isdir(join(path, name))
        entries.append(Entry(name, is_dir, False))
    return sorted(entries)


def _scandir_is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a dangling symlink: report it as a file, reading it will fail visibly
        return False


def within(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when `path` is `root` or lies below it (local paths with symlinks resolved)."""
    root, path = strip_trailing_slash(os.fspath(root)), strip_trailing_slash(os.fspath(path))
    if is_local(root) != is_local(path):
        return False
    if is_local(root):
        root, path = os.path.realpath(root), os.path.realpath(path)
        return os.path.commonpath([root, path]) == root
    return path == root or path.startswith(root.rstrip("/") + "/")


def escapes_root(root: str, path: str) -> bool:
    """True when `path` is not inside `root` once `..` and (local) symlinks are resolved."""
    if is_local(path):
        real_root = os.path.realpath(root)
        real_path = os.path.realpath(path)
        return os.path.commonpath([real_root, real_path]) != real_root or real_path == real_root
    root = strip_trailing_slash(root)
    if not path.startswith(root + "/"):
        return True
    relative = posixpath.normpath(path[len(root) + 1 :])
    return relative == "." or relative.startswith("../") or relative == ".." or relative[0] == "/"


def copy_file(source: str, destination: str, *, client: Any = None) -> None:
    """Copies one file between any two of local / gs:// / another `tf.io.gfile` scheme."""
    if is_gcs(source) and is_gcs(destination):  # server-side: the bytes stay in the cloud
        source_blob = _blob(source, client)
        target_bucket, target_name = split_gcs(destination)
        gcs = client or default_gcs_client()
        source_blob.bucket.copy_blob(source_blob, gcs.bucket(target_bucket), target_name)
    elif is_gcs(source) and is_local(destination):
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
        _blob(source, client).download_to_filename(destination)
    elif is_local(source) and is_gcs(destination):
        _blob(destination, client).upload_from_filename(source)
    elif is_local(source) and is_local(destination):
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
        shutil.copyfile(source, destination)
    elif is_gcs(source) or is_gcs(destination):  # gs:// and another remote scheme
        write_bytes(destination, read_bytes(source, client=client), client=client)
    else:
        folder = posixpath.dirname(destination) if not is_local(destination) else None
        makedirs(folder or os.path.dirname(os.path.abspath(destination)))
        _gfile().copy(source, destination, overwrite=True)


def copy_tree(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    last: str | None = None,
    client: Any = None,
) -> list[str]:
    """Copies every file under `source` to `destination`, keeping relative paths.

    Args:
        last: relative path of a marker file (e.g. `COMPLETE`) copied after all others,
            so a reader that trusts the marker never sees a partial copy.

    Returns:
        The relative paths copied, in copy order.
    """
    source, destination = os.fspath(source), os.fspath(destination)
    files = list_files(source, client=client)
    if not files:
        raise FileNotFoundError(f"no files to copy under {source}")
    if last is not None and last in files:
        files = [name for name in files if name != last] + [last]
    for relative in files:
        copy_file(
            join(source, *relative.split("/")),
            join(destination, *relative.split("/")),
            client=client,
        )
    return files


def read_with_generation(uri: str | os.PathLike, *, client: Any = None) -> tuple[bytes | None, int]:
    """`(content, generation)`; `(None, 0)` when absent.

    The generation is the GCS object generation, or locally a fingerprint of the content:
    pass it to `write_if_generation_match` to write only if nobody wrote in between.
    """
    uri = os.fspath(uri)
    if not is_gcs(uri):
        try:
            data = read_bytes(uri)
        except FileNotFoundError:
            return None, 0
        return data, _fingerprint(data)
    from google.api_core import exceptions

    blob = _blob(uri, client)
    for _ in range(5):
        try:
            blob.reload()
            generation = int(blob.generation)
            return blob.download_as_bytes(if_generation_match=generation), generation
        except exceptions.NotFound:
            return None, 0
        except exceptions.PreconditionFailed:
            continue  # replaced between the metadata read and the download: read again
    raise PreconditionFailedError(f"{uri} keeps changing while being read")


def write_if_generation_match(
    uri: str | os.PathLike, data: bytes, generation: int, *, client: Any = None
) -> int:
    """Writes `data` only if the current generation is `generation` (0: must not exist).

    Returns:
        The new generation.

    Raises:
        PreconditionFailedError: somebody else wrote first (or holds the local lock).
    """
    uri = os.fspath(uri)
    if is_gcs(uri):
        from google.api_core import exceptions

        blob = _blob(uri, client)
        try:
            blob.upload_from_string(data, if_generation_match=generation)
        except exceptions.PreconditionFailed:
            raise PreconditionFailedError(
                f"{uri} changed since generation {generation} was read"
            ) from None
        return int(blob.generation)
    if not is_local(uri):  # another tf.io.gfile scheme: no precondition, compare then write
        current = read_with_generation(uri)[1]
        if current != generation:
            raise PreconditionFailedError(f"{uri} changed since generation {generation} was read")
        write_bytes(uri, data)
        return _fingerprint(data)
    with _local_lock(uri + ".lock"):
        try:
            current = _fingerprint(read_bytes(uri))
        except FileNotFoundError:
            current = 0
        if current != generation:
            raise PreconditionFailedError(f"{uri} changed since generation {generation} was read")
        _replace_local(uri, data)
    return _fingerprint(data)


def _fingerprint(data: bytes) -> int:
    # Never 0: 0 means "absent".
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") | 1


@contextlib.contextmanager
def _local_lock(path: str) -> Iterator[None]:
    """An exclusive lock file; refuses at once (no waiting) while another writer holds it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for attempt in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                age = time.time() - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if attempt == 0 and age > STALE_LOCK_SECONDS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            raise PreconditionFailedError(
                f"{path} is held by another writer (remove it if no writer is running)"
            ) from None
    else:
        raise PreconditionFailedError(f"{path} is held by another writer")
    try:
        os.write(descriptor, f"{os.getpid()}\n".encode())
        os.close(descriptor)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
