"""Training byte-level BPE (handout section 2.4), exactly:

  * the initial vocabulary is the special tokens (ids 0..k-1) followed by the 256 single bytes;
  * the text is split on the special tokens first, then pre-tokenized with the GPT-2 regex, and no
    pair ever crosses a special token or a pre-token boundary (`counting`);
  * every merge takes the most frequent pair, ties going to the lexicographically greater pair of
    byte strings (`max` over `(bytes, bytes)`), until `vocab_size` is reached or no pair is left.

The merge loop (`merge_pretoken_counts`) updates pair counts incrementally, through an index
pair -> words and a lazily-invalidated heap, so a merge costs time in the words it touches, not in
the corpus. Words longer than `long_words.LONG_WORD_SYMBOLS` bytes merge through a linked list of
their symbols (`long_words`), so that no input makes training quadratic.

This code is the reference. With the C accelerator built (`accelerator.FASTTRAIN`), `train_bpe`
counts in threads and merges in `_fasttrain.c`, with the same results (tests/test_fasttrain.py).
"""

from __future__ import annotations

import collections
import heapq
import os

from cs336_core.bpe import long_words
from cs336_core.bpe.accelerator import FASTTRAIN
from cs336_core.bpe.counting import count_pretokens, count_pretokens_native
from cs336_core.bpe.parallel import file_job_arguments
from cs336_core.bpe.pretokenize import validate_special_tokens
from cs336_core.bpe.vocab import Merges, Vocab, initial_vocab
from cs336_core.progress import ProgressFn


def train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str], *,
              num_workers: int | None = None, progress: ProgressFn | None = None,
              invalid_utf8: str = "error") -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file (gzip is read decompressed).

    Returns `vocab` (id -> bytes: special tokens, then the 256 bytes, then one token per merge)
    and `merges` in order of creation. `num_workers` defaults to every core. Reports the phases
    "pretokenize" (bytes read) and "merge" (merges made) to `progress`.

    >>> from pathlib import Path
    >>> _ = Path("corpus.txt").write_text("low low lower lowest")
    >>> vocab, merges = train_bpe("corpus.txt", 258, [], num_workers=1)
    >>> merges, vocab[257]
    ([(b'o', b'w'), (b'l', b'ow')], b'low')
    """
    specials = validate_special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    if vocab_size < 256 + len(specials):
        raise ValueError(f"vocab_size {vocab_size} is below 256 bytes + {len(specials)} special tokens = {256 + len(specials)}")
    path, workers = file_job_arguments(input_path, num_workers, invalid_utf8)
    vocab = initial_vocab(specials)
    if FASTTRAIN is not None:
        counts = count_pretokens_native(path, specials, workers, invalid_utf8, progress)
        return vocab, merge_native(counts, vocab, vocab_size - len(vocab), progress)
    word_counts = count_pretokens(path, specials, workers, invalid_utf8, progress)
    merges = merge_pretoken_counts(word_counts, vocab, vocab_size - len(vocab), progress)
    return vocab, merges


def merge_native(counts, vocab: Vocab, num_merges: int, progress: ProgressFn | None = None) -> Merges:
    """`merge_pretoken_counts` by the C accelerator, over a `_fasttrain.PretokenCounts` (emptied)."""
    def report(done: int) -> None:
        if progress is not None:
            progress("merge", done, num_merges)

    pairs = FASTTRAIN.train_merges(counts, initial_byte_ids(vocab), [vocab[i] for i in range(len(vocab))],
                                   num_merges, report)
    merges: Merges = []
    for a, b in pairs:
        vocab[len(vocab)] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))
    if progress is not None:  # finished, possibly early because no pair was left
        progress("merge", len(merges), len(merges))
    return merges


def merge_pretoken_counts(word_counts: dict[bytes, int], vocab: Vocab, num_merges: int,
                          progress: ProgressFn | None = None) -> Merges:
    """Run up to `num_merges` BPE merges over counted pre-tokens; extends `vocab` in place.

    Consumes `word_counts` (emptied as the words are converted, to bound memory). The handout's
    worked example (its pre-tokens split on whitespace only):

    >>> vocab = initial_vocab(["<|endoftext|>"])
    >>> merge_pretoken_counts({b"low": 5, b"lower": 2, b"widest": 3, b"newest": 6}, vocab, 6)
    [(b's', b't'), (b'e', b'st'), (b'o', b'w'), (b'l', b'ow'), (b'w', b'est'), (b'n', b'e')]
    >>> vocab[257], vocab[262]
    (b'st', b'ne')
    """
    stride = len(vocab) + num_merges  # a pair (a, b) is the int a * stride + b: a tuple costs 64 bytes
    words, counts = _words_as_ids(word_counts, vocab)
    pair_counts, pair_words, long = _index_pairs(words, counts, stride)
    heap = _PairHeap(pair_counts, vocab, stride)
    merges: Merges = []
    while len(merges) < num_merges and (key := heap.pop_most_frequent()) is not None:
        a, b = divmod(key, stride)
        new_id = len(vocab)
        vocab[new_id] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))
        heap.add_token(new_id, vocab[new_id])
        heap.push(_apply_merge(words, counts, pair_counts, pair_words, stride, a, b, new_id, long))
        if len(merges) % 1000 == 0:  # forget pairs that are gone, so memory tracks live pairs
            for gone in [key for key, count in pair_counts.items() if count == 0]:
                del pair_counts[gone]
                pair_words.pop(gone, None)
                long.positions.pop(gone, None)
        if progress is not None and len(merges) % 100 == 0:
            progress("merge", len(merges), num_merges)
    if progress is not None:  # finished, possibly early because no pair was left
        progress("merge", len(merges), len(merges))
    return merges


def initial_byte_ids(vocab: Vocab) -> list[int]:
    """The id of each byte 0..255 in an initial vocabulary (special tokens first, then the bytes).

    >>> initial_byte_ids(initial_vocab(["<|endoftext|>"]))[:3]
    [1, 2, 3]
    """
    byte_id = {token[0]: token_id for token_id, token in vocab.items() if len(token) == 1 and token_id >= len(vocab) - 256}
    return [byte_id[b] for b in range(256)]


def _words_as_ids(word_counts: dict[bytes, int], vocab: Vocab) -> tuple[list[list[int]], list[int]]:
    """The words of two bytes or more as lists of their bytes' ids, and their counts; empties
    `word_counts` as it goes.

    >>> _words_as_ids({b"ab": 3, b"c": 9}, initial_vocab(["<|endoftext|>"]))
    ([[98, 99]], [3])
    """
    byte_id = initial_byte_ids(vocab)
    words: list[list[int]] = []
    counts: list[int] = []
    while word_counts:
        word, count = word_counts.popitem()
        if len(word) >= 2:  # a single byte has no pair to merge
            words.append([byte_id[b] for b in word])
            counts.append(count)
    return words, counts


def _index_pairs(words: list[list[int]], counts: list[int], stride: int):
    """(pair -> count, pair -> indices of the words holding it, the long words) of counted words.

    The long words move to a `LongWords` (their entry in `words` is emptied).

    >>> pair_counts, pair_words, _ = _index_pairs([[1, 2, 1, 2]], [5], stride=10)
    >>> dict(pair_counts), dict(pair_words)
    ({12: 10, 21: 5}, {12: [0, 0], 21: [0]})
    """
    threshold = long_words.LONG_WORD_SYMBOLS
    pair_counts: dict[int, int] = collections.defaultdict(int)
    pair_words: dict[int, list[int]] = collections.defaultdict(list)  # may hold stale or repeated indices
    long = long_words.LongWords(stride, max((len(word) for word in words if len(word) > threshold), default=0))
    for index, word in enumerate(words):
        count = counts[index]
        if len(word) > threshold:
            long.add(index, word, count, pair_counts)
            words[index] = []  # (its symbols live in long_words now)
            continue
        for a, b in zip(word, word[1:]):
            pair_counts[a * stride + b] += count
            pair_words[a * stride + b].append(index)
    return pair_counts, pair_words, long


class _PairHeap:
    """The most frequent pair, ties going to the greater pair of byte strings, under changing counts.

    The heap holds, for every live pair, an entry whose count is at least the true one: increases
    push a new entry, decreases push nothing, and a popped entry whose count is too high is pushed
    back with the true count. So the first popped entry that is exact is the most frequent pair.
    """

    def __init__(self, pair_counts: dict[int, int], vocab: Vocab, stride: int):
        self.pair_counts = pair_counts
        self.stride = stride
        self.order_key = {token_id: _reversed_order_key(token) for token_id, token in vocab.items()}
        order_key = self.order_key
        self.heap = [(-count, order_key[key // stride], order_key[key % stride], key) for key, count in pair_counts.items()]
        heapq.heapify(self.heap)

    def add_token(self, token_id: int, token: bytes) -> None:
        self.order_key[token_id] = _reversed_order_key(token)

    def push(self, keys) -> None:
        """Push the current counts of the pairs `keys` (pairs whose counts went up)."""
        heap, pair_counts, order_key, stride = self.heap, self.pair_counts, self.order_key, self.stride
        for new_key in keys:
            heapq.heappush(heap, (-pair_counts[new_key], order_key[new_key // stride], order_key[new_key % stride], new_key))

    def pop_most_frequent(self) -> int | None:
        """The key of the most frequent live pair, taken off the heap; None when no pair is left."""
        heap, pair_counts = self.heap, self.pair_counts
        while heap:
            negative_count, key_a, key_b, key = heapq.heappop(heap)
            count = pair_counts.get(key, 0)
            if count == -negative_count:
                return key
            if count > 0:  # the count went down since this entry was pushed
                heapq.heappush(heap, (-count, key_a, key_b, key))
        return None


def _reversed_order_key(token: bytes) -> str:
    """A string whose order is the reverse of `token`'s byte-string order.

    `heapq` is a min-heap but ties must go to the *greater* pair; each byte b becomes chr(256 - b)
    and a terminator chr(257) makes a proper prefix sort after its extensions.

    >>> _reversed_order_key(b"ab") < _reversed_order_key(b"a") < _reversed_order_key(b"A")
    True
    """
    return "".join([chr(256 - b) for b in token]) + chr(257)


def _apply_merge(words: list[list[int]], counts: list[int], pair_counts: dict[int, int],
                 pair_words: dict[int, list[int]], stride: int, a: int, b: int, new_id: int,
                 long: long_words.LongWords | None = None) -> set[int]:
    """Merge (a, b) into `new_id` in every word holding it; update pair counts around each site.

    Returns the keys of the pairs (all containing `new_id`) whose counts went up.

    >>> from collections import defaultdict
    >>> words, pair_counts = [[1, 2, 1, 2, 3]], defaultdict(int, {12: 2, 21: 1, 23: 1})
    >>> sorted(_apply_merge(words, [1], pair_counts, defaultdict(list, {12: [0]}), 10, 1, 2, 4)), words
    ([43, 44], [[4, 4, 3]])
    """
    increased: set[int] = set()
    merged_key = a * stride + b
    if long is not None:
        long.merge(a, b, new_id, counts, pair_counts, increased)
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
