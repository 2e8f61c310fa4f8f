"""Pre-tokenization: text is split on the special tokens first, then into GPT-2's pre-tokens.

BPE never merges across a special token or a pre-token boundary, so training and encoding both
start here. Also the checks on special tokens and the UTF-8 decoding of corpus chunks.
"""

from __future__ import annotations

import re
from typing import Iterable

import regex

GPT2_PRETOKENIZE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKENIZE = regex.compile(GPT2_PRETOKENIZE_PATTERN)
# The same pattern restricted to ASCII text, where \p{L} is [A-Za-z], \p{N} is [0-9] and \s is
# [ \t\n\v\f\r] (re.ASCII's \s, also `regex`'s ASCII whitespace): `re` runs it about twice as fast.
PRETOKENIZE_ASCII = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)

INVALID_UTF8_POLICIES = ("error", "replace")


def pretokens(text: str) -> list[str]:
    """GPT-2 pre-tokens of `text` (`str.isascii` is O(1): CPython records it per string).

    >>> pretokens("Hello, world! It's 2024.")
    ['Hello', ',', ' world', '!', ' It', "'s", ' 2024', '.']
    >>> pretokens("  two spaces")  # a run of spaces gives all but the last to the whitespace
    [' ', ' two', ' spaces']
    """
    return (PRETOKENIZE_ASCII if text.isascii() else PRETOKENIZE).findall(text)


def validate_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    """The special tokens as a list, after checking each is a distinct, non-empty, encodable str.

    >>> validate_special_tokens(None), validate_special_tokens(("<|endoftext|>",))
    ([], ['<|endoftext|>'])
    """
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


def special_pattern(specials: Iterable[str], as_bytes: bool = False):
    """An alternation of the special tokens, longest first so overlapping ones resolve greedily;
    None without special tokens. Splitting with it puts the special tokens at the odd indices.

    >>> special_pattern(["<s>", "<s><s>"]).split("a<s><s><s>b")
    ['a', '<s><s>', '', '<s>', 'b']
    """
    ordered = sorted(specials, key=len, reverse=True)
    if not ordered:
        return None
    if as_bytes:
        return regex.compile(b"(" + b"|".join(regex.escape(s.encode("utf-8")) for s in ordered) + b")")
    return regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")")


def max_special_bytes(specials: Iterable[str]) -> int:
    """The length in UTF-8 bytes of the longest special token (0 without any)."""
    return max((len(s.encode("utf-8")) for s in specials), default=0)


def decode_utf8(chunk: bytes, offset: int, invalid_utf8: str, source: str) -> str:
    """Decode a chunk that starts `offset` bytes into `source`; invalid UTF-8 raises a ValueError
    naming its offset in the file, or becomes U+FFFD with `invalid_utf8="replace"`.

    >>> decode_utf8(b"caf\\xc3\\xa9 \\xff", 100, "replace", "corpus.txt")
    'café \\ufffd'
    """
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        if invalid_utf8 == "replace":
            return chunk.decode("utf-8", errors="replace")
        raise ValueError(
            f"{source}: invalid UTF-8 at byte offset {offset + err.start} ({err.reason}); "
            f"pass invalid_utf8='replace' to decode it as U+FFFD"
        ) from None
