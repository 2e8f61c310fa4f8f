"""One writer per run directory: `RunLock`, an exclusive fcntl.flock held for the whole run.

A second process training into the same out_dir fails at once with RunLockedError naming the
directory and the holder's pid, before it reads or writes anything. The lock file sits beside the
directory (`<parent>/.<name>.lock`), not in it, so it stays put while the directory is archived.
The lock is re-entrant within one thread: a caller that already holds it (the asset layer, which
archives under it) can call `train`. Under torchrun only rank 0 takes it, as only rank 0 writes.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class RunLockedError(RuntimeError):
    """Another process (or another thread of this one) is training into the run directory."""


# The run locks this process holds: lock file -> [descriptor, owning thread id, depth]. flock belongs
# to an open file description, so a second open() of the same file here would conflict with the
# first; re-entry reuses the held descriptor instead.
_HELD_LOCKS: dict[Path, list] = {}
_HELD_LOCKS_GUARD = threading.Lock()


def _forget_locks_in_child() -> None:
    # A forked child shares the parent's lock descriptions: it closes its copies, so the lock ends
    # when the parent lets go and the child never takes the parent's lock for its own.
    global _HELD_LOCKS_GUARD
    for descriptor, _, _ in _HELD_LOCKS.values():
        os.close(descriptor)
    _HELD_LOCKS.clear()
    _HELD_LOCKS_GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class RunLock:
    """The exclusive lock of one writer on a run directory, held from `with` to its end.

    The lock file is `<parent>/.<name>.lock`, beside the directory, so it stays in place while the
    directory is archived under it. A second process fails at once with RunLockedError naming the
    directory and the holder's pid. Re-entrant within one thread: a caller holding it can call
    `train` on the same directory; another thread of the same process is refused like a process.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir).resolve()
        self.path = self.out_dir.parent / f".{self.out_dir.name}.lock"

    def __enter__(self) -> "RunLock":
        with _HELD_LOCKS_GUARD:
            held = _HELD_LOCKS.get(self.path)
            if held is None:
                _HELD_LOCKS[self.path] = [self._acquire(), threading.get_ident(), 1]
            elif held[1] == threading.get_ident():
                held[2] += 1
            else:
                raise RunLockedError(f"{self.out_dir} is in use by another thread of this process "
                                     f"(pid {os.getpid()}); train into another out_dir")
        return self

    def _acquire(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise RunLockedError(
                f"{self.out_dir} is in use by another training process (pid {holder}; lock file {self.path}): "
                "wait for it to finish or stop it, or train into another out_dir") from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return descriptor

    def __exit__(self, *exc_info) -> None:
        with _HELD_LOCKS_GUARD:
            held = _HELD_LOCKS[self.path]
            held[2] -= 1
            if held[2] == 0:
                del _HELD_LOCKS[self.path]
                os.close(held[0])  # closing the last descriptor releases the flock
