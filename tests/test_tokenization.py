"""Tests of the BPE trainer (exactness against a brute-force trainer), serialization and errors."""

from __future__ import annotations

import collections
import gzip
import json
import os
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings, strategies as st

from cs336_core.bpe import (
    GPT2_PRETOKENIZE_PATTERN, Tokenizer, load_vocab_merges, save_vocab_merges, train_bpe,
)
from cs336_core.bpe import chunks, gpt2_format, pretokenize, train
from cs336_core.bpe import counting as bpe_counting
from test_tokenization_encode import require_module


def brute_force_train(text: str, vocab_size: int, special_tokens: list[str]):
    """The handout's algorithm written as plainly as possible: recount every pair every merge."""
    vocab = {i: s.encode() for i, s in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    if special_tokens:
        alternation = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
        segments = regex.split(alternation, text)
    else:
        segments = [text]
    words = collections.Counter()
    for segment in segments:
        for pretoken in regex.findall(GPT2_PRETOKENIZE_PATTERN, segment):
            words[tuple(bytes([b]) for b in pretoken.encode())] += 1
    merges = []
    while len(vocab) < vocab_size:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        merged_words = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return vocab, merges


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
       | st.lists(st.sampled_from(["a", "Z", "9", " ", "  ", "\n", "\t", "\x0b", "\x1c", "\x1f", "'", "'s", "'ll", "!", "_"]),
                  max_size=40).map("".join))
def test_ascii_fast_pretokenizer_equals_gpt2_regex(text):
    assert pretokenize.pretokens(text) == regex.findall(GPT2_PRETOKENIZE_PATTERN, text)
    assert pretokenize.PRETOKENIZE_ASCII.findall(text) == regex.findall(GPT2_PRETOKENIZE_PATTERN, text)


def test_handout_worked_example():
    # The handout's example splits on whitespace only; feed its pre-token counts to the merge loop.
    counts = {b"low": 5, b"lower": 2, b"widest": 3, b"newest": 6}
    vocab = {0: b"<|endoftext|>"} | {1 + b: bytes([b]) for b in range(256)}
    merges = train.merge_pretoken_counts(counts, vocab, 6)
    assert merges == [(b"s", b"t"), (b"e", b"st"), (b"o", b"w"), (b"l", b"ow"), (b"w", b"est"), (b"n", b"e")]
    assert [vocab[i] for i in range(257, 263)] == [b"st", b"est", b"ow", b"low", b"west", b"ne"]


CORPORA = {
    "ties": "ab ab ba ba cd cd dc dc xy yx " * 3,
    "unicode": "héllo wörld 你好世界 你好 emoji 🙂🙂 🙂x naïve café café\n\n  tabs\tand  spaces   end ",
    "specials": "the cat<|endoftext|>the hat<|endoftext|><|endoftext|>that cat sat<|endoftext|> it's we'll",
    "overlapping": "a<|endoftext|><|endoftext|>b<|endoftext|>c ab ab<|endoftext|><|endoftext|>",
    "contractions": "I'm you're they've she'll he'd it's 'tis ''' don't\n" * 4,
}


@pytest.fixture(params=["accelerated", "pure"])
def trainer(request, monkeypatch):
    """Which trainer `train_bpe` runs: the C one (where built) or the pure-Python reference."""
    if request.param == "pure":
        monkeypatch.setattr(train, "FASTTRAIN", None)
        monkeypatch.setattr(bpe_counting, "FASTTRAIN", None)
    elif train.FASTTRAIN is None:
        require_module("cs336_core.bpe._fasttrain", reason="C accelerator not built")  # (fails under CI=true)
    return request.param


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("num_workers", [1, 2])
def test_train_matches_brute_force(tmp_path, name, num_workers, monkeypatch, trainer):
    text = CORPORA[name]
    specials = ["<|endoftext|>"] + (["<|endoftext|><|endoftext|>"] if name == "overlapping" else [])
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 32)  # force many chunks and cuts
    vocab, merges = train_bpe(path, 256 + len(specials) + 60, specials, num_workers=num_workers)
    expected_vocab, expected_merges = brute_force_train(text, 256 + len(specials) + 60, specials)
    assert merges == expected_merges
    assert vocab == expected_vocab


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a", "b", "ab", " ", "  ", "\n", "é", "🙂", "'s", "<|endoftext|>", "1", "!", "x"]),
                min_size=1, max_size=60),
       st.integers(min_value=1, max_value=40))
def test_train_matches_brute_force_random(tmp_path_factory, trainer, pieces, extra_merges):
    text = "".join(pieces)
    path = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    vocab, merges = train_bpe(path, 257 + extra_merges, ["<|endoftext|>"], num_workers=1)
    assert (vocab, merges) == brute_force_train(text, 257 + extra_merges, ["<|endoftext|>"])


def test_train_chunked_parallel_equals_single_chunk(tmp_path, monkeypatch):
    # No special tokens at all: chunks must be cut at newlines that cannot change pre-tokenization.
    lines = [f"Line {i} says hello  to\tnumber {i * 7}.\n" + (" \n" if i % 3 else "") for i in range(400)]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(lines), encoding="utf-8")
    whole = train_bpe(path, 400, [], num_workers=1)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 200)
    with open(path, "rb") as f:
        pieces = list(chunks.iter_chunks(f, None, 0, chunks.chunk_size(path.stat().st_size, 2)))
    assert len(pieces) > 10
    assert train_bpe(path, 400, [], num_workers=2) == whole
    assert whole == brute_force_train(path.read_text(), 400, [])


def test_train_reads_gzip_and_reports_progress(tmp_path):
    text = CORPORA["specials"] * 20
    plain, packed = tmp_path / "c.txt", tmp_path / "c.txt.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    calls = []
    result = train_bpe(packed, 300, ["<|endoftext|>"], num_workers=1, progress=lambda *a: calls.append(a))
    assert result == train_bpe(plain, 300, ["<|endoftext|>"], num_workers=1)
    assert {phase for phase, _, _ in calls} == {"pretokenize", "merge"}
    assert calls[-1][0] == "merge" and calls[-1][1] == calls[-1][2] == len(result[1])


def test_phase_timer_splits_training_time_into_its_phases(tmp_path, monkeypatch):
    import itertools
    import types

    from cs336_core import progress as progress_module
    from cs336_core.progress import PhaseTimer

    # A clock that ticks once per reading makes the test exact (the wall clock raced): the timer
    # reads it when created and at each report, so each phase lasts exactly as many ticks as it
    # has reports if and only if the phases tile the call, each starting where the last one ended.
    ticks = itertools.count()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    path = tmp_path / "c.txt"
    path.write_text(CORPORA["specials"] * 50)
    forwarded = []
    timer = PhaseTimer(then=lambda *a: forwarded.append(a))
    _, merges = train_bpe(path, 400, ["<|endoftext|>"], num_workers=1, progress=timer)
    reports = collections.Counter(phase for phase, _, _ in forwarded)
    assert reports["pretokenize"] >= 1 and reports["merge"] >= 1
    assert list(timer.seconds) == ["pretokenize", "merge"]
    assert timer.seconds == {"pretokenize": reports["pretokenize"], "merge": reports["merge"]}
    assert forwarded[-1] == ("merge", len(merges), len(merges))


def test_training_stops_when_no_pair_is_left(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("aaaa")
    vocab, merges = train_bpe(path, 1000, [], num_workers=1)
    assert merges == [(b"a", b"a"), (b"aa", b"aa")]
    assert len(vocab) == 258


# ----------------------------------------------------------------------------------------------
# Errors: clear messages, nothing written


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("hello world<|endoftext|>")
    return path


@pytest.mark.parametrize("vocab_size, specials, message", [
    (256, ["<|endoftext|>"], "vocab_size 256 is below"),
    (300, ["<|endoftext|>", "<|endoftext|>"], "duplicate special token"),
    (300, [""], "non-empty str"),
    (300, [b"<|endoftext|>"], "non-empty str"),
    (300, ["bad\ud800"], "not valid text"),
    ("300", [], "vocab_size must be an int"),
])
def test_train_rejects_bad_arguments(corpus, vocab_size, specials, message):
    with pytest.raises(ValueError, match=regex.escape(message)):
        train_bpe(corpus, vocab_size, specials, num_workers=1)


def test_special_tokens_given_as_one_str_is_a_type_error(corpus):
    # list("<eos>") would be five one-character special tokens, silently.
    with pytest.raises(TypeError, match=regex.escape("special_tokens must be a list of str, got the str '<eos>'")):
        train_bpe(corpus, 300, "<eos>", num_workers=1)
    with pytest.raises(TypeError, match=regex.escape("pass ['<eos>']")):
        Tokenizer({b: bytes([b]) for b in range(256)}, [], "<eos>")


def test_train_rejects_bad_worker_count(corpus):
    with pytest.raises(ValueError, match="num_workers must be >= 1, got 0"):
        train_bpe(corpus, 300, [], num_workers=0)


def test_train_rejects_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe(tmp_path / "nope.txt", 300, [])
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        train_bpe(tmp_path / "empty.txt", 300, [], num_workers=1)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_invalid_utf8_names_the_offset_or_is_replaced(tmp_path, monkeypatch, num_workers):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 64)
    data = ("<|endoftext|>word " * 20).encode() + b"bad \xff byte" + b" more words" * 10
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    bad_offset = data.index(b"\xff")
    with pytest.raises(ValueError, match=f"invalid UTF-8 at byte offset {bad_offset}"):
        train_bpe(path, 300, ["<|endoftext|>"], num_workers=num_workers)
    vocab, merges = train_bpe(path, 300, ["<|endoftext|>"], num_workers=num_workers, invalid_utf8="replace")
    assert (vocab, merges) == brute_force_train(data.decode(errors="replace"), 300, ["<|endoftext|>"])
    with pytest.raises(ValueError, match="invalid_utf8 must be one of"):
        train_bpe(path, 300, [], invalid_utf8="ignore")


# ----------------------------------------------------------------------------------------------
# Serialization


def test_save_load_round_trips_every_byte(tmp_path):
    vocab = {0: b"<|endoftext|>"} | {1 + b: bytes([b]) for b in range(256)}
    vocab.update({257: b" \x00", 258: b"\xff\xfe", 259: b" \x00\xff\xfe", 260: b"\n\n", 261: "é".encode()})
    merges = [(b" ", b"\x00"), (b"\xff", b"\xfe"), (b" \x00", b"\xff\xfe"), (b"\n", b"\n"), (b"\xc3", b"\xa9")]
    save_vocab_merges(vocab, merges, tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert load_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt") == (vocab, merges)
    assert (tmp_path / "merges.txt").read_text().startswith("#version")
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    tokenizer.save(tmp_path / "v2.json", tmp_path / "m2.txt")
    reloaded = Tokenizer.from_files(tmp_path / "v2.json", tmp_path / "m2.txt", ["<|endoftext|>"])
    text = "x \x00\xff é\n\n<|endoftext|>"
    assert reloaded.encode(text) == tokenizer.encode(text)


def test_trained_tokenizer_round_trips_through_files(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(CORPORA["unicode"] * 5 + "<|endoftext|>" + CORPORA["contractions"])
    vocab, merges = train_bpe(path, 330, ["<|endoftext|>"], num_workers=1)
    save_vocab_merges(vocab, merges, tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert load_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt") == (vocab, merges)


def test_save_refuses_duplicate_tokens_and_writes_nothing(tmp_path):
    vocab = {0: b"a"} | {1 + b: bytes([b]) for b in range(256)}
    with pytest.raises(ValueError, match="both"):
        save_vocab_merges(vocab, [], tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert list(tmp_path.iterdir()) == []


def test_load_reports_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_vocab_merges(tmp_path / "missing.json", tmp_path / "m.txt")
    (tmp_path / "v.json").write_text(json.dumps({"a": 0}))
    (tmp_path / "m.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match=r"m.txt:2: expected two tokens"):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")
    (tmp_path / "v.json").write_text(json.dumps({"a b": 0}))
    with pytest.raises(ValueError, match="byte-to-unicode"):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")


@pytest.fixture
def saved_tokenizer(tmp_path) -> tuple[Path, Path]:
    path = tmp_path / "c.txt"
    path.write_text(CORPORA["unicode"] * 5 + "<|endoftext|>" + CORPORA["contractions"])
    vocab, merges = train_bpe(path, 330, ["<|endoftext|>", "<pad>"], num_workers=1)
    save_vocab_merges(vocab, merges, tmp_path / "vocab.json", tmp_path / "merges.txt")
    return tmp_path / "vocab.json", tmp_path / "merges.txt"


def test_load_rejects_merges_cut_at_a_line_boundary(saved_tokenizer):
    vocab_path, merges_path = saved_tokenizer
    vocab, merges = load_vocab_merges(vocab_path, merges_path)  # whole: special tokens and all load
    assert len(vocab) == 256 + len(merges) + 2
    lines = merges_path.read_text().splitlines(keepends=True)
    for kept in (len(lines) - 1, len(lines) // 2, 2):  # the last merge lost, half of them, all but one
        merges_path.write_text("".join(lines[:kept]))
        with pytest.raises(ValueError, match="do not agree") as error:
            load_vocab_merges(vocab_path, merges_path)
        assert str(vocab_path) in str(error.value) and str(merges_path) in str(error.value)
        # Each lost merge left its token behind, beside the two special tokens.
        assert f"of the {len(lines) - kept + 2} tokens beyond 256 bytes + {kept - 1} merged ones" in str(error.value)
        with pytest.raises(ValueError, match="looks truncated"):
            Tokenizer.from_files(vocab_path, merges_path, ["<|endoftext|>", "<pad>"])


def test_load_allows_special_tokens_anywhere_in_the_vocabulary(tmp_path):
    # GPT-2 puts its special token after the merges; one made of two ordinary tokens ("ab" = "a" +
    # "b") must be named, or it is taken for a merge that merges.txt lacks.
    vocab = {b: bytes([b]) for b in range(256)} | {256: b"ab", 257: b"<|endoftext|>", 258: b"abab"}
    save_vocab_merges(vocab, [(b"a", b"b")], tmp_path / "v.json", tmp_path / "m.txt")
    with pytest.raises(ValueError, match=regex.escape("id 258, b'abab'")):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")
    assert load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt", ["abab"]) == (vocab, [(b"a", b"b")])
    tokenizer = Tokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt", ["abab", "<|endoftext|>"])
    assert tokenizer.encode("ababab<|endoftext|>") == [258, 256, 257]


@pytest.mark.parametrize("merge_lines, message", [
    ("a b\nab c\n", r"m.txt:3: the token it makes, b'abc', is not in .*v.json"),
    ("a b\nab zz\n", r"m.txt:3: its right part, b'zz', is not in .*v.json"),
    ("a b\nzz a\n", r"m.txt:3: its left part, b'zz', is not in .*v.json"),
    ("a b\na\n", r"m.txt:3: expected two tokens"),
    ("a b\nab \n", r"m.txt:3: expected two tokens"),  # a line cut after its space
])
def test_load_rejects_merges_the_vocabulary_lacks(tmp_path, merge_lines, message):
    vocab = {b: bytes([b]) for b in range(256)} | {300: b"ab", 301: b"abd"}
    (tmp_path / "v.json").write_text(json.dumps({gpt2_format.token_to_text(t): i for i, t in vocab.items()}))
    (tmp_path / "m.txt").write_text("#version: 0.2\n" + merge_lines)
    with pytest.raises(ValueError, match=message):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")
    del vocab[ord("z")]
    (tmp_path / "v.json").write_text(json.dumps({gpt2_format.token_to_text(t): i for i, t in vocab.items()}))
    (tmp_path / "m.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match=r"v.json: the vocabulary lacks 1 of the 256 single bytes \(e.g. b'z'\)"):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")


@pytest.mark.parametrize("corrupt, message", [
    (lambda text: text[: len(text) // 2], "v.json:.*not valid JSON .*truncated or corrupt"),
    (lambda text: text.replace('"', "", 1), "v.json:.*not valid JSON"),
    (lambda text: "[" * 100_000 + "]" * 100_000, "v.json: JSON nested too deeply"),
    (lambda text: "[1, 2]", "v.json: expected a JSON object"),
    (lambda text: '{"a": 1.5}', r"v.json: token 'a' has id 1.5"),
    (lambda text: '{"a": "7"}', r"v.json: token 'a' has id '7'"),
    (lambda text: '{"a": 1, "b": 1}', r"v.json: id 1 is given twice"),
    (lambda text: '{"a": 1, "a": 2}', r"v.json: token 'a' appears twice"),
])
def test_load_names_a_corrupt_vocab_file(saved_tokenizer, tmp_path, corrupt, message):
    vocab_path, merges_path = saved_tokenizer
    bad = tmp_path / "v.json"
    bad.write_text(corrupt(vocab_path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_vocab_merges(bad, merges_path)


def test_load_names_files_that_are_not_utf8(saved_tokenizer, tmp_path):
    vocab_path, merges_path = saved_tokenizer
    (tmp_path / "v.json").write_bytes(b'{"a": 0,\n"\xff": 1}')
    with pytest.raises(ValueError, match=r"v.json:2: not UTF-8 text \(byte offset 10"):
        load_vocab_merges(tmp_path / "v.json", merges_path)
    (tmp_path / "m.txt").write_bytes(b"#version: 0.2\na b\n\xc3 b\n")
    with pytest.raises(ValueError, match=r"m.txt:3: not UTF-8 text"):
        load_vocab_merges(vocab_path, tmp_path / "m.txt")


def test_cli_trains_and_encodes(tmp_path):
    import subprocess
    import sys

    import numpy as np

    corpus = tmp_path / "c.txt"
    corpus.write_text((CORPORA["specials"] + CORPORA["unicode"]) * 30)
    out = tmp_path / "tok"
    run = subprocess.run([sys.executable, "-m", "cs336_core.tokenization", "train", "--input", str(corpus),
                          "--vocab-size", "300", "--special-token", "<|endoftext|>", "--out-dir", str(out)],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    vocab, merges = load_vocab_merges(out / "vocab.json", out / "merges.txt")
    assert (vocab, merges) == train_bpe(corpus, 300, ["<|endoftext|>"], num_workers=1)
    run = subprocess.run([sys.executable, "-m", "cs336_core.tokenization", "encode", "--vocab", str(out / "vocab.json"),
                          "--merges", str(out / "merges.txt"), "--special-token", "<|endoftext|>",
                          "--input", str(corpus), "--output", str(tmp_path / "ids.npy")],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    assert np.load(tmp_path / "ids.npy").tolist() == tokenizer.encode(corpus.read_text())
    bad = subprocess.run([sys.executable, "-m", "cs336_core.tokenization", "train", "--input", str(tmp_path / "no.txt"),
                          "--vocab-size", "300", "--out-dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no.txt" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_parallel_training_finishes_under_a_host_sigterm_handler(tmp_path):
    """Dagster installs a Python SIGTERM handler while a run executes; forked pool workers inherit it.

    A pool shut down with `terminate()` can then wait forever on a worker that ignores SIGTERM (a
    race: the unfixed pool hung within 30 rounds every time), so this runs in a subprocess with a
    deadline and must finish, agreeing with the serial result.
    """
    import subprocess
    import sys
    import textwrap

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("<|endoftext|>".join(f"story {i}: the cat sat on the mat {i % 7}\n" for i in range(400)))
    script = textwrap.dedent(
        f"""
        import signal
        from cs336_core.bpe import train_bpe
        signal.signal(signal.SIGTERM, lambda *args: None)  # what a host like Dagster does
        serial = train_bpe({str(corpus)!r}, 300, ["<|endoftext|>"], num_workers=1)
        for _ in range(30):  # the shutdown race hangs within a few pools when it is not handled
            parallel = train_bpe({str(corpus)!r}, 300, ["<|endoftext|>"], num_workers=2)
            assert parallel == serial
        print("ok", len(parallel[1]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_cli_help_longest_token_and_byte_rates(tmp_path):
    """`cs336-bpe` (here `python -m cs336_core.bpe`): every flag has help, --invalid-utf8 lists its
    choices, train names its longest learned token readably, and bytes read show as B/s."""
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "cs336_core.bpe", *args], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stderr
        return done

    for command in ("train", "encode"):
        helps: dict[str, str] = {}  # flag -> its help text (which argparse may start on the next line)
        for line in cli(command, "--help").stdout.split("options:")[1].splitlines():
            if line.startswith("  -"):
                flag, _, text = line.strip().partition("  ")
                flag = flag.split()[0].rstrip(",")
                helps[flag] = text.strip()
            elif line.strip():
                helps[flag] = (helps[flag] + " " + line.strip()).strip()
        assert {"--input", "--special-token", "--workers", "--invalid-utf8"} <= set(helps)
        assert all(helps.values()), f"{command} flags without help: {[f for f, text in helps.items() if not text]}"
        assert "'error'" in helps["--invalid-utf8"] and "'replace'" in helps["--invalid-utf8"]

    corpus = tmp_path / "c.txt"
    corpus.write_text(("the cat sat on the mat\n" * 200 + "<|endoftext|>") * 20)
    out = tmp_path / "tok"
    train_run = cli("train", "--input", str(corpus), "--vocab-size", "300", "--special-token", "<|endoftext|>",
                    "--out-dir", str(out), "--workers", "1")
    vocab, _ = load_vocab_merges(out / "vocab.json", out / "merges.txt")
    longest_id, longest = max(((i, t) for i, t in vocab.items() if t != b"<|endoftext|>"), key=lambda item: len(item[1]))
    shown = longest.decode().replace(" ", "␣").replace("\n", "\\n")
    assert f'longest learned token "{shown}" ({len(longest)} bytes, id {longest_id})' in train_run.stdout
    assert "pretokenize" in train_run.stderr and "B/s" in train_run.stderr and "merges/s" in train_run.stderr
    assert "it/s" not in train_run.stderr
    encode_run = cli("encode", "--vocab", str(out / "vocab.json"), "--merges", str(out / "merges.txt"),
                     "--special-token", "<|endoftext|>", "--input", str(corpus), "--output", str(tmp_path / "ids.npy"),
                     "--workers", "1")
    assert "B/s" in encode_run.stderr and "it/s" not in encode_run.stderr


def test_docstring_examples_hold(tmp_path, monkeypatch):
    """The worked examples in cs336_core.bpe's docstrings are doctests: they must stay true."""
    import doctest
    import importlib
    import pkgutil

    import cs336_core.bpe

    monkeypatch.chdir(tmp_path)  # examples write small files
    attempted = 0
    for module_info in pkgutil.iter_modules(cs336_core.bpe.__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cs336_core.bpe.{module_info.name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{module.__name__}: {result.failed} of {result.attempted} examples failed"
        attempted += result.attempted
    assert attempted > 30


def test_vocab_from_merges_rebuilds_the_trained_vocabulary(tmp_path):
    from cs336_core.bpe import vocab_from_merges

    path = tmp_path / "c.txt"
    path.write_text(CORPORA["specials"] * 5 + CORPORA["unicode"])
    for specials in (["<|endoftext|>"], ["<|endoftext|>", "<pad>"]):
        vocab, merges = train_bpe(path, 320, specials, num_workers=1)
        assert vocab_from_merges(merges, specials) == vocab
    # Special tokens first, then the 256 bytes, then one token per merge, in order.
    rebuilt = vocab_from_merges([(b"a", b"b"), (b"ab", b"c")], ["<s>"])
    assert rebuilt == {0: b"<s>"} | {1 + b: bytes([b]) for b in range(256)} | {257: b"ab", 258: b"abc"}
    # A merge of a token no earlier merge made (a merges.txt out of order, or from elsewhere).
    assert vocab_from_merges([(b"ab", b"c"), (b"a", b"b")], []) is None
    assert vocab_from_merges([(b"a", b"<s>")], []) is None
    # A special token's bytes count as a known token, as they do in training's vocabulary.
    assert vocab_from_merges([(b"a", b"<s>")], ["<s>"])[257] == b"a<s>"


def test_the_old_module_name_offers_what_it_did(tmp_path):
    import cs336_core
    import cs336_core.bpe as bpe
    from cs336_core import tokenization

    for name in ("train_bpe", "Tokenizer", "encode_file", "save_vocab_merges", "load_vocab_merges", "bytes_to_unicode",
                 "GPT2_PRETOKENIZE_PATTERN", "INVALID_UTF8_POLICIES", "Vocab", "Merges", "vocab_from_merges"):
        assert getattr(tokenization, name) is getattr(bpe, name) is getattr(cs336_core, name, getattr(bpe, name))
    assert (tokenization.CHUNK_BYTES, tokenization.MIN_CHUNK_BYTES) == (chunks.CHUNK_BYTES, chunks.MIN_CHUNK_BYTES)
    assert tokenization.LONG_WORD_SYMBOLS == 64 and callable(tokenization.main)


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    import numpy as np

    from cs336_core.bpe import encode_file

    text = CORPORA["specials"] * 20 + CORPORA["unicode"]
    plain = tmp_path / "plain.txt"
    plain.write_text(text)
    gzipped_txt = tmp_path / "packed.txt"  # gzip data under a plain-text name
    gzipped_txt.write_bytes(gzip.compress(text.encode()))
    plain_gz = tmp_path / "plain.gz"  # plain text under a gzip name
    plain_gz.write_text(text)
    expected = train_bpe(plain, 300, ["<|endoftext|>"], num_workers=1)
    assert train_bpe(gzipped_txt, 300, ["<|endoftext|>"], num_workers=1) == expected
    assert train_bpe(plain_gz, 300, ["<|endoftext|>"], num_workers=1) == expected
    tokenizer = Tokenizer(*expected, ["<|endoftext|>"])
    for source in (gzipped_txt, plain_gz):
        stats = encode_file(tokenizer, source, tmp_path / "ids.npy", num_workers=1)
        assert np.load(tmp_path / "ids.npy").tolist() == tokenizer.encode(text)
        assert stats["bytes"] == len(text.encode())
    with pytest.raises(ValueError, match="input path is not a file"):
        train_bpe(tmp_path, 300, [], num_workers=1)
