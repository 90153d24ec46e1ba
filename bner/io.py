"""One place that opens paths: local files or any fsspec URL (``gs://``, ``memory://``, ...).

Every write that others may read (checkpoints, results, exports) is atomic from a
reader's point of view: the data goes to a temporary name first and is renamed when
complete, so a half-written file is never picked up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO

# fsspec is imported only for non-local paths: reading a local metadata.json needs the
# standard library alone.


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def publish_mode(path: str) -> None:
    """Give a file written under a temporary name the mode a plain ``open`` would have (0666 less the umask)."""
    os.chmod(path, 0o666 & ~_UMASK)


def is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _fs(path: str):
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(str(path))
    except ImportError as e:  # e.g. gs:// without gcsfs
        raise ValueError(f"{path}: this kind of path needs an extra package ({e}); for gs:// run pip install 'bner[gcs]'") from None
    # Object-store file systems cache listings per process; another process (a training
    # job, an exporter) may have written since, and a stale "no new version" would stick.
    fs.invalidate_cache()
    return fs, root


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return os.path.join(base, *parts)
    return "/".join([str(base).rstrip("/"), *parts])


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (links and ``./`` resolved locally; remote paths compared as written)."""
    if is_local(a) != is_local(b):
        return False
    if is_local(a):
        a, b = (str(p).removeprefix("file://") for p in (a, b))
        try:
            return os.path.samefile(a, b)
        except OSError:  # one of them does not exist yet
            return os.path.realpath(a) == os.path.realpath(b)
    return str(a).rstrip("/") == str(b).rstrip("/")


def within(folder: str, name: str) -> str:
    """``folder``/``name``, refused when it is a link that leads out of ``folder``.

    Model folders come from users and buckets: a tokenizer.json that links to /etc/passwd
    or another tenant's files must not be read as if it belonged to the model. (Object
    stores have no links; their paths are only joined.)
    """
    path = join(folder, name)
    if is_local(path):
        strip = lambda p: str(p)[len("file://"):] if str(p).startswith("file://") else str(p)  # noqa: E731
        root = os.path.realpath(strip(folder))
        if os.path.commonpath([root, os.path.realpath(strip(path))]) != root:
            raise ValueError(f"{path}: leads outside the model folder (a link, or a name with a path in it); "
                             "copy the file into the folder instead")
    return path


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    fs, root = _fs(path)
    return fs.exists(root)


def listdir(path: str) -> list[str]:
    """Names (not paths) of the entries of a folder, sorted."""
    if is_local(path):
        return sorted(os.listdir(path))
    fs, root = _fs(path)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        fs, root = _fs(path)
        fs.makedirs(root, exist_ok=True)


def open_file(path: str, mode: str = "r", **kwargs) -> IO:
    if is_local(path):
        return open(path, mode, **kwargs)
    import fsspec

    return fsspec.open(str(path), mode, **kwargs).open()


def read_text(path: str) -> str:
    # utf-8-sig drops a byte-order mark if there is one.
    with open_file(path, "r", encoding="utf-8-sig", newline="") as f:
        return f.read()


def numbered_lines(path: str, error: type[ValueError] = ValueError) -> Iterator[tuple[int, str]]:
    """A UTF-8 text file's lines one at a time (a file of any size), numbered from 1, without their
    line breaks or the first line's byte-order mark. A line that is not UTF-8 raises ``error``
    naming the file and line."""
    with open_file(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise error(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    if is_local(path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
        try:
            # mkstemp makes the file private (0600); give it the mode open() would, so a server
            # running as another user can read an export's metadata.json.
            publish_mode(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
    else:
        import fsspec

        # Object stores publish an object only when its upload completes.
        with fsspec.open(str(path), "wb") as f:
            f.write(data)


def remove(path: str) -> None:
    if is_local(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    else:
        fs, root = _fs(path)
        if fs.exists(root):
            fs.rm(root, recursive=True)


def folder_size(path: str) -> int | None:
    """Bytes under ``path`` (files only), or None where it cannot be told."""
    try:
        if is_local(path):
            return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
        fs, root = _fs(path)
        return int(fs.du(root))
    except OSError:
        return None


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path holding the file or folder at ``path`` (downloaded if remote)."""
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bner-") as tmp:
        target = os.path.join(tmp, os.path.basename(str(path).rstrip("/")) or "data")
        fs, root = _fs(path)
        fs.get(root, target, recursive=True)
        yield target


@contextlib.contextmanager
def staged_directory(final_path: str, publish_last: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield a local folder to fill; publish it at ``final_path`` only when the block succeeds.

    Locally the folder is built beside its destination and renamed into place. An object
    store has no rename, and a "folder" is visible as soon as one object under it exists:
    the folder is built locally, uploaded under a temporary name, then copied to its
    final name with the files named in ``publish_last`` copied after all others, so a
    reader that waits for those files (bner waits for ``metadata.json``) never loads a
    partial folder.
    """
    if is_local(final_path):
        parent = os.path.dirname(os.path.abspath(final_path))
        os.makedirs(parent, exist_ok=True)
        remove_abandoned_staging(parent)
        tmp = os.path.join(parent, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{os.path.basename(final_path)}")
        os.makedirs(tmp)
        try:
            yield tmp
            if os.path.exists(final_path):
                shutil.rmtree(final_path)
            os.replace(tmp, final_path)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
        return
    with tempfile.TemporaryDirectory(prefix="bner-stage-") as tmp:
        yield tmp
        fs, root = _fs(final_path)
        root = root.rstrip("/")
        staging = f"{root}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            fs.put(tmp.rstrip("/") + "/", staging, recursive=True)
            if fs.exists(root):
                fs.rm(root, recursive=True)
            # Others first (by name), then publish_last in its order.
            for name in sorted(_relative_files(tmp), key=lambda n: (publish_last.index(n) + 1 if n in publish_last else 0, n)):
                fs.copy(f"{staging}/{name}", f"{root}/{name}")
        finally:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)


def remove_abandoned_staging(parent: str) -> None:
    """Remove staging folders left by a process that was killed mid-write (its pid no longer runs).

    Each staging folder carries its writer's pid; one whose writer still runs (another
    export under way) is left alone. Local folders only: pids mean nothing across machines.
    """
    for name in os.listdir(parent):
        match = re.fullmatch(r"\.tmp-(\d+)-[0-9a-f]{8}-.+", name)
        if match and not _process_runs(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def local_checkpoint(prefix: str) -> Iterator[str]:
    """A local prefix for a TensorFlow checkpoint (``prefix.index``, ``prefix.data-*``).

    TensorFlow reads ``gs://`` itself but no other fsspec store, and not a Cloud Storage
    emulator; downloading the few files first works the same everywhere.
    """
    if is_local(prefix):
        yield prefix
        return
    fs, root = _fs(prefix)
    with tempfile.TemporaryDirectory(prefix="bner-ckpt-") as tmp:
        for path in fs.glob(root + ".*"):
            fs.get(path, os.path.join(tmp, path.rsplit("/", 1)[-1]))
        yield os.path.join(tmp, root.rsplit("/", 1)[-1])


def upload_folder(local_folder: str, remote_folder: str) -> None:
    """Copy a local folder's files to ``remote_folder`` (each object replaced whole)."""
    fs, root = _fs(remote_folder)
    for name in _relative_files(local_folder):
        fs.put_file(os.path.join(local_folder, name), f"{root.rstrip('/')}/{name}")


def _relative_files(local_folder: str) -> list[str]:
    """Every file under a local folder, as a "/"-separated path relative to it."""
    return [
        os.path.relpath(os.path.join(folder, name), local_folder).replace(os.sep, "/")
        for folder, _, files in os.walk(local_folder)
        for name in files
    ]


def file_sha256(path: str) -> str:
    """SHA-256 of a local file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
