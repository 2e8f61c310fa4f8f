"""The first phase of BPE training: how often each pre-token occurs in a corpus, counted in parallel.

The file is read in safe-cut chunks (`chunks`); each worker process splits its chunk on the special
tokens, pre-tokenizes the rest with GPT-2's regex and returns the counts of its unique pre-tokens,
which this process adds up.
"""

from __future__ import annotations

import collections
from pathlib import Path

from cs336_core.bpe.chunks import chunk_size, iter_chunks, open_corpus
from cs336_core.bpe.parallel import map_in_order
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
