"""The first phase of BPE training: how often each pre-token occurs in a corpus, counted in parallel.

The file is read in safe-cut chunks (`chunks`). Each chunk is split on the special tokens and the
rest pre-tokenized with GPT-2's pattern and counted:

  * with the C accelerator (`_fasttrain`), by worker threads, each into its own C table, without
    the GIL (`count_pretokens_native`); this thread reads ahead and the tables are added up last;
  * otherwise by worker processes running the `regex` module (`_count_chunk`), whose per-chunk
    counts this process adds up: the reference.
"""

from __future__ import annotations

import collections
from pathlib import Path

from cs336_core.bpe.accelerator import FASTTRAIN
from cs336_core.bpe.chunks import chunk_size, iter_chunks, open_corpus
from cs336_core.bpe.parallel import map_in_order, map_in_threads
from cs336_core.bpe.pretokenize import decode_utf8, max_special_bytes, pretokens, special_pattern
from cs336_core.progress import ProgressFn


def count_pretokens(path: Path, special_tokens: list[str], num_workers: int, invalid_utf8: str = "error",
                    progress: ProgressFn | None = None) -> collections.Counter[bytes]:
    """Counts of the pre-tokens (as UTF-8 bytes) of the file at `path`, never across a special
    token; reports the phase "pretokenize" in bytes read. An empty file is a ValueError.

    >>> _ = Path("corpus.txt").write_text("low low lower<|endoftext|> low")
    >>> count_pretokens(Path("corpus.txt"), ["<|endoftext|>"], num_workers=1)
    Counter({b' low': 2, b'low': 1, b' lower': 1})
    """
    if FASTTRAIN is not None:
        return collections.Counter(count_pretokens_native(path, special_tokens, num_workers, invalid_utf8, progress).to_dict())
    stream, total_bytes = open_corpus(path)
    word_counts: collections.Counter[bytes] = collections.Counter()
    done_bytes = 0
    with stream:
        chunks = iter_chunks(stream, special_pattern(special_tokens, as_bytes=True), max_special_bytes(special_tokens),
                             chunk_size(total_bytes, num_workers))
        for chunk_length, chunk_counts in map_in_order(_count_chunk, chunks, num_workers, _CountWorker.start,
                                                       (special_tokens, invalid_utf8, str(path))):
            word_counts.update(chunk_counts)
            done_bytes += chunk_length
            if progress is not None:
                progress("pretokenize", done_bytes, total_bytes)
    if done_bytes == 0:
        raise ValueError(f"input file is empty: {path}")
    return word_counts


class _CountWorker:
    """What a counting process needs for every chunk, set once per process by `start` (the pool's
    initializer); the encoding workers of `file_encoding` keep their own."""

    current: _CountWorker

    def __init__(self, special_tokens: list[str], invalid_utf8: str, source: str):
        self.special_re = special_pattern(special_tokens)
        self.invalid_utf8 = invalid_utf8
        self.source = source

    @classmethod
    def start(cls, special_tokens: list[str], invalid_utf8: str, source: str) -> None:
        cls.current = cls(special_tokens, invalid_utf8, source)


def _count_chunk(job: tuple[int, bytes]) -> tuple[int, dict[bytes, int]]:
    """(chunk length, counts of its pre-tokens as UTF-8 bytes); the text is split on special tokens first."""
    worker = _CountWorker.current
    offset, chunk = job
    text = decode_utf8(chunk, offset, worker.invalid_utf8, worker.source)
    special_re = worker.special_re
    counts: collections.Counter[str] = collections.Counter()
    # Special tokens land at odd indices of the split and take part in nothing.
    segments = special_re.split(text)[::2] if special_re is not None else [text]
    for segment in segments:
        counts.update(pretokens(segment))
    return len(chunk), {word.encode("utf-8"): count for word, count in counts.items()}


def count_pretokens_native(path: Path, special_tokens: list[str], num_workers: int, invalid_utf8: str = "error",
                           progress: ProgressFn | None = None):
    """`count_pretokens` by the C accelerator, as a `_fasttrain.PretokenCounts` (what
    `_fasttrain.train_merges` takes): `num_workers` threads count chunks without the GIL, each
    into its own table, and the tables are added up at the end."""
    specials = tuple(token.encode("utf-8") for token in special_tokens)
    stream, total_bytes = open_corpus(path)
    tables = [FASTTRAIN.PretokenCounts() for _ in range(num_workers)]

    def count(table, job: tuple[int, bytes]) -> int:
        _count_chunk_native(table, job, specials, invalid_utf8, str(path))
        return len(job[1])

    done_bytes = 0
    with stream:
        chunks = iter_chunks(stream, special_pattern(special_tokens, as_bytes=True), max_special_bytes(special_tokens),
                             chunk_size(total_bytes, num_workers))
        for chunk_length in map_in_threads(count, chunks, tables):
            done_bytes += chunk_length
            if progress is not None:
                progress("pretokenize", done_bytes, total_bytes)
    if done_bytes == 0:
        raise ValueError(f"input file is empty: {path}")
    counts = tables[0]
    for table in tables[1:]:
        counts.update(table)
    return counts


def _count_chunk_native(table, job: tuple[int, bytes], specials: tuple[bytes, ...], invalid_utf8: str, source: str) -> None:
    offset, chunk = job
    valid = table.count(chunk, specials)
    if valid == len(chunk):
        return
    # Not UTF-8: the reference decoding raises its error naming the file offset, or gives the
    # U+FFFD text that the pure path counts.
    text = decode_utf8(chunk, offset, invalid_utf8, source)
    repaired = text.encode("utf-8")
    if table.count(repaired, specials) != len(repaired):
        raise RuntimeError(f"{source}: the C and Python UTF-8 decoders disagree near byte {offset + valid}")
