"""The C trainer (cs336_core/bpe/_fasttrain.c) and the C pre-tokenizer it shares with the encoder
(_bpe_scan.h) against the pure-Python reference: Unicode classes over every code point, the
pre-tokens of arbitrary text, UTF-8 validation, counts, merges, errors, and the fallback.

The pure path is what `train_bpe` runs with CS336_PURE_PYTHON=1; here it is selected by setting
the modules' FASTTRAIN to None, which is what that variable does at import.
"""

from __future__ import annotations

import collections
import random
import subprocess
import sys
import types
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from test_fastbpe import ASCII_FRAGMENTS, NON_ASCII_FRAGMENTS  # noqa: E402  (the pattern's decision points)
from test_tokenization_encode import require_module

fasttrain = require_module(
    "cs336_core.bpe._fasttrain",
    reason="C accelerator not built: `pip install -e .` with a C compiler builds cs336_core/bpe/_fasttrain.c",
)

import regex  # noqa: E402

from cs336_core.bpe import accelerator, chunks, counting, train, train_bpe, unicode_classes  # noqa: E402
from cs336_core.bpe.pretokenize import PRETOKENIZE, special_pattern  # noqa: E402

EOT = "<|endoftext|>"


def reference_pretokens(text: str, specials: list[str]) -> list[bytes]:
    pattern = special_pattern(specials)
    segments = pattern.split(text)[::2] if pattern is not None else [text]
    return [piece.encode("utf-8") for segment in segments for piece in PRETOKENIZE.findall(segment)]


def c_pretokens(text: str, specials: list[str]) -> list[bytes]:
    return fasttrain.pretokenize(text.encode("utf-8"), tuple(s.encode("utf-8") for s in specials))


@pytest.fixture
def pure_python(monkeypatch):
    """Run train_bpe / count_pretokens on the pure-Python path for the rest of the test."""
    monkeypatch.setattr(train, "FASTTRAIN", None)
    monkeypatch.setattr(counting, "FASTTRAIN", None)


def train_both_ways(path, vocab_size, specials, monkeypatch, **kwargs):
    fast = train_bpe(path, vocab_size, specials, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(train, "FASTTRAIN", None)
        patch.setattr(counting, "FASTTRAIN", None)
        pure = train_bpe(path, vocab_size, specials, **kwargs)
    return fast, pure


# ----------------------------------------------------------------------------------------------
# Unicode classes and the pre-tokenizer


def test_unicode_classes_equal_regex_at_every_code_point():
    table = fasttrain.unicode_classes()
    assert len(table) == 0x110000
    assert unicode_classes.mismatches(table) == []
    counts = collections.Counter(table)
    assert counts[unicode_classes.LETTER] > 100_000 and counts[unicode_classes.DIGIT] > 1_000
    assert counts[unicode_classes.SPACE] == sum(1 for cp in range(0x110000) if regex.match(r"\s", chr(cp)))


def test_the_committed_header_is_what_the_generator_writes():
    if regex.__version__ != fasttrain.UNICODE_CLASSES_REGEX_VERSION:
        pytest.skip("regex is another version than the header's (the table test above decides)")
    assert unicode_classes.header_text(unicode_classes.regex_classes()) == unicode_classes.HEADER.read_text()


def test_tables_that_disagree_with_regex_turn_the_accelerators_off():
    good = fasttrain.unicode_classes()
    bad = bytearray(good)
    bad[ord("é")] = unicode_classes.OTHER
    same_version = types.SimpleNamespace(UNICODE_CLASSES_REGEX_VERSION=regex.__version__, unicode_classes=lambda: bytes(bad))
    other_version = types.SimpleNamespace(UNICODE_CLASSES_REGEX_VERSION="0.0", unicode_classes=lambda: bytes(bad))
    agreeing = types.SimpleNamespace(UNICODE_CLASSES_REGEX_VERSION="0.0", unicode_classes=lambda: good)
    assert accelerator._tables_agree(same_version)  # the version matches: no check, no cost
    with pytest.warns(RuntimeWarning, match="U\\+00E9"):
        assert not accelerator._tables_agree(other_version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert accelerator._tables_agree(agreeing)


FRAGMENTS = ASCII_FRAGMENTS * 3 + NON_ASCII_FRAGMENTS + [EOT, "<s>", "<s><s>", "s>"]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_pretokens_of_arbitrary_text_equal_regex(text):
    text = text.encode("utf-8", "replace").decode("utf-8")  # (lone surrogates are not UTF-8)
    assert c_pretokens(text, []) == reference_pretokens(text, [])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_pretokens_around_every_decision_and_special_token_equal_regex(fragments):
    text = "".join(fragments)
    for specials in ([], [EOT], ["<s>", "<s><s>", "s>", EOT]):
        assert c_pretokens(text, specials) == reference_pretokens(text, specials), specials


def test_pretokens_of_one_char_of_each_class_in_every_context():
    # One letter, number, space and other from every class of table, after and before each other.
    table = fasttrain.unicode_classes()
    rng = random.Random(0)
    members = {cls: [cp for cp in range(0x110000) if table[cp] == cls and not 0xD800 <= cp < 0xE000] for cls in range(4)}
    samples = {cls: [chr(cp) for cp in rng.sample(codes, min(40, len(codes)))] for cls, codes in members.items()}
    chars = [c for group in samples.values() for c in group] + [" ", "'", "s", "\n"]
    text = "".join(a + b + c for a in chars for b in chars[::7] for c in (" ", "x", "1"))
    assert c_pretokens(text, [EOT]) == reference_pretokens(text, [EOT])


# ----------------------------------------------------------------------------------------------
# UTF-8 validation, as Python's strict decoder


def python_valid_prefix(data: bytes) -> int:
    try:
        data.decode("utf-8")
        return len(data)
    except UnicodeDecodeError as error:
        return error.start


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x99\x82",
                                                         b"\x80", b"\xc0", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                                         b"\xe0\x80", b"\xff", b"\xf0"]), max_size=12).map(b"".join))
def test_utf8_validation_equals_python(data):
    assert fasttrain.utf8_valid_prefix(data) == python_valid_prefix(data)


@pytest.mark.parametrize("data", [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
                                  b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"abc\xe2\x82",
                                  b"12345678\xf0\x9f\x99", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xee\x80\x80"])
def test_utf8_validation_edge_cases(data):
    assert fasttrain.utf8_valid_prefix(data) == python_valid_prefix(data)


# ----------------------------------------------------------------------------------------------
# Counting and merging against the reference


def mixed_text(seed: int, pieces: int) -> str:
    rng = random.Random(seed)
    words = ["the", " cat", " sat", " on", " mat", "\n", " é", "日本", " 42", "!!", "  ", "aaaa", "abab", " x" * 3,
             "b" * 80, " " + "ab" * 50, EOT, "'s", "'ll"]
    return "".join(rng.choice(words) for _ in range(pieces))


def test_counts_over_many_chunks_equal_the_reference(tmp_path, monkeypatch, pure_python):
    path = tmp_path / "corpus.txt"
    path.write_text(mixed_text(1, 60_000), encoding="utf-8")
    reference = counting.count_pretokens(path, [EOT], num_workers=2)
    monkeypatch.setattr(chunks, "MIN_CHUNK_BYTES", 4096)  # many chunks, counted by two threads
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(counting, "FASTTRAIN", fasttrain)
    seen = []
    native = counting.count_pretokens_native(path, [EOT], 2, progress=lambda *report: seen.append(report))
    assert native.to_dict() == dict(reference)
    assert len(seen) > 10 and seen[-1] == ("pretokenize", path.stat().st_size, path.stat().st_size)


@pytest.mark.parametrize("seed,vocab_size", [(1, 300), (2, 400), (3, 600)])
def test_training_equals_the_reference(tmp_path, monkeypatch, seed, vocab_size):
    path = tmp_path / "corpus.txt"
    path.write_text(mixed_text(seed, 20_000), encoding="utf-8")
    fast, pure = train_both_ways(path, vocab_size, [EOT], monkeypatch, num_workers=2)
    assert fast == pure
    assert len(fast[1]) == vocab_size - 257


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "ab", "ba", " ", " a", "aa", "\n", "é", EOT]), min_size=1, max_size=200),
       st.integers(min_value=0, max_value=40))
def test_training_small_corpora_with_ties_and_repeated_tokens_equals_the_reference(tmp_path_factory, fragments,
                                                                                    extra_merges):
    # A tiny alphabet makes count ties, pairs of one symbol ("aaaa"), tokens made twice by two
    # merge orders, and running out of pairs before the vocabulary is full.
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join(fragments), encoding="utf-8")
    monkeypatch = pytest.MonkeyPatch()
    try:
        fast, pure = train_both_ways(path, 257 + extra_merges, [EOT], monkeypatch, num_workers=1)
    finally:
        monkeypatch.undo()
    assert fast == pure


def test_training_a_long_run_of_one_letter_equals_the_reference(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("a" * 5000 + " " + "ab" * 3000 + " aaa", encoding="utf-8")
    fast, pure = train_both_ways(path, 300, [], monkeypatch, num_workers=1)
    assert fast == pure


def test_merge_progress_is_reported(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(mixed_text(4, 20_000), encoding="utf-8")
    reports = []
    train_bpe(path, 600, [EOT], num_workers=1, progress=lambda *report: reports.append(report))
    merges = [done for phase, done, _ in reports if phase == "merge"]
    assert merges[:3] == [100, 200, 300] and merges[-1] == 600 - 257


def test_invalid_utf8_fails_like_the_reference_and_replace_counts_alike(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"good text here\n" * 500 + b"bad \xff byte\n" + b"more text\n" * 100)
    errors = []
    for python_only in (False, True):
        with monkeypatch.context() as patch:
            if python_only:
                patch.setattr(train, "FASTTRAIN", None)
                patch.setattr(counting, "FASTTRAIN", None)
            with pytest.raises(ValueError) as error:
                train_bpe(path, 300, [], num_workers=2)
            errors.append(str(error.value))
    assert errors[0] == errors[1]
    assert "byte offset 7504" in errors[0] and str(path) in errors[0]
    fast, pure = train_both_ways(path, 300, [], monkeypatch, num_workers=2, invalid_utf8="replace")
    assert fast == pure and any(b"\xef\xbf\xbd" in token for token in fast[0].values())


def test_pretoken_counts_guard_their_use():
    table = fasttrain.PretokenCounts()
    assert table.count(b"ab ab", ()) == 5 and len(table) == 2
    assert table.count(b"ok \xff", ()) == 3 and table.to_dict() == {b"ab": 1, b" ab": 1}  # nothing counted
    with pytest.raises(ValueError, match="itself"):
        table.update(table)
    with pytest.raises(TypeError, match="bytes"):
        table.count(b"x", ("<s>",))
    with pytest.raises(ValueError, match="byte id"):
        fasttrain.train_merges(table, [999] * 256, [bytes([b]) for b in range(256)], 10)


def test_pure_python_env_var_trains_on_the_reference_path(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(mixed_text(5, 5_000), encoding="utf-8")
    script = ("import sys\nfrom cs336_core.bpe import accelerator, train_bpe\n"
              "vocab, merges = train_bpe(sys.argv[1], 300, ['<|endoftext|>'], num_workers=1)\n"
              "print(accelerator.FASTTRAIN is None, len(merges), merges[:3])\n")
    outputs = {}
    for value in ("1", "0"):
        result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                                env={**__import__("os").environ, "CS336_PURE_PYTHON": value})
        assert result.returncode == 0, result.stderr
        outputs[value] = result.stdout.split(" ", 1)
    assert outputs["1"][0] == "True" and outputs["0"][0] == "False"
    assert outputs["1"][1] == outputs["0"][1]


@pytest.mark.parametrize("run_char", ["a", "Z", "7"])
def test_runs_across_the_sixteen_byte_steps_end_where_regex_ends_them(run_char):
    # The C scanner takes ASCII letter and digit runs 16 bytes at a time: runs of every length
    # around one and two steps, ended by ASCII, by a non-ASCII letter or digit (which continues a
    # run of its class), by non-ASCII others and spaces, and by the end of a segment.
    enders = ["", " ", ".", "é", "日", "٣", "²", "\u00a0", "’", "🙂", "'s", "\n", EOT, "a", "1"]
    for length in range(1, 40):
        for ender in enders:
            for lead in ("", " "):
                text = lead + run_char * length + ender + run_char * 3
                assert c_pretokens(text, [EOT]) == reference_pretokens(text, [EOT]), (length, ender, lead)


def test_training_on_real_prose_equals_the_reference(tmp_path, monkeypatch):
    # Real English (the standard library's docstrings: the offline web stand-in), 1 MB, vocab 2,000.
    from cs336_core.corpora.prose import stdlib_prose

    path = tmp_path / "prose.txt"
    stdlib_prose(path, max_bytes=1 << 20)
    fast, pure = train_both_ways(path, 2000, [EOT], monkeypatch, num_workers=2)
    assert fast == pure and len(fast[1]) == 2000 - 257
