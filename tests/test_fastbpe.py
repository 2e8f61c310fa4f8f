"""The optional C accelerator (cs336_core/bpe/_fastbpe.c) against the pure-Python path and tiktoken.

Every test compares the accelerated `Tokenizer.encode` with the same tokenizer forced onto its
pure-Python reference path (`_merger = None`, what CS336_PURE_PYTHON=1 gives) and with tiktoken
on GPT-2's real vocabulary.
"""

from __future__ import annotations

import itertools
import os
import random
import string
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

# GPT-2's released files and the tiktoken Encoding built from them: one definition, in that module,
# with the import helper that skips a missing module, or fails under CI=true.
from test_tokenization_encode import EOT, GPT2_DIR, require_module, tiktoken_gpt2  # noqa: F401  (fixture)

fastbpe = require_module(
    "cs336_core.bpe._fastbpe",
    reason="C accelerator not built: `pip install -e .` with a C compiler builds cs336_core/bpe/_fastbpe.c",
)

from cs336_core.bpe import Tokenizer  # noqa: E402


def gpt2_tokenizer(accelerated: bool) -> Tokenizer:
    tokenizer = Tokenizer.from_files(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe", [EOT])
    if not accelerated:
        tokenizer._merger = None  # the pure-Python path, as with CS336_PURE_PYTHON=1
    return tokenizer


@pytest.fixture(scope="module")
def fast() -> Tokenizer:
    tokenizer = gpt2_tokenizer(accelerated=True)
    assert tokenizer._merger is not None, "the extension is built, so the tokenizer must use it"
    return tokenizer


@pytest.fixture(scope="module")
def pure() -> Tokenizer:
    return gpt2_tokenizer(accelerated=False)


def assert_parity(fast: Tokenizer, pure: Tokenizer, tiktoken_gpt2, text: str) -> None:
    ids = fast.encode(text)
    assert ids == pure.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert fast.decode(ids) == text


# Fragments around every decision of GPT-2's pattern: contractions (and near misses), letter,
# digit and punctuation runs with and without a leading space, whitespace runs before words and at
# the end, ASCII control characters that are not \s, and non-ASCII letters, digits, punctuation
# and whitespace next to all of them.
ASCII_FRAGMENTS = [
    "the", "Cat", "a", "I", "x", "42", "7", "3.14", ".", ",", "!", "?", "--", "(", ")", '"', "#", "_", "@",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\x0b", "\x0c", " \n ", "\x1c", "\x1f", "\x00",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'L", "'x", "'", "''", "'l", "'v", "'r",
]
NON_ASCII_FRAGMENTS = [
    "é", "ß", "Ω", "日本", "\u00a0", "\u2003", "\u3000", "\x85", "\u2028", "’", "“", "—", "…", "🙂", "👍🏽",
    "e\u0301", "²", "Ⅻ", "٣", "\ufeff", "\u200b",
]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parity_on_arbitrary_unicode(fast, pure, tiktoken_gpt2, text):
    assert_parity(fast, pure, tiktoken_gpt2, text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ASCII_FRAGMENTS), max_size=60))
def test_parity_on_ascii_text(fast, pure, tiktoken_gpt2, fragments):
    assert_parity(fast, pure, tiktoken_gpt2, "".join(fragments))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ASCII_FRAGMENTS * 3 + NON_ASCII_FRAGMENTS + [EOT]), max_size=60))
def test_parity_at_non_ascii_and_special_token_boundaries(fast, pure, tiktoken_gpt2, fragments):
    assert_parity(fast, pure, tiktoken_gpt2, "".join(fragments))


@pytest.mark.parametrize("text", [
    "", " ", "  ", "\n", "'", "a", "é", "don't", "DON'T", "I'm he'll we've they're she'd", "x 's y",
    "word   word", "word   ", "   word", "a\n\nb", "a \n b", "tabs\t\tthen text", "spaces \u3000 ideographic",
    "caf\u00e9 au lait", "ends with non-ASCII: 日本", "9\u00b2 and \u0663\u0662", "\xa0\xa0x", " \xa0", "’s",
    "x" * 1000, "ab" * 300, " " * 500 + "z", "1234567890" * 20, "!?" * 200,
])
def test_parity_on_edge_cases(fast, pure, tiktoken_gpt2, text):
    assert_parity(fast, pure, tiktoken_gpt2, text)
    assert_parity(fast, pure, tiktoken_gpt2, text + EOT + text)


def test_parity_on_long_mixed_text(fast, pure, tiktoken_gpt2):
    rng = random.Random(1)
    fragments = ASCII_FRAGMENTS * 20 + NON_ASCII_FRAGMENTS + [EOT, "The quick brown fox", "    indented code()"]
    text = "".join(rng.choice(fragments) for _ in range(30000))
    assert_parity(fast, pure, tiktoken_gpt2, text)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=120) | st.text(alphabet="abé ", min_size=60, max_size=400))
def test_c_merger_equals_python_bpe(fast, pure, text):
    # Whole strings as one "pre-token": longer than the C stack buffers, repeated pairs, any bytes.
    assert fast._merger.bpe(text) == pure._bpe(text)


def test_many_distinct_short_pretokens_twice(fast, pure, tiktoken_gpt2):
    # 17,576 three-letter words (many collide in the C cache's hash slots) in two orders: the second
    # pass is served from the cache and must still be exact.
    rng = random.Random(3)
    words = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)]
    shuffled = words[:]
    rng.shuffle(shuffled)
    for text in (" ".join(words), " ".join(shuffled), "\n".join(w.title() for w in shuffled)):
        assert_parity(fast, pure, tiktoken_gpt2, text)


@pytest.mark.parametrize("cache_limit", [1, 3, 1 << 20])
def test_c_cache_hits_and_resets_equal_python_bpe(pure, tiktoken_gpt2, cache_limit):
    # The C cache serves repeated pre-tokens (up to and beyond 16 bytes, where its keys switch from
    # two words to a byte comparison) and is emptied at its limit: every encoding stays exact.
    tokenizer = gpt2_tokenizer(accelerated=True)
    tokenizer._merger = fastbpe.Merger(tokenizer._byte_ids, tokenizer._merge_ranks, tokenizer._merged_id_of_rank,
                                       [(EOT.encode(), tokenizer.special_to_id[EOT])], cache_limit=cache_limit)
    words = ["Tokenizers", " cache", " every", " pre", "-token", ": aaaa", " abab", " ababab", " 1212", " ...!!!",
             " don't", " \n\n ", " x", " é", " sixteen-bytes-xy", " seventeen-bytes-xyz", " " + "long" * 20, "日本語"]
    text = "".join(words * 3) + EOT + "".join(reversed(words))
    ids = tokenizer.encode(text)
    assert ids == pure.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert 0 < tokenizer._merger.cache_size <= cache_limit
    assert tokenizer.encode(text) == ids  # the second pass: all from the cache (or its refills)


def test_encode_iterable_accelerated_equals_pure(fast, pure):
    rng = random.Random(2)
    text = "".join(rng.choice(ASCII_FRAGMENTS + NON_ASCII_FRAGMENTS + [EOT]) for _ in range(40000))
    pieces = [text[i:i + 997] for i in range(0, len(text), 997)]
    assert list(fast.encode_iterable(pieces)) == list(pure.encode_iterable(pieces)) == pure.encode(text)


def test_ids_beyond_16_bits_and_a_non_gpt2_vocabulary():
    # A small merge list with repeated-pair merges, ids shifted past 65535 (uint32 territory). Its
    # first merge uses a token made later: merging every (a, b) of "abab" at once gives [ab, ab],
    # merging only the first and then the best pair again would give [aba, b].
    base = 70000
    vocab = {base + b: bytes([b]) for b in range(256)}
    merges = [(b"ab", b"a"), (b"a", b"a"), (b"aa", b"aa"), (b"a", b"b"), (b" ", b"a"), (b"\xc3", b"\xa9")]
    for a, b in merges:
        vocab[base + len(vocab)] = a + b
    fast_tok = Tokenizer(vocab, merges, [EOT])
    pure_tok = Tokenizer(vocab, merges, [EOT])
    pure_tok._merger = None
    assert fast_tok._merger is not None
    ab = fast_tok.token_to_id[b"ab"]
    assert fast_tok._merger.bpe("abab") == pure_tok._bpe("abab") == [ab, ab]
    text = "aaaaaaa abababab aab  aaaa\u00e9\u00e9 ab" + EOT + "aaa"
    ids = fast_tok.encode(text)
    assert ids == pure_tok.encode(text)
    assert max(ids) > 65535
    assert fast_tok.decode(ids) == text


def test_merger_rejects_bad_tables():
    with pytest.raises(ValueError, match="256"):
        fastbpe.Merger([0] * 10, {}, [])
    with pytest.raises(ValueError, match="rank 5"):
        fastbpe.Merger(list(range(256)), {(1, 2): 5}, [300])
    with pytest.raises(ValueError, match="tuples"):
        fastbpe.Merger(list(range(256)), {1: 0}, [300])
    with pytest.raises(TypeError):
        fastbpe.Merger(list(range(256)), {}, []).bpe(b"bytes")


def test_pure_python_env_var_disables_the_accelerator():
    script = (
        "from cs336_core.bpe import Tokenizer\n"
        "t = Tokenizer({b: bytes([b]) for b in range(256)}, [])\n"
        "print(t._merger is None, t.encode(\"it's  x\"))\n"
    )
    outputs = {}
    for value in ("1", "0"):
        env = {**os.environ, "CS336_PURE_PYTHON": value}
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs[value] = result.stdout.split(" ", 1)
    assert outputs["1"][0] == "True" and outputs["0"][0] == "False"
    assert outputs["1"][1] == outputs["0"][1] == str(list(b"it's  x")) + "\n"


def test_missing_extension_falls_back_to_pure_python():
    # As on a machine without a C compiler: the import fails and encode takes the Python path.
    script = (
        "import sys; sys.modules['cs336_core.bpe._fastbpe'] = None\n"
        "from cs336_core.bpe import Tokenizer, accelerator\n"
        "t = Tokenizer({b: bytes([b]) for b in range(256)}, [])\n"
        "print(accelerator.FASTBPE is None, accelerator.FASTTRAIN is None, t._merger is None, t.encode('h\u00e9 x'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected_ids = list("h\u00e9 x".encode("utf-8"))
    assert result.stdout == f"True True True {expected_ids}\n"


def test_threads_sharing_one_tokenizer_encode_exactly(fast, pure):
    # encode runs without the GIL, so threads overlap: each gets its own C Merger (a Merger in use
    # by one thread refuses a second), and every result equals the reference.
    import threading

    rng = random.Random(4)
    texts = ["".join(rng.choice(ASCII_FRAGMENTS + NON_ASCII_FRAGMENTS + [EOT]) for _ in range(20000)) for _ in range(4)]
    expected = [pure.encode(text) for text in texts]
    results: dict[int, list] = {}
    errors = []

    def work(index: int) -> None:
        try:
            for _ in range(3):
                results[index] = fast.encode(texts[index])
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    work_main = fast.encode(texts[0])  # the making thread uses the first Merger meanwhile
    for thread in threads:
        thread.join()
    assert not errors
    assert [results[i] for i in range(4)] == expected and work_main == expected[0]
