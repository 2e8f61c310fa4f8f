"""Files shared by every reader and writer in cs336_core: atomic writes and possibly-gzipped reads.

A reader (or a crash) must never see a half-written vocab, token file or checkpoint, so every
artifact is written to a temporary file in the destination directory, fsynced, and renamed over
the destination in one `os.replace` (atomic on POSIX and Windows within one filesystem).

Inputs may be gzipped: `open_binary` recognises gzip by its magic bytes, never by the file name.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

PathLike = str | os.PathLike
GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20  # bytes per read when streaming a file

# mkstemp creates files 0600; artifacts should get the permissions an ordinary open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)


def prepare_destination(destination: PathLike) -> Path:
    """Create the directories a file at `destination` needs; a clear error if it cannot be written.

    Checked first because mkdir's "File exists", or a temporary file beside a directory's own
    parent, would hide what is wrong with the path.
    """
    destination = Path(destination)
    if destination.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file to write", str(destination))
    for parent in (destination.parent, *destination.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"not a directory, so {destination} cannot be written",
                                         str(parent))
            break
    destination.parent.mkdir(parents=True, exist_ok=True)
    return destination


@contextlib.contextmanager
def atomic_path(destination: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; rename it over `destination` on success.

    On any exception the temporary file is removed and `destination` is left untouched.
    """
    destination = prepare_destination(destination)
    # The writer's pid in the name lets remove_stale_partials tell a killed writer's leftover from
    # a file another process is writing right now.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.{os.getpid()}.", suffix=".partial",
                                    dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_copy(src: PathLike, destination: PathLike, *, link: bool = False) -> Path:
    """Put a copy of `src` at `destination` atomically; returns `destination`.

    With `link`, a hard link is made instead where the filesystem allows one (no second copy of a
    multi-GB file); elsewhere it falls back to copying. Either way `destination` appears whole.
    """
    if link and Path(destination).is_file() and os.path.samefile(src, destination):
        # Already linked; renaming another link over it would be a no-op that leaves the link behind.
        return Path(destination)
    with atomic_path(destination) as tmp:
        if link:
            try:
                tmp.unlink()
                os.link(src, tmp)
                return Path(destination)
            except OSError:  # another filesystem, or links not allowed: copy
                pass
        shutil.copyfile(src, tmp)
    return Path(destination)


def atomic_write_bytes(destination: PathLike, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def atomic_write_text(destination: PathLike, text: str) -> Path:
    return atomic_write_bytes(destination, text.encode("utf-8"))


def atomic_write_json(destination: PathLike, obj: Any) -> Path:
    return atomic_write_text(destination, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


_PARTIAL_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.partial")


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; never guess there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def remove_stale_partials(directory: PathLike) -> list[Path]:
    """Remove atomic_path temporary files in `directory` whose writer process no longer runs.

    Only names of the form `.{name}.{pid}.{random}.partial` are touched, and only when that pid is
    gone, so a write in progress (in this or another process) is never disturbed. Returns the paths
    removed. A missing directory is not an error (nothing was written there yet).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        match = _PARTIAL_NAME.fullmatch(path.name)
        if match and path.is_file() and not _pid_alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
                path.unlink()
                removed.append(path)
    return removed


def is_gzip(path: PathLike) -> bool:
    """Whether the file at `path` holds gzip data, by its first two bytes (the name says nothing).

    >>> _ = Path("story.txt").write_bytes(gzip.compress(b"Once upon a time"))
    >>> is_gzip("story.txt"), is_gzip(__file__)
    (True, False)
    """
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: PathLike) -> BinaryIO:
    """Open `path` for reading bytes, decompressing it on the fly when it holds gzip data.

    Gzip is recognised by its magic bytes, so a gzipped file named `corpus.txt` reads as its text
    and a plain file named `notes.gz` as itself. A missing path raises FileNotFoundError.

    >>> _ = Path("story.txt").write_bytes(gzip.compress(b"Once upon a time"))
    >>> with open_binary("story.txt") as f:
    ...     f.read()
    b'Once upon a time'
    """
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def sha256_file(path: PathLike) -> str:
    """The sha256 of the bytes of the file at `path` as hex, streamed.

    >>> _ = Path("empty.txt").write_bytes(b"")
    >>> sha256_file("empty.txt")
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
