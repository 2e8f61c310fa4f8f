"""The vocabulary BPE training builds, id by id: the special tokens, the 256 bytes, then one token
per merge in the order the merges were learned."""

from __future__ import annotations

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


def initial_vocab(special_tokens: list[str]) -> Vocab:
    """The vocabulary before any merge: the special tokens (ids 0..k-1), then the 256 bytes.

    >>> vocab = initial_vocab(["<|endoftext|>"])
    >>> len(vocab), vocab[0], vocab[1], vocab[1 + ord("a")]
    (257, b'<|endoftext|>', b'\\x00', b'a')
    """
    vocab: Vocab = {i: s.encode("utf-8") for i, s in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    return vocab


def vocab_from_merges(merges: Merges, special_tokens: list[str]) -> Vocab | None:
    """The vocabulary BPE training builds with `merges`: special tokens, the 256 bytes, then one
    token per merge in order; None if a merge joins a token that no earlier merge made.

    >>> vocab = vocab_from_merges([(b"s", b"t"), (b"e", b"st")], ["<|endoftext|>"])
    >>> len(vocab), vocab[257], vocab[258]
    (259, b'st', b'est')
    >>> vocab_from_merges([(b"e", b"st")], []) is None  # "st" is made by no earlier merge
    True
    """
    vocab = initial_vocab(special_tokens)
    known = set(vocab.values())
    for a, b in merges:
        if a not in known or b not in known:
            return None
        vocab[len(vocab)] = a + b
        known.add(a + b)
    return vocab
