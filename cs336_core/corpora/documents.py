"""Documents of a corpus: the file format, streaming, splitting, sampling, statistics, a sanity check.

A corpus is a text file (or a gzip of one) in the TinyStoriesV2 format: every document is followed
by "\\n<|endoftext|>\\n". Everything here streams, in constant memory whatever the corpus size.
"""

from __future__ import annotations

import codecs
import gzip
import random
import re
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from cs336_core.files import READ_CHUNK, PathLike, atomic_path, open_binary
from cs336_core.progress import ProgressFn

ENDOFTEXT = "<|endoftext|>"
PREVIEW_CHARS = 600


def document_record(document: str, separator: str = ENDOFTEXT) -> str:
    """A document as it is stored in a corpus file.

    >>> document_record("Tom ran.")
    'Tom ran.\\n<|endoftext|>\\n'
    """
    return f"{document}\n{separator}\n"


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` cut to about `limit` characters, marked when cut.

    >>> preview("Once upon a time", limit=9)
    'Once upon ...'
    """
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def _open_corpus(path: PathLike) -> BinaryIO:
    """A corpus opened for reading bytes (a gzip file decompressed); a missing one named as such."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    return open_binary(path)


def _iter_document_bytes(path: PathLike, separator: str = ENDOFTEXT) -> Iterator[bytes]:
    """Documents as bytes, whitespace around each stripped, empty ones skipped; constant memory."""
    sep = separator.encode("utf-8")
    buffer = bytearray()
    scanned = 0  # buffer[:scanned] holds no separator, so a huge document is not rescanned per chunk
    with _open_corpus(path) as f:
        while chunk := f.read(READ_CHUNK):
            buffer += chunk
            if buffer.find(sep, scanned) == -1:
                scanned = max(0, len(buffer) - len(sep) + 1)
                continue
            *documents, rest = bytes(buffer).split(sep)
            buffer, scanned = bytearray(rest), 0
            for document in documents:
                if document := document.strip():
                    yield document
    if tail := bytes(buffer).strip():
        yield tail


def iter_documents(path: PathLike, separator: str = ENDOFTEXT) -> Iterator[str]:
    """Stream the documents of a corpus (invalid UTF-8 is replaced, never fatal)."""
    for document in _iter_document_bytes(path, separator):
        yield document.decode("utf-8", errors="replace")


def split_documents(src: PathLike, train_out: PathLike, valid_out: PathLike, *, valid_fraction: float,
                    seed: int = 0, separator: str = ENDOFTEXT, progress: ProgressFn | None = None) -> dict:
    """Split `src` by document into train and validation files (deterministic, streamed, atomic).

    Each document goes to validation with probability `valid_fraction`; with two or more documents
    neither split is left empty (the last document fills an empty side).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be strictly between 0 and 1, got {valid_fraction}")
    rng = random.Random(seed)
    sep = separator.encode("utf-8")
    counts = {"train": 0, "valid": 0}
    sizes = {"train": 0, "valid": 0}
    total_bytes = Path(src).stat().st_size if Path(src).is_file() else 0
    with atomic_path(train_out) as train_tmp, atomic_path(valid_out) as valid_tmp, \
            open(train_tmp, "wb") as train_f, open(valid_tmp, "wb") as valid_f:
        outputs = {"train": train_f, "valid": valid_f}

        def emit(split: str, document: bytes) -> None:
            record = document + b"\n" + sep + b"\n"
            outputs[split].write(record)
            counts[split] += 1
            sizes[split] += len(record)

        previous: bytes | None = None
        for document in _iter_document_bytes(src, separator):
            if previous is not None:  # one document of lookahead, so the last one can fill a gap
                emit("valid" if rng.random() < valid_fraction else "train", previous)
                if progress and (counts["train"] + counts["valid"]) % 10000 == 0:
                    progress("split documents", sizes["train"] + sizes["valid"], total_bytes)
            previous = document
        if previous is not None:
            if counts["valid"] == 0 and counts["train"] > 0:
                split = "valid"
            elif counts["train"] == 0 and counts["valid"] > 0:
                split = "train"
            else:
                split = "valid" if rng.random() < valid_fraction else "train"
            emit(split, previous)
        else:  # raised inside the `with`, so neither output is written
            raise ValueError(f"no documents in {src} (separator {separator!r})")
    return {"train_documents": counts["train"], "valid_documents": counts["valid"],
            "train_bytes": sizes["train"], "valid_bytes": sizes["valid"]}


def sample_documents(path: PathLike, n: int = 10, seed: int = 0, separator: str = ENDOFTEXT) -> list[str]:
    """`n` documents drawn uniformly without replacement in one streaming pass (reservoir sampling),
    returned in corpus order."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    for index, document in enumerate(iter_documents(path, separator)):
        if index < n:
            reservoir.append((index, document))
        else:
            slot = rng.randint(0, index)
            if slot < n:
                reservoir[slot] = (index, document)
    return [document for _, document in sorted(reservoir)]


def corpus_stats(path: PathLike, separator: str = ENDOFTEXT) -> dict:
    """Bytes on disk, number of documents and a preview of the first document."""
    documents = 0
    first = ""
    for document in iter_documents(path, separator):
        first = first or document
        documents += 1
    return {"path": str(path), "bytes": Path(path).stat().st_size, "documents": documents,
            "preview": preview(first)}


_HTML_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)


def _scan_text(path: PathLike, separator: bytes) -> tuple[int, int, bytes, bool, bool]:
    """One streamed pass: (size, invalid bytes, first 4 KiB, any non-whitespace, separator seen)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    size = invalid = 0
    first, tail = b"", b""
    has_text, has_separator = False, not separator
    with _open_corpus(path) as f:
        while chunk := f.read(READ_CHUNK):
            size += len(chunk)
            first = first if len(first) >= 4096 else first + chunk[:4096]
            has_text = has_text or bool(chunk.strip())
            # Replacement characters the bytes did not spell out themselves are decode errors.
            invalid += decoder.decode(chunk).count("\ufffd") - chunk.count("\ufffd".encode()) + chunk.count(b"\0")
            if not has_separator:  # `tail` catches a separator split between two chunks
                has_separator = separator in tail + chunk
                tail = (tail + chunk)[-(len(separator) - 1):] if len(separator) > 1 else b""
    invalid += decoder.decode(b"", final=True).count("\ufffd")
    return size, invalid, first, has_text, has_separator


def check_plausible_text(path: PathLike, *, separator: str | None = None,
                         max_invalid_fraction: float = 1e-3) -> dict:
    """Raise ValueError naming `path` unless it looks like a text corpus; streamed, constant memory.

    A corpus must hold some non-whitespace text, must not be an HTML page (a server's error page
    saved as the corpus), must decode as UTF-8 (at most `max_invalid_fraction` of its bytes may be
    invalid or NUL: a stray bad byte in a large scraped corpus is tolerated, binary or UTF-16 data
    is not) and, when `separator` is given, must contain it. A .gz file is checked decompressed.
    Returns the decompressed size and the number of invalid bytes.
    """
    try:
        size, invalid, first, has_text, has_separator = _scan_text(path, (separator or "").encode("utf-8"))
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} starts like gzip but is not valid gzip data ({error})") from error
    if not has_text:
        raise ValueError(f"{path} is empty ({size} bytes, no text): not a corpus")
    if _HTML_START.match(first):
        raise ValueError(f"{path} is an HTML page, not a text corpus (it starts {first[:80]!r}); "
                         "a server answered with a web page instead of the file?")
    if invalid > max_invalid_fraction * size:
        raise ValueError(f"{path} is not UTF-8 text: {invalid} of its {size} bytes are invalid UTF-8 or NUL "
                         f"(more than max_invalid_fraction={max_invalid_fraction:g})")
    if not has_separator:
        raise ValueError(f"{path} has no {separator!r} document separator in {size} bytes; "
                         "every document of this corpus should be followed by one")
    return {"bytes": size, "invalid_bytes": invalid}
