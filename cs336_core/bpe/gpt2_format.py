"""GPT-2's released on-disk format for a BPE tokenizer: `vocab.json` + `merges.txt`.

`vocab.json` maps each token, written through GPT-2's byte-to-unicode table, to its id;
`merges.txt` has a `#version: 0.2` line and one `a b` merge per line in rank order. Every byte
value round-trips, and GPT-2's own `encoder.json` + `vocab.bpe` load.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from cs336_core.bpe.pretokenize import validate_special_tokens
from cs336_core.bpe.vocab import Merges, Vocab
from cs336_core.files import atomic_write_text


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable, non-whitespace character.

    >>> table = bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
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


def token_to_text(token: bytes) -> str:
    """A token as it is written in vocab.json and merges.txt.

    >>> token_to_text(b" the"), token_to_text("é".encode())
    ('Ġthe', 'Ã©')
    """
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
        text = token_to_text(vocab[token_id])
        if text in encoded:
            raise ValueError(f"tokens {encoded[text]} and {token_id} are both {vocab[token_id]!r}; vocab.json needs unique tokens")
        encoded[text] = token_id
    lines = ["#version: 0.2"] + [f"{token_to_text(a)} {token_to_text(b)}" for a, b in merges]
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
    specials = {token.encode("utf-8") for token in validate_special_tokens(special_tokens)}
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
            raise ValueError(f"{vocab_path}: id {token_id} is given twice ({token_to_text(vocab[token_id])!r} and {text!r})")
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

