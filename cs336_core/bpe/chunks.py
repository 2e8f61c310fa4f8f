"""Reading a corpus in bounded chunks, each cut where both sides pre-tokenize independently.

Training and `encode_file` hand such chunks to worker processes: a cut right after a special token
(the text is split there anyway), or else at a newline that cannot change GPT-2's pre-tokens, gives
exactly the result of processing the whole file at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterator

from cs336_core.files import is_gzip, open_binary

# Chunks handed to worker processes: big enough to amortise inter-process traffic, small enough
# that memory stays bounded (a few chunks in flight per worker). Read from this module when used,
# so a test may set them here.
CHUNK_BYTES = 4 << 20
MIN_CHUNK_BYTES = 256 << 10


def open_corpus(path: Path) -> tuple[BinaryIO, int]:
    """Open a corpus for reading bytes (gzip, recognised by its magic bytes, is decompressed on the
    fly); returns the stream and the bytes it will give, for progress: 0 (unknown) for gzip."""
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if not path.is_file():
        raise ValueError(f"input path is not a file: {path}")
    return open_binary(path), 0 if is_gzip(path) else path.stat().st_size


def last_safe_cut(buffer: bytes, special_re, max_special_len: int) -> int:
    """The largest position at which `buffer` can be cut so both halves tokenize independently.

    Preferably right after a special token occurrence (the text is split there anyway); only a
    match ending at least `max_special_len` bytes before the end is final, since a longer
    overlapping special token could still start inside the unseen text. Without one, right after
    a newline that follows printable ASCII and precedes an ASCII letter: GPT-2's regex emits that
    newline as its own pre-token and starts a fresh one at the letter whatever comes next.
    Returns 0 if there is no safe cut yet.

    >>> last_safe_cut(b"one.\\nTwo words\\n  three and more", None, 0)  # not before the spaces
    5
    """
    limit = len(buffer) - max_special_len
    if limit <= 0:
        return 0
    plain_text_end = limit
    if special_re is not None:
        last_final_end = 0
        for match in special_re.finditer(buffer):
            if match.end() > limit:
                plain_text_end = match.start()
                break
            last_final_end = match.end()
        if last_final_end:
            return last_final_end
    newline = buffer.rfind(b"\n", 1, plain_text_end - 1)
    while newline > 0:
        before, after = buffer[newline - 1], buffer[newline + 1]
        if 0x21 <= before <= 0x7E and (0x41 <= after <= 0x5A or 0x61 <= after <= 0x7A):
            return newline + 1
        newline = buffer.rfind(b"\n", 1, newline)
    return 0


def chunk_size(total_bytes: int, workers: int) -> int:
    """About four chunks per worker (so small files still spread over workers), within bounds.

    >>> chunk_size(1 << 30, 8) == CHUNK_BYTES, chunk_size(1 << 20, 2) == MIN_CHUNK_BYTES
    (True, True)
    """
    if not total_bytes:  # unknown (compressed input)
        return CHUNK_BYTES
    return min(CHUNK_BYTES, max(MIN_CHUNK_BYTES, total_bytes // (4 * workers)))


def iter_chunks(stream, special_re, max_special_len: int, chunk_bytes: int,
                first_chunk_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield `(offset, chunk)` pieces of a byte stream, each cut at a safe boundary (see above).

    Memory stays at about two chunks unless the text has no safe cut for a long stretch (then
    about twice that stretch).

    >>> import io
    >>> list(iter_chunks(io.BytesIO(b"a.\\nBe.\\nCee"), None, 0, 4))
    [(0, b'a.\\n'), (3, b'Be.\\n'), (7, b'Cee')]
    """
    pending = b""
    offset = 0
    target = first_chunk_bytes or chunk_bytes
    while True:
        block = stream.read(target)
        if not block:
            if pending:
                yield offset, pending
            return
        pending += block
        if len(pending) < target:
            continue
        cut = last_safe_cut(pending, special_re, max_special_len)
        if cut:
            yield offset, pending[:cut]
            offset += cut
            pending = pending[cut:]
            target = chunk_bytes
        else:
            # No safe cut yet (one long line): read as much again before the next look, so the
            # copies and rescans of `pending` stay O(n) in all rather than O(n**2 / chunk).
            target = len(pending)
