"""`Tokenizer`: encode text to token ids with a trained vocabulary and merge list, and decode back.

Text is split on the special tokens, then into GPT-2 pre-tokens; each distinct pre-token goes
through BPE once (the lowest-ranked merge present, until none is) and is cached. Pre-tokens longer
than 64 bytes merge through a heap of merge ranks, so no input makes encoding quadratic. The C
accelerator (`accelerator.FASTBPE`), where built, does all of `encode` without the GIL (the same
steps in `_fastbpe.c`); this module's code is the reference it must equal.
"""

from __future__ import annotations

import array
import heapq
import itertools
import os
import threading
from typing import Iterable, Iterator

from cs336_core.bpe.accelerator import FASTBPE
from cs336_core.bpe.gpt2_format import load_vocab_merges, save_vocab_merges
from cs336_core.bpe.pretokenize import PRETOKENIZE, pretokens, special_pattern, validate_special_tokens
from cs336_core.bpe.vocab import Merges, Vocab


class Tokenizer:
    """Encode text to token ids and back with a trained vocabulary and merge list.

    >>> vocab = {b: bytes([b]) for b in range(256)} | {256: b"lo", 257: b"low", 258: b"<|endoftext|>"}
    >>> tokenizer = Tokenizer(vocab, [(b"l", b"o"), (b"lo", b"w")], ["<|endoftext|>"])
    >>> tokenizer.encode("low lot<|endoftext|>")
    [257, 32, 256, 116, 258]
    >>> tokenizer.decode([257, 32, 256])
    'low lo'
    """

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
        self.special_tokens = validate_special_tokens(special_tokens)
        # Lowest id wins if two ids share the same bytes.
        self.token_to_id: dict[bytes, int] = {token: i for i, token in sorted(self.vocab.items(), reverse=True)}
        for special in self.special_tokens:
            encoded = special.encode("utf-8")
            if encoded not in self.token_to_id:
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id] = encoded
                self.token_to_id[encoded] = new_id
        self.special_to_id = {s: self.token_to_id[s.encode("utf-8")] for s in self.special_tokens}
        self._special_re = special_pattern(self.special_tokens)
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
        # The C accelerator's copy of the tables with its own cache, or None for the pure-Python
        # path. A Merger serves one thread at a time: other threads get their own (`_thread_merger`).
        self._merger = self.new_merger() if FASTBPE else None
        self._merger_thread = threading.get_ident()
        self._other_threads = threading.local()

    def new_merger(self):
        """A C `Merger` of this tokenizer (one per thread: each has its own cache); needs the accelerator."""
        specials = [(s.encode("utf-8"), self.special_to_id[s]) for s in self.special_tokens]
        return FASTBPE.Merger(self._byte_ids, self._merge_ranks, self._merged_id_of_rank, specials,
                              cache_limit=self.CACHE_LIMIT)

    def _thread_merger(self):
        """The C Merger of the calling thread: `_merger` in the thread that made the tokenizer,
        one made on first use in any other (encode runs without the GIL, so threads overlap)."""
        if threading.get_ident() == self._merger_thread:
            return self._merger
        merger = getattr(self._other_threads, "merger", None)
        if merger is None:
            merger = self._other_threads.merger = self.new_merger()
        return merger

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
        (The accelerator's `Merger.bpe` in cs336_core/bpe/_fastbpe.c is this in C: keep them in step.)
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
                ids = merge_word(ids, ids[i], ids[i + 1], merged)
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
        bpe = self._bpe if self._merger is None else self._merger.bpe  # (the same algorithm in C; no cache, any thread)
        ids = self._pretoken_cache[pretoken] = bpe(pretoken)
        return ids

    def _encode_plain(self, text: str, out: list[int]) -> None:
        """Append the ids of text that holds no special token.

        Each distinct pre-token goes through BPE once; after that it is a cache hit, and the
        lookups and the concatenation run inside C (`map`, `chain`) rather than a Python loop.
        """
        if self._merger is not None:  # the same steps in C
            out += self._thread_merger().encode(text, False)
            return
        cache = self._pretoken_cache
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        pieces = pretokens(text)
        start = len(out)
        try:
            out += itertools.chain.from_iterable(map(cache.__getitem__, pieces))
        except KeyError:  # some pre-tokens are new: encode them, then look all up again
            del out[start:]
            for pretoken in set(pieces).difference(cache):
                self._encode_pretoken(pretoken)
            out += itertools.chain.from_iterable(map(cache.__getitem__, pieces))

    def encode(self, text: str) -> list[int]:
        if self._merger is not None:  # all of what follows, in C
            return self._thread_merger().encode(text)
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
        for match in PRETOKENIZE.finditer(text, settled, plain_end):
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


def merge_word(word: list[int], a: int, b: int, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of (a, b), left to right, by `new_id`.

    >>> merge_word([1, 2, 2, 1, 2], 1, 2, 9)
    [9, 2, 9]
    """
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
