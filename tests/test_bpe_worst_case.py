"""Worst cases for BPE: one very long pre-token must cost O(n log n), never O(n**2).

Real corpora hold such pre-tokens: a line of minified code, base64, a long table rule. Each timing
test runs the same work on an input and on one four times longer and compares CPU time of this
process (other processes on a shared machine do not count), best of three: 4x the input must take
less than 8x the time, where a quadratic loop takes about 16x. Only ratios are asserted.

The other tests check that the long-word code paths give exactly what the short-word ones give.
"""

from __future__ import annotations

import io
import math
import random
import string
import time

import pytest
from hypothesis import given, settings, strategies as st

from cs336_core.bpe import Tokenizer, chunks, long_words, train_bpe
from cs336_core.bpe import counting as bpe_counting, train as bpe_train
from test_tokenization import CORPORA, brute_force_train
from test_tokenization_encode import EOT, GPT2_DIR, require_module, tiktoken_gpt2  # noqa: F401  (fixture)

MAX_GROWTH = 8  # for 4x the input; linear is 4x, n log n a little more, quadratic 16x


def best_cpu_seconds(run, calls: int, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            run()
        best = min(best, time.process_time() - start)
    return best / calls


def growth(run_small, run_large) -> float:
    """CPU time of `run_large` over that of `run_small`; fast runs are looped so the clock resolves them."""
    calls = 1
    while calls * best_cpu_seconds(run_small, calls, repeats=1) < 0.05:
        calls *= 2
    return best_cpu_seconds(run_large, calls) / best_cpu_seconds(run_small, calls)


def random_letters(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_lowercase, k=n))


# ----------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("path", ["accelerated", "pure"])
def test_training_on_one_long_line_is_not_quadratic(tmp_path, monkeypatch, path):
    # 512 KB and 2 MB of letters without a space: each is a single pre-token. (The list splice per
    # merged occurrence took 13x for 4x here, and 378 s for a 4 MB line.) Both trainers: the C one
    # (_fasttrain.c, where built) and the pure-Python reference.
    if path == "pure":
        monkeypatch.setattr(bpe_train, "FASTTRAIN", None)
        monkeypatch.setattr(bpe_counting, "FASTTRAIN", None)
    elif bpe_train.FASTTRAIN is None:
        require_module("cs336_core.bpe._fasttrain", reason="C accelerator not built")  # (fails under CI=true)
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(random_letters(1 << 19))
    large.write_text(random_letters(1 << 21))
    ratio = growth(lambda: train_bpe(small, 300, [], num_workers=1), lambda: train_bpe(large, 300, [], num_workers=1))
    assert ratio < MAX_GROWTH, f"4x the input took {ratio:.1f}x the time"


def test_reading_one_long_line_is_not_quadratic():
    # With no safe place to cut, the reader must not copy and rescan the whole pending line for
    # every block it reads (the old reader took 1 GB of copies for 4 MB in 4 KB blocks).
    def read_all(n: int):
        return lambda: list(chunks.iter_chunks(io.BytesIO(b"x" * n), None, 0, 4096))

    assert [len(chunk) for _, chunk in read_all(10_000)()] == [10_000]
    ratio = growth(read_all(1 << 20), read_all(1 << 22))
    assert ratio < MAX_GROWTH, f"4x the input took {ratio:.1f}x the time"


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_long_word_path_trains_like_the_brute_force_trainer(name, tmp_path, monkeypatch):
    # Every word of 2 bytes or more takes the long-word path here, whatever its shape.
    monkeypatch.setattr(long_words, "LONG_WORD_SYMBOLS", 1)
    specials = ["<|endoftext|>"] + (["<|endoftext|><|endoftext|>"] if name == "overlapping" else [])
    path = tmp_path / "corpus.txt"
    path.write_text(CORPORA[name], encoding="utf-8")
    vocab_size = 256 + len(specials) + 60
    assert train_bpe(path, vocab_size, specials, num_workers=1) == brute_force_train(CORPORA[name], vocab_size, specials)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="aab", min_size=60, max_size=400) | st.text(alphabet="abcé ", min_size=1, max_size=200)
                | st.sampled_from(["aaaa", "abab", "<|endoftext|>", " x"]), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=40))
def test_long_words_train_like_the_brute_force_trainer(tmp_path_factory, pieces, extra_merges):
    # Runs of a, b longer than LONG_WORD_SYMBOLS, with their overlapping pairs ("aaa"), next to
    # short words that keep the list path, in the same merges.
    text = "".join(pieces)
    path = tmp_path_factory.mktemp("long") / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    expected = brute_force_train(text, 257 + extra_merges, ["<|endoftext|>"])
    assert train_bpe(path, 257 + extra_merges, ["<|endoftext|>"], num_workers=1) == expected


# ----------------------------------------------------------------------------------------------
# Encoding


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_files(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe", [EOT])


@pytest.fixture(scope="module")
def distinct_words(gpt2) -> str:
    """GPT-2's alphabetic tokens, each once, shuffled and run together (about 240,000 letters).

    Random letters reuse a few thousand merges, so a loop that costs O(n) for each distinct merge
    applied looks only 8x slower at 4x their length; here nearly every merge is new, as in a long
    real identifier soup, and that loop shows its 11-15x.
    """
    words = sorted({token.decode("latin-1").strip() for token in gpt2.vocab.values()})
    words = [word for word in words if word.isascii() and word.isalpha()]
    random.Random(0).shuffle(words)
    return "".join(words)


def pure_python(tokenizer: Tokenizer) -> Tokenizer:
    pure = Tokenizer(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens)
    pure._merger = None  # as with CS336_PURE_PYTHON=1
    return pure


@pytest.mark.parametrize("path", ["pure", "c"])
def test_encoding_one_long_pretoken_is_not_quadratic(gpt2, distinct_words, path):
    if path == "c":
        require_module("cs336_core.bpe._fastbpe")
        bpe = gpt2._merger.bpe
    else:
        bpe = pure_python(gpt2)._bpe
    small, large = distinct_words[:20_000], distinct_words[:80_000]
    ratio = growth(lambda: bpe(small), lambda: bpe(large))
    assert ratio < MAX_GROWTH, f"4x the input took {ratio:.1f}x the time"


def test_long_pretokens_encode_like_tiktoken_on_both_paths(gpt2, distinct_words, tiktoken_gpt2):
    pure = pure_python(gpt2)
    for text in (distinct_words[:30_000], random_letters(30_000), "ab" * 5000, "a" * 9999, "é" * 3000 + "x"):
        expected = tiktoken_gpt2.encode(text)
        assert pure.encode(text) == expected
        assert gpt2.encode(text) == expected
        assert gpt2.decode(expected) == text


def test_long_pretoken_path_equals_the_short_one_on_odd_merge_lists():
    # A merge list not made by training: a pair made by a merge can outrank it ("ab" + "a" before
    # "a" + "b"), so all occurrences of one rank must merge before the pairs they make are seen.
    base = 70000
    vocab = {base + b: bytes([b]) for b in range(256)}
    merges = [(b"ab", b"a"), (b"a", b"a"), (b"aa", b"aa"), (b"a", b"b"), (b"b", b"b"), (b"\xc3", b"\xa9")]
    for a, b in merges:
        vocab[base + len(vocab)] = a + b
    tokenizer = Tokenizer(vocab, merges)
    pure = pure_python(tokenizer)
    rng = random.Random(5)
    for _ in range(300):
        text = "".join(rng.choices(rng.choice(["ab", "aab", "abé", "a"]), k=rng.randint(1, 300)))
        long_path = pure._bpe(text)
        pure.LONG_PRETOKEN_BYTES = 10 ** 9  # the plain loop, for any length
        assert pure._bpe(text) == long_path, text
        del pure.LONG_PRETOKEN_BYTES
        if tokenizer._merger is not None:
            assert tokenizer._merger.bpe(text) == long_path, text


def test_streaming_one_long_pretoken_is_not_quadratic():
    # encode_iterable rescans the text it could not settle at each attempt; with 1,000-character
    # pieces of one endless word that was every piece, over the whole word (15x for 4x here). No
    # merges, so that the time is the streaming's, not BPE's.
    tokenizer = Tokenizer({b: bytes([b]) for b in range(256)}, [])
    tokenizer.STREAM_BLOCK_CHARS = 1000

    def stream(n: int):
        text = random_letters(n, seed=n)
        pieces = [text[i:i + 1000] for i in range(0, n, 1000)]

        def run():
            tokenizer._pretoken_cache.clear()
            return list(tokenizer.encode_iterable(pieces))

        return run

    assert stream(5000)() == list(random_letters(5000, seed=5000).encode())
    ratio = growth(stream(250_000), stream(1_000_000))
    assert ratio < MAX_GROWTH, f"4x the input took {ratio:.1f}x the time"
