"""Byte-level BPE (CS336 assignment 1, section 2): training, encoding, decoding, on-disk format.

Training follows the handout's section 2.4 exactly:
  * the initial vocabulary is the special tokens (ids 0..k-1) followed by the 256 single bytes;
  * the text is split on the special tokens first, then pre-tokenized with the GPT-2 regex, and no
    pair ever crosses a special token or a pre-token boundary;
  * every merge takes the most frequent pair, ties going to the lexicographically greater pair of
    byte strings (`max` over `(bytes, bytes)`), until `vocab_size` is reached or no pair is left.

Scaling: the corpus is read in bounded chunks cut at special tokens (or, failing that, at a
newline that cannot change pre-tokenization), chunks are pre-tokenized in parallel worker
processes that return counts of unique pre-tokens, and the merge loop updates pair counts
incrementally through an index pair -> pre-tokens and a lazily-invalidated heap. No input makes
BPE quadratic: a pre-token longer than 64 bytes (minified code, base64) is merged through a linked
list of its symbols, with each pair's positions in training and a heap of merge ranks in encoding.

Invalid UTF-8 in a corpus: by default an error naming the byte offset (`invalid_utf8="error"`);
`invalid_utf8="replace"` decodes it to U+FFFD instead (like `bytes.decode(errors="replace")`).

On-disk format: GPT-2's released format. `vocab.json` maps each token, written through GPT-2's
byte-to-unicode table, to its id; `merges.txt` has a `#version: 0.2` line and one `a b` merge per
line in rank order. Every byte value round-trips, and GPT-2's own encoder.json + vocab.bpe load.
"""

from __future__ import annotations

import argparse
import array
import collections
import gzip
import heapq
import itertools
import json
import os
import re
import signal
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import regex

from cs336_core.files import atomic_path, atomic_write_text
from cs336_core.progress import ConsoleProgress, ProgressFn

GPT2_PRETOKENIZE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKENIZE = regex.compile(GPT2_PRETOKENIZE_PATTERN)
# The same pattern restricted to ASCII text, where \p{L} is [A-Za-z], \p{N} is [0-9] and \s is
# [ \t\n\v\f\r] (re.ASCII's \s, also `regex`'s ASCII whitespace): `re` runs it about twice as fast.
_PRETOKENIZE_ASCII = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)


def _pretokenize(text: str) -> list[str]:
    """GPT-2 pre-tokens of `text` (`str.isascii` is O(1): CPython records it per string)."""
    return (_PRETOKENIZE_ASCII if text.isascii() else _PRETOKENIZE).findall(text)


# --- optional C accelerator (cs336_core/_fastbpe.c, built by setup.py when a compiler exists) ---
# It splits pure-ASCII stretches into pre-tokens and looks them up in the tokenizer's cache in C,
# calling back into this module's BPE and regex path for new pre-tokens and non-ASCII text; the
# pure-Python code below stays the reference. CS336_PURE_PYTHON=1 forces the pure path.
def _load_accelerator():
    if os.environ.get("CS336_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from cs336_core import _fastbpe
    except ImportError:
        return None
    return _fastbpe


_FASTBPE = _load_accelerator()
# --- end of accelerator loading ---


Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]

# Chunks handed to worker processes: big enough to amortise inter-process traffic, small enough
# that memory stays bounded (a few chunks in flight per worker).
CHUNK_BYTES = 4 << 20
MIN_CHUNK_BYTES = 256 << 10
INVALID_UTF8_POLICIES = ("error", "replace")


# ----------------------------------------------------------------------------------------------
# Validation and text splitting shared by training and encoding


def _validate_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    if isinstance(special_tokens, (str, bytes)):  # list("<eos>") would be five one-letter specials
        raise TypeError(f"special_tokens must be a list of str, got the {type(special_tokens).__name__} "
                        f"{special_tokens!r}; for one special token pass [{special_tokens!r}]")
    specials = list(special_tokens or [])
    seen: set[str] = set()
    for token in specials:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special token {token!r} must be a non-empty str")
        try:
            token.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"special token {token!r} is not valid text (cannot be UTF-8 encoded: {err.reason})") from None
        if token in seen:
            raise ValueError(f"duplicate special token {token!r}")
        seen.add(token)
    return specials


def _special_pattern(specials: Iterable[str], as_bytes: bool = False):
    """An alternation of the special tokens, longest first so overlapping ones resolve greedily."""
    ordered = sorted(specials, key=len, reverse=True)
    if not ordered:
        return None
    if as_bytes:
        return regex.compile(b"(" + b"|".join(regex.escape(s.encode("utf-8")) for s in ordered) + b")")
    return regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")")


def _decode_utf8(chunk: bytes, offset: int, invalid_utf8: str, source: str) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        if invalid_utf8 == "replace":
            return chunk.decode("utf-8", errors="replace")
        raise ValueError(
            f"{source}: invalid UTF-8 at byte offset {offset + err.start} ({err.reason}); "
            f"pass invalid_utf8='replace' to decode it as U+FFFD"
        ) from None


def _open_binary(path: Path):
    """Open a corpus for reading; `.gz` files are decompressed on the fly."""
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if not path.is_file():
        raise ValueError(f"input path is not a file: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _input_size(path: Path) -> int:
    """Bytes to process, for progress; 0 (unknown) for compressed input."""
    return 0 if path.suffix == ".gz" else path.stat().st_size


def _last_safe_cut(buffer: bytes, special_re, max_special_len: int) -> int:
    """The largest position at which `buffer` can be cut so both halves tokenize independently.

    Preferably right after a special token occurrence (the text is split there anyway); only a
    match ending at least `max_special_len` bytes before the end is final, since a longer
    overlapping special token could still start inside the unseen text. Without one, right after
    a newline that follows printable ASCII and precedes an ASCII letter: GPT-2's regex emits that
    newline as its own pre-token and starts a fresh one at the letter whatever comes next.
    Returns 0 if there is no safe cut yet.
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


def _chunk_size(total_bytes: int, workers: int) -> int:
    """About four chunks per worker (so small files still spread over workers), within bounds."""
    if not total_bytes:  # unknown (compressed input)
        return CHUNK_BYTES
    return min(CHUNK_BYTES, max(MIN_CHUNK_BYTES, total_bytes // (4 * workers)))


def _iter_chunks(stream, special_re, max_special_len: int, chunk_bytes: int,
                 first_chunk_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield `(offset, chunk)` pieces of a byte stream, each cut at a safe boundary (see above).

    Memory stays at about two chunks unless the text has no safe cut for a long stretch (then
    about twice that stretch).
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
        cut = _last_safe_cut(pending, special_re, max_special_len)
        if cut:
            yield offset, pending[:cut]
            offset += cut
            pending = pending[cut:]
            target = chunk_bytes
        else:
            # No safe cut yet (one long line): read as much again before the next look, so the
            # copies and rescans of `pending` stay O(n) in all rather than O(n**2 / chunk).
            target = len(pending)


def _map_in_order(function, items: Iterable, num_workers: int, initializer=None, initargs=()) -> Iterator:
    """`map(function, items)` over worker processes, in order, with a bounded number in flight.

    `Pool.imap` would read the whole input iterator ahead; here at most 2 items per worker are
    pending, so memory does not grow with the input.
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


def _file_job_arguments(input_path: str | os.PathLike, num_workers: int | None, invalid_utf8: str) -> tuple[Path, int]:
    """Check the options shared by `train_bpe` and `encode_file`; returns (path, worker count)."""
    if invalid_utf8 not in INVALID_UTF8_POLICIES:
        raise ValueError(f"invalid_utf8 must be one of {INVALID_UTF8_POLICIES}, got {invalid_utf8!r}")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    return Path(input_path), num_workers or os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------
# Training


_worker: dict = {}  # per-process state set by the pool initializers


def _init_pretokenize_worker(special_tokens: list[str], invalid_utf8: str, source: str) -> None:
    _worker.update(special_re=_special_pattern(special_tokens), invalid_utf8=invalid_utf8, source=source)


def _count_pretokens(job: tuple[int, bytes]) -> tuple[int, dict[bytes, int]]:
    """(chunk length, counts of its pre-tokens as UTF-8 bytes); the text is split on special tokens first."""
    offset, chunk = job
    text = _decode_utf8(chunk, offset, _worker["invalid_utf8"], _worker["source"])
    special_re = _worker["special_re"]
    counts: collections.Counter[str] = collections.Counter()
    # Special tokens land at odd indices of the split and take part in nothing.
    segments = special_re.split(text)[::2] if special_re is not None else [text]
    for segment in segments:
        counts.update(_pretokenize(segment))
    return len(chunk), {word.encode("utf-8"): count for word, count in counts.items()}


def _reversed_order_key(token: bytes) -> str:
    """A string whose order is the reverse of `token`'s byte-string order.

    `heapq` is a min-heap but ties must go to the *greater* pair; each byte b becomes chr(256 - b)
    and a terminator chr(257) makes a proper prefix sort after its extensions.
    """
    return "".join([chr(256 - b) for b in token]) + chr(257)


def _merge_pretoken_counts(word_counts: dict[bytes, int], vocab: Vocab, num_merges: int,
                           progress: ProgressFn | None = None) -> Merges:
    """Run up to `num_merges` BPE merges over counted pre-tokens; extends `vocab` in place.

    Consumes `word_counts` (emptied as the words are converted, to bound memory).
    Pair counts are updated only around each merged occurrence. The heap holds, for every live
    pair, an entry whose count is at least the true one: increases push a new entry, decreases
    push nothing, and a popped entry whose count is too high is pushed back with the true count.
    So the first popped entry that is exact is the most frequent pair (ties broken by the key).
    Pairs are keyed by the int `left * stride + right` (a tuple would cost 64 bytes per pair).
    Words longer than LONG_WORD_SYMBOLS are kept apart (`_LongWords`) and merge in time
    proportional to the occurrences merged rather than to their length.
    """
    stride = len(vocab) + num_merges
    byte_id = {token[0]: token_id for token_id, token in vocab.items() if len(token) == 1 and token_id >= len(vocab) - 256}
    words: list[list[int]] = []
    counts: list[int] = []
    while word_counts:
        word, count = word_counts.popitem()
        if len(word) >= 2:  # a single byte has no pair to merge
            words.append([byte_id[b] for b in word])
            counts.append(count)

    pair_counts: dict[int, int] = collections.defaultdict(int)
    pair_words: dict[int, list[int]] = collections.defaultdict(list)  # may hold stale or repeated indices
    long_words = _LongWords(stride, max((len(word) for word in words if len(word) > LONG_WORD_SYMBOLS), default=0))
    for index, word in enumerate(words):
        count = counts[index]
        if len(word) > LONG_WORD_SYMBOLS:
            long_words.add(index, word, count, pair_counts)
            words[index] = []  # (its symbols live in long_words now)
            continue
        for a, b in zip(word, word[1:]):
            pair_counts[a * stride + b] += count
            pair_words[a * stride + b].append(index)

    order_key = {token_id: _reversed_order_key(token) for token_id, token in vocab.items()}
    heap = [(-count, order_key[key // stride], order_key[key % stride], key) for key, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: Merges = []
    while len(merges) < num_merges and heap:
        negative_count, key_a, key_b, key = heapq.heappop(heap)
        count = pair_counts.get(key, 0)
        if count != -negative_count:
            if count > 0:  # the count went down since this entry was pushed
                heapq.heappush(heap, (-count, key_a, key_b, key))
            continue
        a, b = divmod(key, stride)
        new_id = len(vocab)
        vocab[new_id] = vocab[a] + vocab[b]
        order_key[new_id] = _reversed_order_key(vocab[new_id])
        merges.append((vocab[a], vocab[b]))
        increased = _apply_merge(words, counts, pair_counts, pair_words, stride, a, b, new_id, long_words)
        for new_key in increased:
            heapq.heappush(heap, (-pair_counts[new_key], order_key[new_key // stride], order_key[new_key % stride], new_key))
        if len(merges) % 1000 == 0:  # forget pairs that are gone, so memory tracks live pairs
            for gone in [key for key, count in pair_counts.items() if count == 0]:
                del pair_counts[gone]
                pair_words.pop(gone, None)
                long_words.positions.pop(gone, None)
        if progress is not None and len(merges) % 100 == 0:
            progress("merge", len(merges), num_merges)
    if progress is not None:  # finished, possibly early because no pair was left
        progress("merge", len(merges), len(merges))
    return merges


def _apply_merge(words: list[list[int]], counts: list[int], pair_counts: dict[int, int],
                 pair_words: dict[int, list[int]], stride: int, a: int, b: int, new_id: int,
                 long_words: _LongWords | None = None) -> set[int]:
    """Merge (a, b) into `new_id` in every word holding it; update pair counts around each site.

    Returns the keys of the pairs (all containing `new_id`) whose counts went up.
    """
    increased: set[int] = set()
    merged_key = a * stride + b
    if long_words is not None:
        long_words.merge(a, b, new_id, counts, pair_counts, increased)
    for index in set(pair_words.pop(merged_key, ())):
        word = words[index]  # merged in place, left to right
        count = counts[index]
        i = 0
        while True:
            try:
                i = word.index(a, i)
            except ValueError:
                break
            if i + 1 == len(word) or word[i + 1] != b:
                i += 1
                continue
            pair_counts[merged_key] -= count
            replaced = []  # (lost pair, gained pair) on each side of this occurrence
            if i > 0:  # the left neighbour now pairs with the new token
                left = word[i - 1]
                replaced.append(((b if left == new_id else left) * stride + a, left * stride + new_id))
            # The right neighbour, unless it starts the next occurrence (handled as its left).
            if i + 2 < len(word) and not (word[i + 2] == a and i + 3 < len(word) and word[i + 3] == b):
                right = word[i + 2]
                replaced.append((b * stride + right, new_id * stride + right))
            for lost_key, gained_key in replaced:
                pair_counts[lost_key] -= count
                pair_counts[gained_key] += count
                pair_words[gained_key].append(index)
                increased.add(gained_key)
            word[i:i + 2] = [new_id]
            i += 1
    return increased


# Training words longer than this many bytes go to `_LongWords`: the list path scans a word and
# splices the list once per occurrence, O(len) each, so one long pre-token (a line of minified
# code, base64, a long table rule) cost O(len**2). Shorter words keep the list path, which is
# faster and smaller for them.
LONG_WORD_SYMBOLS = 64


class _LongWords:
    """The long training words, merged through the recorded positions of each pair.

    Each word is three arrays over its original byte positions: `symbols` (-1 once merged into
    its left neighbour) and the `prev`/`next` links of the live ones, so positions keep their
    left-to-right order. `positions[pair key]` lists, as `word index << bits | position`, where
    that pair started when it appeared; entries go stale when a neighbour merges and are checked
    when used. A merge thus touches only the occurrences of its pair, in words and in order.
    """

    def __init__(self, stride: int, longest: int):
        self.stride = stride
        self.bits = longest.bit_length()  # positions take the low bits of an entry
        self.words: dict[int, tuple[array.array, array.array, array.array]] = {}
        self.positions: dict[int, array.array] = collections.defaultdict(lambda: array.array("q"))

    def add(self, index: int, word: list[int], count: int, pair_counts: dict[int, int]) -> None:
        n, stride, positions = len(word), self.stride, self.positions
        link_type = "i" if n < 1 << 31 else "q"  # 4 bytes a link (a list of ints takes 8 + 28)
        self.words[index] = (array.array("i", word), array.array(link_type, range(-1, n - 1)),
                             array.array(link_type, range(1, n + 1)))  # n: no next symbol
        base = index << self.bits
        for position, (a, b) in enumerate(zip(word, word[1:])):
            pair_counts[a * stride + b] += count
            positions[a * stride + b].append(base | position)

    def merge(self, a: int, b: int, new_id: int, counts: list[int], pair_counts: dict[int, int],
              increased: set[int]) -> None:
        """Merge the occurrences of (a, b) as `_apply_merge` does in a list, with the same counting."""
        stride, bits, positions = self.stride, self.bits, self.positions
        merged_key = a * stride + b
        mask = (1 << bits) - 1
        for entry in sorted(positions.pop(merged_key, ())):  # word by word, left to right
            index, i = entry >> bits, entry & mask
            symbols, prev, next_ = self.words[index]
            end = len(symbols)
            j = next_[i]
            if symbols[i] != a or j == end or symbols[j] != b:
                continue  # stale: a neighbour merged since this pair was recorded here
            count = counts[index]
            pair_counts[merged_key] -= count
            replaced = []  # (lost pair, gained pair, its position) on each side of this occurrence
            h = prev[i]
            if h >= 0:  # the left neighbour now pairs with the new token
                left = symbols[h]
                replaced.append(((b if left == new_id else left) * stride + a, left * stride + new_id, h))
            k = next_[j]
            if k != end:
                right = symbols[k]
                after = next_[k]
                # The right neighbour, unless it starts the next occurrence (handled as its left).
                if not (right == a and after != end and symbols[after] == b):
                    replaced.append((b * stride + right, new_id * stride + right, i))
                prev[k] = i
            for lost_key, gained_key, position in replaced:
                pair_counts[lost_key] -= count
                pair_counts[gained_key] += count
                positions[gained_key].append(index << bits | position)
                increased.add(gained_key)
            symbols[i] = new_id
            symbols[j] = -1
            next_[i] = k


def _merge_word(word: list[int], a: int, b: int, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of (a, b), left to right, by `new_id`."""
    merged: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str], *,
              num_workers: int | None = None, progress: ProgressFn | None = None,
              invalid_utf8: str = "error") -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file (`.gz` is read decompressed).

    Returns `vocab` (id -> bytes: special tokens, then the 256 bytes, then one token per merge)
    and `merges` in order of creation. `num_workers` defaults to every core.
    """
    specials = _validate_special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    if vocab_size < 256 + len(specials):
        raise ValueError(f"vocab_size {vocab_size} is below 256 bytes + {len(specials)} special tokens = {256 + len(specials)}")
    path, workers = _file_job_arguments(input_path, num_workers, invalid_utf8)
    total_bytes = _input_size(path)
    word_counts: collections.Counter[bytes] = collections.Counter()
    done_bytes = 0
    special_re_bytes = _special_pattern(specials, as_bytes=True)
    max_special_len = max((len(s.encode("utf-8")) for s in specials), default=0)
    with _open_binary(path) as stream:
        chunks = _iter_chunks(stream, special_re_bytes, max_special_len, _chunk_size(total_bytes, workers))
        for chunk_length, chunk_counts in _map_in_order(_count_pretokens, chunks, workers, _init_pretokenize_worker,
                                                        (specials, invalid_utf8, str(path))):
            word_counts.update(chunk_counts)
            done_bytes += chunk_length
            if progress is not None:
                progress("pretokenize", done_bytes, total_bytes)
    if done_bytes == 0:
        raise ValueError(f"input file is empty: {path}")

    vocab: Vocab = {i: s.encode("utf-8") for i, s in enumerate(specials)}
    vocab.update({len(specials) + b: bytes([b]) for b in range(256)})
    merges = _merge_pretoken_counts(word_counts, vocab, vocab_size - len(vocab), progress)
    return vocab, merges


# ----------------------------------------------------------------------------------------------
# Serialization (GPT-2's released format)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable, non-whitespace character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {char: b for b, char in bytes_to_unicode().items()}


def _token_to_text(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join([table[b] for b in token])


def _text_to_token(text: str, source: str) -> bytes:
    table = _unicode_to_bytes()
    try:
        return bytes([table[char] for char in text])
    except KeyError as err:
        raise ValueError(f"{source}: {text!r} contains {err.args[0]!r}, which is not in GPT-2's byte-to-unicode table") from None


def save_vocab_merges(vocab: Vocab, merges: Merges, vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> None:
    """Write `vocab.json` and `merges.txt` in GPT-2's format, each atomically."""
    encoded: dict[str, int] = {}
    for token_id in sorted(vocab):
        text = _token_to_text(vocab[token_id])
        if text in encoded:
            raise ValueError(f"tokens {encoded[text]} and {token_id} are both {vocab[token_id]!r}; vocab.json needs unique tokens")
        encoded[text] = token_id
    lines = ["#version: 0.2"] + [f"{_token_to_text(a)} {_token_to_text(b)}" for a, b in merges]
    vocab_text = json.dumps(encoded, ensure_ascii=False, indent=0) + "\n"
    atomic_write_text(vocab_path, vocab_text)
    atomic_write_text(merges_path, "\n".join(lines) + "\n")


def load_vocab_merges(vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                      special_tokens: Iterable[str] | None = None) -> tuple[Vocab, Merges]:
    """Read files written by `save_vocab_merges`, or GPT-2's own `encoder.json` + `vocab.bpe`.

    The two files must agree, or a ValueError names both: the vocabulary holds the 256 bytes, the
    two parts and the result of every merge, and besides those only tokens that no merge could
    have made (special tokens such as GPT-2's <|endoftext|>). A token that joins two bytes or
    merged tokens, yet that no merge makes, is what a `merges.txt` cut short leaves behind.
    `special_tokens` (str) are allowed whatever they look like.
    """
    for path in (vocab_path, merges_path):
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
    vocab = _read_vocab(vocab_path)
    merges, line_numbers = _read_merges(merges_path)
    specials = {token.encode("utf-8") for token in _validate_special_tokens(special_tokens)}
    _check_vocab_and_merges_agree(vocab, merges, line_numbers, specials, vocab_path, merges_path)
    return vocab, merges


def _read_text(path: str | os.PathLike) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte offset {err.start}: {err.reason}); "
                         f"the file is corrupt or not a tokenizer file") from None


def _read_vocab(vocab_path: str | os.PathLike) -> Vocab:
    try:
        pairs = json.loads(_read_text(vocab_path), object_pairs_hook=lambda pairs: pairs)
    except json.JSONDecodeError as err:
        raise ValueError(f"{vocab_path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); "
                         f"the file is truncated or corrupt") from None
    except RecursionError:
        raise ValueError(f"{vocab_path}: JSON nested too deeply to be a vocabulary; the file is corrupt") from None
    if not isinstance(pairs, list) or any(not isinstance(pair, tuple) for pair in pairs):
        raise ValueError(f"{vocab_path}: expected a JSON object token -> id")
    vocab: Vocab = {}
    texts: dict[str, int] = {}
    for text, token_id in pairs:
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise ValueError(f"{vocab_path}: token {text!r} has id {token_id!r}; ids must be non-negative integers")
        if token_id in vocab:
            raise ValueError(f"{vocab_path}: id {token_id} is given twice ({_token_to_text(vocab[token_id])!r} and {text!r})")
        if text in texts:
            raise ValueError(f"{vocab_path}: token {text!r} appears twice (ids {texts[text]} and {token_id})")
        texts[text] = token_id
        vocab[token_id] = _text_to_token(text, str(vocab_path))
    return vocab


def _read_merges(merges_path: str | os.PathLike) -> tuple[Merges, list[int]]:
    """The merges in rank order, and the line each one is on."""
    merges: Merges = []
    line_numbers: list[int] = []
    for line_number, line in enumerate(_read_text(merges_path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{merges_path}:{line_number}: expected two tokens separated by one space, got {line!r}")
        merges.append((_text_to_token(parts[0], str(merges_path)), _text_to_token(parts[1], str(merges_path))))
        line_numbers.append(line_number)
    return merges, line_numbers


def _check_vocab_and_merges_agree(vocab: Vocab, merges: Merges, line_numbers: list[int], specials: set[bytes],
                                  vocab_path, merges_path) -> None:
    tokens = set(vocab.values())
    missing_bytes = [b for b in range(256) if bytes([b]) not in tokens]
    if missing_bytes:
        raise ValueError(f"{vocab_path}: the vocabulary lacks {len(missing_bytes)} of the 256 single bytes "
                         f"(e.g. {bytes([missing_bytes[0]])!r}); the file is corrupt")
    for (a, b), line_number in zip(merges, line_numbers):
        for part, role in ((a, "its left part"), (b, "its right part"), (a + b, "the token it makes")):
            if part not in tokens:
                raise ValueError(f"{merges_path}:{line_number}: {role}, {part!r}, is not in {vocab_path}; "
                                 f"the two files do not belong together")
    # Every other token must be one no merge could have made: a token that is two bytes-or-merged
    # tokens joined is a merge that merges.txt lacks (a file cut short at a line boundary).
    regular = {a + b for a, b in merges} | {bytes([b]) for b in range(256)}
    others = [(token_id, token) for token_id, token in sorted(vocab.items()) if token not in regular]
    unmade = [(token_id, token) for token_id, token in others if token not in specials
              and any(token[:cut] in regular and token[cut:] in regular for cut in range(1, len(token)))]
    if unmade:
        token_id, token = unmade[0]
        raise ValueError(
            f"{vocab_path} ({len(vocab)} tokens) and {merges_path} ({len(merges)} merges) do not agree: "
            f"{len(unmade)} of the {len(others)} tokens beyond 256 bytes + {len(merges)} merged ones (e.g. "
            f"id {token_id}, {token!r}) join two other tokens, yet no merge makes them. {merges_path} looks "
            f"truncated, or the files come from different tokenizers (if those are special tokens, pass "
            f"them in special_tokens)")


# ----------------------------------------------------------------------------------------------
# Encoding and decoding


class Tokenizer:
    """Encode text to token ids and back with a trained vocabulary and merge list."""

    # A long stretch of never-repeating words must not grow the pre-token cache without bound.
    CACHE_LIMIT = 1 << 20
    # encode_iterable works on blocks of at least this many characters.
    STREAM_BLOCK_CHARS = 1 << 15
    # Pre-tokens longer than this many bytes go through `_bpe_long`; shorter ones through the
    # plain loop of `_bpe`, which is faster for them but costs O(n) a merge step.
    LONG_PRETOKEN_BYTES = 64

    def __init__(self, vocab: Vocab, merges: Merges, special_tokens: list[str] | None = None):
        self.vocab: Vocab = dict(vocab)
        self.merges: Merges = list(merges)
        self.special_tokens = _validate_special_tokens(special_tokens)
        # Lowest id wins if two ids share the same bytes.
        self.token_to_id: dict[bytes, int] = {token: i for i, token in sorted(self.vocab.items(), reverse=True)}
        for special in self.special_tokens:
            encoded = special.encode("utf-8")
            if encoded not in self.token_to_id:
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id] = encoded
                self.token_to_id[encoded] = new_id
        self.special_to_id = {s: self.token_to_id[s.encode("utf-8")] for s in self.special_tokens}
        self._special_re = _special_pattern(self.special_tokens)
        self._max_special_chars = max((len(s) for s in self.special_tokens), default=0)

        try:
            self._byte_ids = [self.token_to_id[bytes([b])] for b in range(256)]
        except KeyError:
            missing = next(b for b in range(256) if bytes([b]) not in self.token_to_id)
            raise ValueError(f"the vocabulary lacks the single byte {bytes([missing])!r}") from None
        # (left id, right id) -> merge rank; rank -> the merged token's id
        self._merge_ranks: dict[tuple[int, int], int] = {}
        self._merged_id_of_rank: list[int] = []
        for rank, (a, b) in enumerate(self.merges):
            ids = [self.token_to_id.get(t) for t in (a, b, a + b)]
            if None in ids:
                raise ValueError(f"merge {rank} ({a!r}, {b!r}) uses or makes a token missing from the vocabulary")
            self._merge_ranks.setdefault((ids[0], ids[1]), rank)  # a repeated merge never applies again
            self._merged_id_of_rank.append(ids[2])
        self._pretoken_cache: dict[str, list[int]] = {}
        # The C accelerator's copy of the merge table, or None for the pure-Python path.
        self._merger = _FASTBPE.Merger(self._byte_ids, self._merge_ranks, self._merged_id_of_rank) if _FASTBPE else None

    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                   special_tokens: list[str] | None = None) -> "Tokenizer":
        vocab, merges = load_vocab_merges(vocab_path, merges_path, special_tokens)
        return cls(vocab, merges, special_tokens)

    def save(self, vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> None:
        save_vocab_merges(self.vocab, self.merges, vocab_path, merges_path)

    def __reduce__(self):  # worker processes get the definition, not the caches
        return (type(self), (self.vocab, self.merges, self.special_tokens))

    @property
    def max_token_id(self) -> int:
        return max(self.vocab)

    def _bpe(self, pretoken: str) -> list[int]:
        """Token ids of one pre-token: apply the lowest-ranked merge present until none is.

        Every occurrence of that merge's pair is merged, left to right, before any pair it makes
        is considered (a pair it makes may have a lower rank in a merge list not made by training).
        (The accelerator's `Merger.bpe` in cs336_core/_fastbpe.c is this in C: keep them in step.)
        """
        ids = [self._byte_ids[b] for b in pretoken.encode("utf-8")]
        if len(ids) > self.LONG_PRETOKEN_BYTES:
            return self._bpe_long(ids)
        rank_of = self._merge_ranks.get
        merged_id_of_rank = self._merged_id_of_rank
        no_merge = len(merged_id_of_rank)
        ranks = [rank_of(pair, no_merge) for pair in zip(ids, ids[1:])]  # ranks[i]: pair (ids[i], ids[i + 1])
        while ranks:
            best = min(ranks)
            if best == no_merge:
                break
            merged = merged_id_of_rank[best]
            i = ranks.index(best)
            if ranks.count(best) > 1:  # ranks are unique per pair: this pair occurs more than once
                ids = _merge_word(ids, ids[i], ids[i + 1], merged)
                ranks = [rank_of(pair, no_merge) for pair in zip(ids, ids[1:])]
                continue
            # One occurrence: only the ranks of its two neighbouring pairs change.
            ids[i:i + 2] = [merged]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = rank_of((ids[i - 1], merged), no_merge)
            if i < len(ranks):
                ranks[i] = rank_of((merged, ids[i + 1]), no_merge)
        return ids

    def _bpe_long(self, ids: list[int]) -> list[int]:
        """`_bpe` for a long pre-token, in O(n log n) rather than O(n) for every merge step.

        The symbols form a linked list over their original positions, and a heap holds
        (rank, position) for every pair with a rank as it appears; an entry whose pair has changed
        since is skipped when it comes up. All entries of the lowest rank are taken off at once
        and merged in position order, so the pairs those merges make wait for the next round, as
        in `_bpe`.
        """
        rank_of = self._merge_ranks.get
        merged_id_of_rank = self._merged_id_of_rank
        n = len(ids)
        symbols = array.array("q", ids)  # -1 once merged into its left neighbour
        link_type = "i" if n < 1 << 31 else "q"
        prev = array.array(link_type, range(-1, n - 1))
        next_ = array.array(link_type, range(1, n + 1))  # n: no next symbol
        # Heap entries are `rank * n + position` (an int: cheaper than a tuple, and ordered alike).
        heap = [rank * n + i for i, pair in enumerate(zip(ids, ids[1:])) if (rank := rank_of(pair)) is not None]
        heapq.heapify(heap)
        while heap:
            rank = heap[0] // n
            positions = []
            while heap and heap[0] // n == rank:
                positions.append(heapq.heappop(heap) - rank * n)
            merged = merged_id_of_rank[rank]
            for i in positions:  # in increasing order: the heap orders equal ranks by position
                j = next_[i]
                if j == n or rank_of((symbols[i], symbols[j])) != rank:
                    continue  # stale (also when i itself was merged away: its symbol is -1)
                k = next_[j]
                symbols[i] = merged
                symbols[j] = -1
                next_[i] = k
                if k != n:
                    prev[k] = i
                    if (right_rank := rank_of((merged, symbols[k]))) is not None:
                        heapq.heappush(heap, right_rank * n + i)
                h = prev[i]
                if h >= 0 and (left_rank := rank_of((symbols[h], merged))) is not None:
                    heapq.heappush(heap, left_rank * n + h)
        return [symbol for symbol in symbols if symbol >= 0]

    def _encode_pretoken(self, pretoken: str) -> list[int]:
        bpe = self._bpe if self._merger is None else self._merger.bpe  # (the same algorithm in C)
        ids = self._pretoken_cache[pretoken] = bpe(pretoken)
        return ids

    def _encode_plain(self, text: str, out: list[int]) -> None:
        """Append the ids of text that holds no special token.

        Each distinct pre-token goes through BPE once; after that it is a cache hit, and the
        lookups and the concatenation run inside C (`map`, `chain`) rather than a Python loop.
        """
        cache = self._pretoken_cache
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        if self._merger is not None:  # the same work in C, handing non-ASCII text to _encode_from
            _FASTBPE.encode_plain(text, out, cache, self._merger, self._encode_from)
            return
        pretokens = _pretokenize(text)
        start = len(out)
        try:
            out += itertools.chain.from_iterable(map(cache.__getitem__, pretokens))
        except KeyError:  # some pre-tokens are new: encode them, then look all up again
            del out[start:]
            for pretoken in set(pretokens).difference(cache):
                self._encode_pretoken(pretoken)
            out += itertools.chain.from_iterable(map(cache.__getitem__, pretokens))

    def _encode_from(self, text: str, pos: int, out: list[int]) -> int:
        """Append the ids of the pre-tokens from `pos` (a pre-token boundary) on, until plain ASCII
        text follows again; returns where that is (a pre-token boundary too).

        The accelerator hands non-ASCII stretches to this, GPT-2's own regex (which looks only
        forward, so matching from a boundary gives the pre-tokens of the whole text).
        """
        cache = self._pretoken_cache
        for match in _PRETOKENIZE.finditer(text, pos):
            pretoken = match.group()
            out += cache.get(pretoken) or self._encode_pretoken(pretoken)
            end = match.end()
            if text[end:end + 2].isascii():
                return end
        return len(text)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        if self._special_re is None:
            self._encode_plain(text, ids)
            return ids
        parts = self._special_re.split(text)
        special_to_id = self.special_to_id
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(special_to_id[part])
            elif part:
                self._encode_plain(part, ids)
        return ids

    def _encode_stable_prefix(self, text: str) -> tuple[list[int], int]:
        """Encode the longest prefix of `text` whose tokens no continuation can change.

        Returns the ids and the prefix length. A special token is final once the longest special
        token would fit after it. Plain text that may still be followed by more plain text is
        final up to its last single space between two non-whitespace characters (GPT-2's regex
        always starts a pre-token there: the run before it, of letters, digits or punctuation,
        ends at the space; `str.isspace` covers all of the regex's whitespace), or
        else up to the pre-tokens ending well before the text seen so far (a pre-token depends
        on at most a few characters after it: GPT-2's regex looks ahead one character and its
        contractions are three long).
        """
        limit = len(text) - self._max_special_chars
        settled = 0  # text[:settled] is split into final special/plain segments
        plain_end = limit + 1 if self._special_re is not None else len(text)
        ids: list[int] = []
        if self._special_re is not None:
            for match in self._special_re.finditer(text):
                if match.end() > limit:
                    plain_end = match.start()
                    break
                self._encode_plain(text[settled:match.start()], ids)
                ids.append(self.special_to_id[match.group()])
                settled = match.end()
        plain_end = max(plain_end, settled)
        space = text.rfind(" ", settled + 1, max(plain_end - 1, 0))  # (a negative end would count from the back)
        while space > settled:
            if not text[space - 1].isspace() and not text[space + 1].isspace():
                self._encode_plain(text[settled:space], ids)
                return ids, space
            space = text.rfind(" ", settled + 1, space)
        stable_end = plain_end - 8
        for match in _PRETOKENIZE.finditer(text, settled, plain_end):
            if match.end() > stable_end:
                break
            pretoken = match.group()
            ids += self._pretoken_cache.get(pretoken) or self._encode_pretoken(pretoken)  # (never cleared here)
            settled = match.end()
        return ids, settled

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily encode a stream of strings; yields exactly `encode("".join(iterable))`.

        Memory is bounded by the block size plus twice the longest pre-token, not by the input.
        """
        pieces: list[str] = []
        pending_chars = 0
        attempt_chars = self.STREAM_BLOCK_CHARS
        for piece in iterable:
            pieces.append(piece)
            pending_chars += len(piece)
            if pending_chars < attempt_chars:
                continue
            text = "".join(pieces)
            ids, settled = self._encode_stable_prefix(text)
            yield from ids
            rest = text[settled:]
            pieces, pending_chars = [rest], len(rest)
            # Each attempt rescans what it could not settle (a pre-token still open, such as a long
            # run of letters): waiting for that to double keeps the rescans O(n) in all, not O(n**2).
            attempt_chars = max(self.STREAM_BLOCK_CHARS, 2 * len(rest))
        yield from self.encode("".join(pieces))

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to text; malformed UTF-8 becomes U+FFFD, an unknown id raises ValueError."""
        vocab = self.vocab
        ids = list(ids)
        try:
            data = b"".join([vocab[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not _hashable_in(i, vocab))
            raise ValueError(f"token id {bad!r} is not in the vocabulary (ids 0..{max(vocab)})") from None
        return data.decode("utf-8", errors="replace")


def _hashable_in(key, mapping) -> bool:
    try:
        return key in mapping
    except TypeError:
        return False


# ----------------------------------------------------------------------------------------------
# Whole-file encoding to .npy


def _token_dtype(tokenizer: Tokenizer):
    import numpy as np

    return np.dtype(np.uint16) if tokenizer.max_token_id < 1 << 16 else np.dtype(np.uint32)


def _init_encode_worker(tokenizer: Tokenizer, invalid_utf8: str, source: str) -> None:
    _worker.update(tokenizer=tokenizer, invalid_utf8=invalid_utf8, source=source, dtype=_token_dtype(tokenizer))


def _encode_chunk(job: tuple[int, bytes]):
    import numpy as np

    offset, chunk = job
    text = _decode_utf8(chunk, offset, _worker["invalid_utf8"], _worker["source"])
    return len(chunk), np.array(_worker["tokenizer"].encode(text), dtype=_worker["dtype"])


def encode_file(tokenizer: Tokenizer, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                num_workers: int | None = None, progress: ProgressFn | None = None,
                invalid_utf8: str = "error") -> dict:
    """Encode a text file (`.gz` allowed) to a 1-D `.npy` of token ids, in parallel, atomically.

    The file is cut at special tokens (or safe newlines) into chunks that encode independently;
    workers encode chunks and the results are appended in order to the output, whose header is
    rewritten with the final length at the end. Memory is a few chunks, whatever the file size.
    Returns {"tokens", "bytes", "seconds", "dtype", "path"}.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    path, workers = _file_job_arguments(input_path, num_workers, invalid_utf8)
    start = time.perf_counter()
    total_bytes = _input_size(path)
    dtype = _token_dtype(tokenizer)
    special_re = _special_pattern(tokenizer.special_tokens, as_bytes=True)
    max_special_len = max((len(s.encode("utf-8")) for s in tokenizer.special_tokens), default=0)

    def header(num_tokens: int) -> bytes:
        import io

        buffer = io.BytesIO()
        npy_format.write_array_header_1_0(buffer, {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": (num_tokens,)})
        return buffer.getvalue()

    num_tokens = done_bytes = 0
    with _open_binary(path) as stream, atomic_path(output_path) as tmp, open(tmp, "wb") as out:
        header_length = len(header(0))
        out.write(header(0))
        chunk_bytes = _chunk_size(total_bytes, workers)
        chunks = _iter_chunks(stream, special_re, max_special_len, chunk_bytes, min(chunk_bytes, MIN_CHUNK_BYTES))
        worker_args = (tokenizer, invalid_utf8, str(path))
        # A small first chunk is encoded here: it fills the tokenizer's cache with the most common
        # words, which forked workers inherit, so they do not each redo those first encounters.
        _init_encode_worker(*worker_args)
        results = itertools.chain(map(_encode_chunk, itertools.islice(chunks, 1)),
                                  _map_in_order(_encode_chunk, chunks, workers, _init_encode_worker, worker_args))
        for chunk_bytes, ids in results:
            out.write(ids.tobytes())
            num_tokens += len(ids)
            done_bytes += chunk_bytes
            if progress is not None:
                progress("encode", done_bytes, total_bytes)
        final_header = header(num_tokens)
        if len(final_header) != header_length:  # cannot happen below 10**40 tokens; never write a corrupt file
            raise RuntimeError("npy header length changed")
        out.seek(0)
        out.write(final_header)
        out.flush()
    return {"tokens": num_tokens, "bytes": done_bytes, "seconds": time.perf_counter() - start,
            "dtype": dtype.name, "path": str(output_path)}


# ----------------------------------------------------------------------------------------------
# Command line: `python -m cs336_core.tokenization train|encode ...` (console script cs336-bpe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cs336-bpe", description="Train a byte-level BPE tokenizer or encode a file with one.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train vocab.json + merges.txt on a text file")
    train.add_argument("--input", required=True, help="UTF-8 text file (.gz allowed)")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--special-token", action="append", default=[], help="repeatable; e.g. '<|endoftext|>'")
    train.add_argument("--out-dir", required=True, help="writes vocab.json and merges.txt here")
    train.add_argument("--workers", type=int, default=None)
    train.add_argument("--invalid-utf8", choices=INVALID_UTF8_POLICIES, default="error")

    encode = commands.add_parser("encode", help="encode a text file to a .npy of token ids")
    encode.add_argument("--vocab", required=True)
    encode.add_argument("--merges", required=True)
    encode.add_argument("--special-token", action="append", default=[])
    encode.add_argument("--input", required=True)
    encode.add_argument("--output", required=True, help=".npy destination")
    encode.add_argument("--workers", type=int, default=None)
    encode.add_argument("--invalid-utf8", choices=INVALID_UTF8_POLICIES, default="error")

    args = parser.parse_args(argv)
    progress = ConsoleProgress()
    try:
        if args.command == "train":
            start = time.perf_counter()
            vocab, merges = train_bpe(args.input, args.vocab_size, args.special_token, num_workers=args.workers,
                                      progress=progress, invalid_utf8=args.invalid_utf8)
            progress.close()
            out_dir = Path(args.out_dir)
            save_vocab_merges(vocab, merges, out_dir / "vocab.json", out_dir / "merges.txt")
            longest = max(vocab.values(), key=len)
            print(f"trained {len(vocab)} tokens ({len(merges)} merges) in {time.perf_counter() - start:.1f}s; "
                  f"longest token {longest!r}; wrote {out_dir / 'vocab.json'} and {out_dir / 'merges.txt'}")
        else:
            tokenizer = Tokenizer.from_files(args.vocab, args.merges, args.special_token)
            stats = encode_file(tokenizer, args.input, args.output, num_workers=args.workers, progress=progress,
                                invalid_utf8=args.invalid_utf8)
            progress.close()
            ratio = stats["bytes"] / max(stats["tokens"], 1)
            print(f"{stats['tokens']:,} tokens ({stats['dtype']}) from {stats['bytes']:,} bytes "
                  f"({ratio:.2f} bytes/token) in {stats['seconds']:.1f}s -> {stats['path']}")
    except (ValueError, FileNotFoundError) as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
