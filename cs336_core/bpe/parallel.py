"""Pools that map over a file's chunks in order, with a bounded number in flight.

`map_in_order` runs Python workers in processes; each kind of worker (counting pre-tokens in
`counting`, encoding in `file_encoding`) keeps its own per-process state, set by its own
initializer. `map_in_threads` runs the C accelerator's calls, which release the GIL, in threads,
each call with one of a fixed set of states (a C table, a C encoder) that no two threads share.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
from pathlib import Path
from typing import Iterable, Iterator

from cs336_core.bpe.pretokenize import INVALID_UTF8_POLICIES


def file_job_arguments(input_path: str | os.PathLike, num_workers: int | None, invalid_utf8: str) -> tuple[Path, int]:
    """Check the options shared by `train_bpe` and `encode_file`; returns (path, worker count),
    the worker count defaulting to every core.

    >>> file_job_arguments("corpus.txt", 2, "replace")
    (PosixPath('corpus.txt'), 2)
    """
    if invalid_utf8 not in INVALID_UTF8_POLICIES:
        raise ValueError(f"invalid_utf8 must be one of {INVALID_UTF8_POLICIES}, got {invalid_utf8!r}")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    return Path(input_path), num_workers or os.cpu_count() or 1


def map_in_order(function, items: Iterable, num_workers: int, initializer=None, initargs=()) -> Iterator:
    """`map(function, items)` over worker processes, in order, with a bounded number in flight.

    `Pool.imap` would read the whole input iterator ahead; here at most 2 items per worker are
    pending, so memory does not grow with the input. One worker runs in this process (after
    `initializer(*initargs)`), with no pool at all.

    >>> list(map_in_order(abs, [-1, 2, -3], num_workers=1))
    [1, 2, 3]
    """
    if num_workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    import multiprocessing

    with multiprocessing.get_context().Pool(
        num_workers, initializer=_init_worker_process, initargs=(initializer, initargs)
    ) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        # Let the workers exit on their own: `Pool.__exit__` terminates them with SIGTERM, which a
        # forked worker ignores when it inherited a Python SIGTERM handler (Dagster installs one
        # while a run executes), and the pool would then wait on it forever.
        pool.close()
        pool.join()


def _init_worker_process(initializer, initargs) -> None:
    # Workers forked from a host that handles SIGTERM/SIGINT itself (Dagster, a web server) must
    # still die on the pool's SIGTERM when the parent fails, and must leave Ctrl-C to the parent.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def map_in_threads(function, items: Iterable, states: list) -> Iterator:
    """`function(state, item)` for each item, in order, over `len(states)` threads; each call gets
    a state that no other running call has. At most 2 items per thread are pending.

    >>> list(map_in_threads(lambda state, x: state + x, [1, 2, 3], [10, 10]))
    [11, 12, 13]
    """
    from concurrent.futures import ThreadPoolExecutor

    free: queue.SimpleQueue = queue.SimpleQueue()
    for state in states:
        free.put(state)

    def call(item):
        state = free.get()  # as many threads as states: one is always free here
        try:
            return function(state, item)
        finally:
            free.put(state)

    with ThreadPoolExecutor(len(states), thread_name_prefix="bpe") as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(call, item))
                if len(pending) >= 2 * len(states):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # on an error (or a consumer that stops early) drop the chunks not yet started
            for future in pending:
                future.cancel()
