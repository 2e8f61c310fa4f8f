"""The handout's `unicode1` and `unicode2` answers, computed (section 2.1-2.2), not recited.

unicode1: what chr(0) is, and how its repr and its printed form differ, in a string too.
unicode2: UTF-8 against UTF-16/32 byte counts on this run's corpora; a string the handout's
byte-by-byte decoder gets wrong, and why; a byte sequence that is not UTF-8, checked by decoding it.
"""

from __future__ import annotations

import unicodedata
from typing import Mapping

# The string the handout asks about in unicode1 (c).
UNICODE1_TEXT = "this is a test" + chr(0) + "string"
# A string the byte-by-byte decoder cannot handle: "é" is two bytes in UTF-8 (0xc3 0xa9).
WRONG_DECODER_INPUT = "héllo"
# A lead byte of a two-byte character followed by "(" where a continuation byte (10xxxxxx) must be.
INVALID_UTF8 = b"\xc3\x28"
# Where UTF-16 beats UTF-8: characters above U+07FF take 3 UTF-8 bytes and 2 UTF-16 bytes.
MULTILINGUAL_TEXT = "こんにちは世界"
# Without a byte-order mark: the handout compares the encodings of the text, not of a file header.
ENCODINGS = ("utf-8", "utf-16-le", "utf-32-le")


def decode_utf8_bytes_to_str_wrong(bytestring: bytes) -> str:
    """The handout's incorrect decoder, verbatim: each byte decoded on its own."""
    return "".join([bytes([b]).decode("utf-8") for b in bytestring])


def unicode1() -> dict:
    """(a) what chr(0) returns, (b) its repr against its printed form, (c) both inside a string."""
    nul = chr(0)
    return {
        "code_point": f"U+{ord(nul):04X}",
        "category": unicodedata.category(nul),  # Cc: a control character, no glyph
        "repr": repr(nul),
        "printed": nul,  # what print() writes: the one invisible character itself
        "printed_length": len(str(nul)),
        "text_repr": repr(UNICODE1_TEXT),
        "text_printed": str(UNICODE1_TEXT),
    }


def encoding_sizes(texts: Mapping[str, str]) -> list[dict]:
    """Bytes of each text in UTF-8, UTF-16 and UTF-32 (no byte-order mark), and its share of ASCII."""
    rows = []
    for name, text in {**texts, "multilingual example": MULTILINGUAL_TEXT}.items():
        sizes = {encoding: len(text.encode(encoding)) for encoding in ENCODINGS}
        rows.append({"text": name, "characters": len(text),
                     "ascii_%": round(100 * sum(ch < "\x80" for ch in text) / max(len(text), 1), 2),
                     **{f"{encoding}_bytes": size for encoding, size in sizes.items()},
                     "utf-16_vs_utf-8": round(sizes["utf-16-le"] / max(sizes["utf-8"], 1), 3),
                     "utf-32_vs_utf-8": round(sizes["utf-32-le"] / max(sizes["utf-8"], 1), 3)})
    return rows


def _decode_error(data: bytes, decode) -> str | None:
    """The UnicodeDecodeError `decode(data)` raises, as text, or None if it decodes."""
    try:
        decode(data)
    except UnicodeDecodeError as error:
        return str(error)
    return None


def unicode2(texts: Mapping[str, str]) -> dict:
    """(a) byte counts per encoding of `texts`, (b) the wrong decoder on a non-ASCII string and on an
    ASCII one, (c) a two-byte sequence that is not UTF-8, with the strict decoder's error."""
    wrong_input = WRONG_DECODER_INPUT.encode("utf-8")
    try:
        ascii_result = decode_utf8_bytes_to_str_wrong(b"hello")
    except UnicodeDecodeError as error:  # pragma: no cover - ASCII bytes are each a whole character
        ascii_result = str(error)
    return {
        "sizes": encoding_sizes(texts),
        "wrong_input": WRONG_DECODER_INPUT,
        "wrong_input_bytes": wrong_input.hex(" "),
        "wrong_error": _decode_error(wrong_input, decode_utf8_bytes_to_str_wrong),
        "wrong_ascii_result": ascii_result,
        "right_result": wrong_input.decode("utf-8"),
        "invalid_bytes": INVALID_UTF8.hex(" "),
        "invalid_error": _decode_error(INVALID_UTF8, lambda data: data.decode("utf-8")),
    }


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def unicode1_markdown(answers: dict) -> str:
    return (
        f"(a) `chr(0)` returns the NUL character, code point {answers['code_point']} (Unicode category "
        f"{answers['category']}, a control character with no glyph).\n\n"
        f"(b) Its `repr` is {_code(answers['repr'])}, an escape that shows the character is there; printed, "
        f"it writes that one invisible character ({answers['printed_length']} character, nothing visible on "
        f"a terminal).\n\n"
        f"(c) In `\"this is a test\" + chr(0) + \"string\"` the repr keeps the escape, "
        f"{_code(answers['text_repr'])}, while `print` shows `{answers['text_printed'].replace(chr(0), '')}` "
        f"with the NUL written but invisible: the two strings look joined although the character is "
        f"still in the string (its length counts it).")


def unicode2_markdown(answers: dict, data_note: str) -> str:
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    sizes = [row for row in answers["sizes"] if row["text"] != "multilingual example"]
    example = next(row for row in answers["sizes"] if row["text"] == "multilingual example")
    ratios = "; ".join(f"{row['utf-16_vs_utf-8']:g}x and {row['utf-32_vs_utf-8']:g}x on {row['text']}"
                       for row in sizes)
    return (
        f"(a) Byte counts of this run's text in each encoding ({data_note}):\n\n"
        f"{markdown_table(answers['sizes'])}\n\n"
        f"UTF-16 and UTF-32 take {ratios} the bytes of UTF-8 (this run's text is almost all ASCII). UTF-8 "
        f"stores ASCII in one byte, UTF-16 in two and UTF-32 in four, so training on UTF-8 bytes gives a "
        f"byte-level tokenizer the shortest sequences, without the zero bytes that pad every ASCII "
        f"character in UTF-16/32, while its 256 byte values still spell any string. UTF-16 is shorter only "
        f"on text mostly above U+07FF (the example `{MULTILINGUAL_TEXT}`: {example['utf-8_bytes']} bytes in "
        f"UTF-8, {example['utf-16-le_bytes']} in UTF-16).\n\n"
        f"(b) `decode_utf8_bytes_to_str_wrong` decodes each byte on its own. On `{answers['wrong_input']}` "
        f"(bytes `{answers['wrong_input_bytes']}`) it raises `UnicodeDecodeError: {answers['wrong_error']}`: "
        f"\"é\" is the two bytes `c3 a9`, and neither is a character by itself. It only works when every "
        f"character is one byte (ASCII: `hello` gives `{answers['wrong_ascii_result']}`); decoding the whole "
        f"byte string gives `{answers['right_result']}`.\n\n"
        f"(c) `{answers['invalid_bytes']}` is not UTF-8: `c3` starts a two-byte character, so the next byte "
        f"must be a continuation byte `10xxxxxx`, and `28` (\"(\") is not. Decoding it: "
        f"`UnicodeDecodeError: {answers['invalid_error']}`.")
