"""Atomic file writes shared by every writer in cs336_core.

A reader (or a crash) must never see a half-written vocab, token file or checkpoint, so every
artifact is written to a temporary file in the destination directory, fsynced, and renamed over
the destination in one `os.replace` (atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

PathLike = str | os.PathLike

# mkstemp creates files 0600; artifacts should get the permissions an ordinary open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(destination: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; rename it over `destination` on success.

    On any exception the temporary file is removed and `destination` is left untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent)
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


def atomic_write_bytes(destination: PathLike, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def atomic_write_text(destination: PathLike, text: str) -> Path:
    return atomic_write_bytes(destination, text.encode("utf-8"))


def atomic_write_json(destination: PathLike, obj: Any) -> Path:
    return atomic_write_text(destination, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
