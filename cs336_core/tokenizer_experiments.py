"""The handout's tokenizer experiments (section 2.7): compression ratio (bytes/token) of each tokenizer
on sampled documents of each corpus, the cross case included, throughput, and the time to encode the
Pile. (Training a tokenizer and profiling it, section 2.5, is `cs336_core.tokenizer_profile`.)"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from cs336_core import tokenization
from cs336_core.corpora.documents import sample_documents
from cs336_core.files import PathLike


def bytes_per_token(tokenizer: tokenization.Tokenizer, documents: list[str]) -> tuple[int, int]:
    """(bytes, tokens) of encoding `documents`; their ratio is the compression ratio."""
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    n_tokens = sum(len(tokenizer.encode(d)) for d in documents)
    return n_bytes, n_tokens


def throughput(tokenizer: tokenization.Tokenizer, text: str) -> float:
    """Bytes per second of encoding `text` in this process."""
    start = time.perf_counter()
    tokenizer.encode(text)
    return len(text.encode("utf-8")) / max(time.perf_counter() - start, 1e-9)


def compare_tokenizers(tokenizers: Mapping[str, tokenization.Tokenizer], texts: Mapping[str, PathLike], *,
                       documents: int, throughput_bytes: int, pile_bytes: int, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> dict[tuple[str, str], dict]:
    """(tokenizer name, text name) -> one row of the handout's 2.7 table, for every pair.

    `documents` documents are sampled from each of `texts` (the same ones for every tokenizer);
    throughput is timed on the first `throughput_bytes` of the tokenizer's own text, and
    `pile_825gb_hours` projects it to `pile_bytes`, single-process.
    """
    samples = {name: sample_documents(path, n=documents, seed=seed) for name, path in texts.items()}
    rows = {}
    for tok_name, tokenizer in tokenizers.items():
        with open(texts[tok_name], encoding="utf-8", errors="replace") as f:
            bytes_per_second = throughput(tokenizer, f.read(throughput_bytes))
        for text_name in texts:
            n_bytes, n_tokens = bytes_per_token(tokenizer, samples[text_name])
            rows[tok_name, text_name] = {
                "tokenizer": f"{tok_name} ({len(tokenizer.vocab):,})",
                "text": text_name,
                "documents": len(samples[text_name]),
                "bytes": n_bytes,
                "tokens": n_tokens,
                "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3),
                "throughput_mb_per_s": round(bytes_per_second / 1e6, 3),
                "pile_825gb_hours": round(pile_bytes / bytes_per_second / 3600, 1),
            }
        if log:
            log(f"{tok_name} tokenizer: {bytes_per_second / 1e6:.2f} MB/s")
    return rows
