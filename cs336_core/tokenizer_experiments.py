"""The handout's tokenizer experiments (section 2.7): compression ratio (bytes/token) of each tokenizer
on sampled documents of each corpus, the cross case included, throughput, and the time to encode the
Pile. (Training a tokenizer and profiling it, section 2.5, is `cs336_core.tokenizer_profile`.)

Two samples per corpus. The handout's: `documents` documents drawn at random (10: on short web-like
documents about a kilobyte in all, too little for a stable ratio). And a large one: whole documents
from the start of the corpus's files, in order, until `throughput_bytes` (1 MB in the asset), on
which the compression ratio is measured again and the throughput is timed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from cs336_core import bpe
from cs336_core.corpora.documents import iter_documents, sample_documents
from cs336_core.files import PathLike


def bytes_per_token(tokenizer: bpe.Tokenizer, documents: list[str]) -> tuple[int, int]:
    """(bytes, tokens) of encoding `documents`; their ratio is the compression ratio."""
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    n_tokens = sum(len(tokenizer.encode(d)) for d in documents)
    return n_bytes, n_tokens


def throughput(tokenizer: bpe.Tokenizer, text: str) -> float:
    """Bytes per second of encoding `text` in this process."""
    start = time.perf_counter()
    tokenizer.encode(text)
    return len(text.encode("utf-8")) / max(time.perf_counter() - start, 1e-9)


def large_sample(paths: Sequence[PathLike], n_bytes: int) -> tuple[list[str], list[dict]]:
    """Whole documents from `paths` in order (the next file when one runs out) until `n_bytes` of
    UTF-8; returns them and, per file used, {"file": name, "bytes": bytes taken}."""
    documents: list[str] = []
    sources: list[dict] = []
    total = 0
    for path in paths:
        taken = 0
        for document in iter_documents(path):
            if total >= n_bytes:
                break
            size = len(document.encode("utf-8"))
            documents.append(document)
            total, taken = total + size, taken + size
        if taken:
            sources.append({"file": Path(path).name, "bytes": taken})
        if total >= n_bytes:
            break
    return documents, sources


def _timed_bytes_per_token(tokenizer: bpe.Tokenizer, documents: list[str]) -> tuple[int, int, float]:
    """(bytes, tokens, bytes per second) of encoding `documents` one by one, timed cold (first encode)."""
    start = time.perf_counter()
    n_bytes, n_tokens = bytes_per_token(tokenizer, documents)
    return n_bytes, n_tokens, n_bytes / max(time.perf_counter() - start, 1e-9)


def compare_tokenizers(tokenizers: Mapping[str, bpe.Tokenizer], texts: Mapping[str, PathLike], *,
                       documents: int, throughput_bytes: int, pile_bytes: int, seed: int = 0,
                       more_texts: Mapping[str, Sequence[PathLike]] | None = None,
                       log: Callable[[str], None] | None = None) -> dict[tuple[str, str], dict]:
    """(tokenizer name, text name) -> one row of the handout's 2.7 table, for every pair.

    `documents` documents are sampled from each of `texts` (the same ones for every tokenizer): the
    handout's sample (`documents`, `bytes`, `tokens`, `bytes_per_token`). The large sample of a text
    is `throughput_bytes` of whole documents from it, continued from its `more_texts` files when it
    is shorter (`large_*` fields, with `large_sources`: the bytes taken per file). Throughput is
    timed on the tokenizer's own text's large sample, and `pile_825gb_hours` projects it to
    `pile_bytes`, single-process.
    """
    samples = {name: sample_documents(path, n=documents, seed=seed) for name, path in texts.items()}
    large = {name: large_sample([path, *(more_texts or {}).get(name, ())], throughput_bytes)
             for name, path in texts.items()}
    rows = {}
    for tok_name, tokenizer in tokenizers.items():
        # The tokenizer's own text first, so its throughput is timed with cold caches.
        order = sorted(texts, key=lambda name: name != tok_name)
        measured = {text_name: _timed_bytes_per_token(tokenizer, large[text_name][0]) for text_name in order}
        bytes_per_second = measured[tok_name][2]
        for text_name in texts:
            n_bytes, n_tokens = bytes_per_token(tokenizer, samples[text_name])
            large_bytes, large_tokens, _ = measured[text_name]
            rows[tok_name, text_name] = {
                "tokenizer": f"{tok_name} ({len(tokenizer.vocab):,})",
                "text": text_name,
                "documents": len(samples[text_name]),
                "bytes": n_bytes,
                "tokens": n_tokens,
                "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3),
                "large_documents": len(large[text_name][0]),
                "large_bytes": large_bytes,
                "large_tokens": large_tokens,
                "large_bytes_per_token": round(large_bytes / max(large_tokens, 1), 3),
                "large_sources": large[text_name][1],
                "throughput_mb_per_s": round(bytes_per_second / 1e6, 3),
                "pile_825gb_hours": round(pile_bytes / bytes_per_second / 3600, 2),  # 3+ digits at 100 MB/s
            }
        if log:
            log(f"{tok_name} tokenizer: {bytes_per_second / 1e6:.2f} MB/s on {measured[tok_name][0]:,} bytes")
    return rows
