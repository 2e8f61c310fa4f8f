"""Embedded corpora (generated stories, stdlib prose) and the streaming document tools."""

from __future__ import annotations

import collections
import gzip
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cs336_core.corpora import story_data
from cs336_core.corpora import stories as story_generator
from cs336_core.corpora import (
    ENDOFTEXT,
    corpus_stats,
    generate_stories,
    iter_documents,
    sample_documents,
    split_documents,
    stdlib_prose,
)

WORD = re.compile(r"[A-Za-z']+|[.,!?\"]")


@pytest.fixture(scope="module")
def stories(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stories") / "stories.txt"
    generate_stories(path, target_bytes=1_500_000, seed=7)
    return path


def _entropy(counts: collections.Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def test_generate_stories_is_deterministic_by_seed(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    calls = []
    info = generate_stories(a, target_bytes=100_000, seed=3, progress=lambda *args: calls.append(args))
    assert calls[-1] == ("generate stories", 100_000, 100_000)
    generate_stories(b, target_bytes=100_000, seed=3)
    generate_stories(c, target_bytes=100_000, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert info["bytes"] == a.stat().st_size >= 100_000
    assert info["bytes"] < 100_000 + 5_000  # stops right after the target
    assert info["documents"] == len(list(iter_documents(a)))
    assert info["preview"] and info["preview"][:40] == a.read_text()[:40]


def test_stories_use_the_tinystories_format(stories):
    text = stories.read_text(encoding="utf-8")
    assert text.endswith(f"\n{ENDOFTEXT}\n")
    documents = text.split(f"\n{ENDOFTEXT}\n")[:-1]
    assert documents == list(iter_documents(stories))
    assert all(doc and doc[0].isupper() and doc.rstrip()[-1] in '.!"' for doc in documents)
    assert "{" not in text and "}" not in text  # every placeholder was filled


def test_stories_have_variety_worth_modelling(stories):
    documents = list(iter_documents(stories))
    words = [w.lower() for doc in documents for w in WORD.findall(doc)]
    sentences = {s for doc in documents for s in re.split(r"(?<=[.!?])\s+", doc)}
    assert len(set(words)) >= 800
    assert len(sentences) >= 10_000
    assert len(set(documents)) == len(documents)
    assert sum('"' in doc for doc in documents) / len(documents) > 0.8  # dialogue in most stories
    # The next word is far more predictable from the previous one than from nothing: there is
    # structure to learn, but not so little variety that it is trivial.
    unigram = collections.Counter(words)
    bigram = collections.Counter(zip(words, words[1:]))
    conditional = _entropy(bigram) - _entropy(unigram)  # H(w_t | w_t-1) = H(w_t-1, w_t) - H(w_t-1)
    assert _entropy(unigram) > 7.0
    assert _entropy(unigram) - conditional > 3.0
    assert conditional > 1.5


def test_every_template_fills_with_agreeing_pronouns():
    rng = random.Random(0)
    templates = [t for beats in story_data.PLOTS.values() for beat in beats for t in beat]
    templates += [*story_data.OPENINGS, *story_data.HABITS, *story_data.ENDINGS, *story_data.GENERIC_MORALS]
    templates += [m for morals in story_data.PLOT_MORALS.values() for m in morals]
    assert len(templates) >= 100
    for subject, wrong in (("she", r"\b(he|him|his|himself)\b"), ("he", r"\b(she|her|herself)\b")):
        slots = story_generator._story_slots(rng)
        for prefix in ("", "f"):
            for key, value in story_generator._pronouns(subject).items():
                slots[prefix + key] = value
            slots[prefix + "He"], slots[prefix + "His"] = subject.capitalize(), slots[prefix + "his"].capitalize()
        slots["grownup_pronoun"] = subject
        slots["friend_called"] = f"{slots['his']} friend Tom"
        for template in templates:
            if subject == "he" and "mama" in template:
                continue  # the mother animal is always "she"
            text = story_generator._fill(template, slots)
            assert not re.search(wrong, text, re.IGNORECASE), (template, text)


def test_generate_stories_rejects_a_bad_size(tmp_path):
    with pytest.raises(ValueError, match="target_bytes"):
        generate_stories(tmp_path / "x.txt", target_bytes=0, seed=0)
    assert not (tmp_path / "x.txt").exists()


# A fresh interpreter runs stdlib_prose and reports which modules it imported and what it printed:
# reading the stdlib must not import (and so run) modules such as `this` or `antigravity`.
_PROSE_SCRIPT = """
import json, sys
from cs336_core.corpora import stdlib_prose
before = set(sys.modules)
info = stdlib_prose(sys.argv[1])
print(json.dumps({"info": info, "new_modules": sorted(set(sys.modules) - before)}))
"""


@pytest.fixture(scope="module")
def prose(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    path = tmp_path_factory.mktemp("prose") / "prose.txt"
    done = subprocess.run([sys.executable, "-c", _PROSE_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=120, check=True)
    report = json.loads(done.stdout)  # fails if anything else was printed (e.g. the Zen of Python)
    return path, report["info"], report["new_modules"]


def test_stdlib_prose_imports_nothing_with_side_effects(prose):
    _, _, new_modules = prose
    assert not {"this", "antigravity", "tkinter", "turtle", "idlelib", "webbrowser"} & set(new_modules)
    # Only the machinery it uses (ast.get_docstring -> inspect, source decoding, sysconfig's data).
    allowed = {"pydoc_data", "pydoc_data.topics", "inspect", "dis", "opcode", "_opcode", "linecache",
               "token", "tokenize"}
    unexpected = {m for m in new_modules if not m.startswith(("encodings.", "_sysconfigdata"))} - allowed
    assert not unexpected


def test_stdlib_prose_is_real_english(prose):
    path, info, _ = prose
    text = path.read_text(encoding="utf-8")
    assert info["bytes"] == path.stat().st_size > 1_000_000
    documents = list(iter_documents(path))
    assert info["documents"] == len(documents) > 3000
    assert len(set(documents)) == len(documents)
    assert all(len(doc.split()) >= 8 for doc in documents)
    words = collections.Counter(w.lower() for w in re.findall(r"[A-Za-z]+", text))
    top = {w for w, _ in words.most_common(30)}
    assert {"the", "a", "of", "to", "is", "and"} <= top
    from pydoc_data.topics import topics

    assert topics["assignment"].split("\n")[0].strip() in text  # pydoc topics are included


def test_stdlib_prose_is_deterministic_and_respects_max_bytes(prose, tmp_path):
    path, info, _ = prose
    again = tmp_path / "again.txt"
    calls = []
    stdlib_prose(again, progress=lambda *args: calls.append(args))
    assert len(calls) > 10 and calls[-1][1] == calls[-1][2] == info["source_files"] + 1
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
    assert again.read_bytes() == path.read_bytes()
    capped = tmp_path / "capped.txt"
    capped_info = stdlib_prose(capped, max_bytes=200_000)
    assert 150_000 < capped.stat().st_size == capped_info["bytes"] <= 200_000
    assert path.read_bytes().startswith(capped.read_bytes())


def test_iter_documents_across_chunk_boundaries_and_gzip(stories, tmp_path):
    text = stories.read_text(encoding="utf-8")
    assert len(text) > 1 << 20  # more than one read chunk
    expected = [d.strip() for d in text.split(ENDOFTEXT) if d.strip()]
    assert list(iter_documents(stories)) == expected
    packed = tmp_path / "stories.txt.gz"
    packed.write_bytes(gzip.compress(stories.read_bytes()))
    assert list(iter_documents(packed)) == expected
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        next(iter_documents(tmp_path / "missing.txt"))


def test_split_documents_partitions_deterministically(stories, tmp_path):
    info = split_documents(stories, tmp_path / "t.txt", tmp_path / "v.txt", valid_fraction=0.1, seed=1)
    split_documents(stories, tmp_path / "t2.txt", tmp_path / "v2.txt", valid_fraction=0.1, seed=1)
    assert (tmp_path / "t.txt").read_bytes() == (tmp_path / "t2.txt").read_bytes()
    assert (tmp_path / "v.txt").read_bytes() == (tmp_path / "v2.txt").read_bytes()
    train, valid = list(iter_documents(tmp_path / "t.txt")), list(iter_documents(tmp_path / "v.txt"))
    original = list(iter_documents(stories))
    assert sorted(train + valid) == sorted(original)
    assert (info["train_documents"], info["valid_documents"]) == (len(train), len(valid))
    assert 0.07 < len(valid) / len(original) < 0.13
    assert info["train_bytes"] == (tmp_path / "t.txt").stat().st_size


def test_split_documents_never_leaves_a_side_empty(tmp_path):
    src = tmp_path / "two.txt"
    src.write_text(f"first story\n{ENDOFTEXT}\nsecond story\n{ENDOFTEXT}\n")
    info = split_documents(src, tmp_path / "t.txt", tmp_path / "v.txt", valid_fraction=0.01, seed=0)
    assert (info["train_documents"], info["valid_documents"]) == (1, 1)
    assert list(iter_documents(tmp_path / "v.txt")) == ["second story"]
    with pytest.raises(ValueError, match="valid_fraction"):
        split_documents(src, tmp_path / "a.txt", tmp_path / "b.txt", valid_fraction=1.0, seed=0)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no documents"):
        split_documents(empty, tmp_path / "a.txt", tmp_path / "b.txt", valid_fraction=0.5, seed=0)
    assert not (tmp_path / "a.txt").exists()


def test_sample_documents_is_uniform_and_deterministic(stories):
    documents = list(iter_documents(stories))
    sample = sample_documents(stories, n=10, seed=5)
    assert sample == sample_documents(stories, n=10, seed=5)
    assert sample != sample_documents(stories, n=10, seed=6)
    assert len(set(sample)) == 10 and all(doc in documents for doc in sample)
    positions = [documents.index(doc) for doc in sample]
    assert positions == sorted(positions)
    assert positions[-1] > len(documents) // 2  # not just the head of the file
    # Every document is equally likely: over many seeds each position is drawn about n/N of the time.
    small = stories.parent / "small.txt"
    small.write_text("".join(f"doc {i}\n{ENDOFTEXT}\n" for i in range(20)))
    hits = collections.Counter(d for seed in range(400) for d in sample_documents(small, n=5, seed=seed))
    assert len(hits) == 20 and min(hits.values()) > 60 and max(hits.values()) < 140  # expected 100
    assert sample_documents(small, n=50) == [f"doc {i}" for i in range(20)]


def test_corpus_stats(stories):
    stats = corpus_stats(stories)
    assert stats["bytes"] == stories.stat().st_size
    assert stats["documents"] == stories.read_text().count(ENDOFTEXT)
    assert stats["preview"].startswith(stories.read_text()[:50])


def test_materialize_corpus_generates_and_splits(tmp_path):
    from cs336_core.corpora import materialize_corpus

    out = tmp_path / "corpora" / "stories"
    stats = materialize_corpus(out, source="generated_stories", target_bytes=50_000, seed=2, valid_fraction=0.1)
    whole = generate_stories(tmp_path / "whole.txt", target_bytes=50_000, seed=2)
    assert sorted(p.name for p in out.iterdir()) == ["all.txt", "stats.json", "train.txt", "valid.txt"]
    assert (out / "all.txt").read_bytes() == (tmp_path / "whole.txt").read_bytes()
    assert stats == {split: corpus_stats(out / f"{split}.txt") for split in ("train", "valid")}
    assert stats["train"]["documents"] + stats["valid"]["documents"] == whole["documents"]
    assert json.loads((out / "stats.json").read_text()) == {"source": "generated_stories", **stats}
    capped = materialize_corpus(tmp_path / "web", source="stdlib_prose", target_bytes=100_000)
    assert capped["train"]["bytes"] + capped["valid"]["bytes"] <= 100_000


def test_materialize_corpus_from_local_files(tmp_path):
    from cs336_core.corpora import materialize_corpus

    train, valid = tmp_path / "train_in.txt", tmp_path / "valid_in.txt"
    train.write_text("".join(f"story {i}\n{ENDOFTEXT}\n" for i in range(50)))
    valid.write_text("just text, no separator needed for a local file\n")
    out = tmp_path / "given"
    materialize_corpus(out, source="local", train_path=str(train), valid_path=str(valid))
    assert (out / "train.txt").read_bytes() == train.read_bytes()
    assert (out / "valid.txt").read_bytes() == valid.read_bytes()
    split = materialize_corpus(tmp_path / "split", source="local", train_path=str(train), valid_fraction=0.2, seed=1)
    assert split["train"]["documents"] + split["valid"]["documents"] == 50
    assert json.loads((tmp_path / "split" / "stats.json").read_text())["source"] == "local"


def test_materialize_corpus_refuses_before_writing_anything(tmp_path):
    from cs336_core.corpora import materialize_corpus

    good = tmp_path / "good.txt"
    good.write_text(f"A story.\n{ENDOFTEXT}\n")
    html = tmp_path / "page.txt"
    html.write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="the local corpus file is not a usable text corpus: .*is an HTML page"):
        materialize_corpus(out, source="local", train_path=str(good), valid_path=str(html))
    with pytest.raises(FileNotFoundError, match=f"corpus file not found: {re.escape(str(tmp_path / 'nope.txt'))}"):
        materialize_corpus(out, source="local", train_path=str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="unknown corpus source 'web'"):
        materialize_corpus(out, source="web")
    with pytest.raises(ValueError, match="downloads_dir"):
        materialize_corpus(out, source="download", train_url="http://x/a.txt", valid_url="http://x/b.txt")
    assert not out.exists() or not any(out.iterdir())


def test_download_cache_path_is_one_folder_per_url(tmp_path):
    from cs336_core.corpora import download_cache_path

    a = download_cache_path(tmp_path, "https://example.org/a/owt_valid.txt.gz")
    b = download_cache_path(tmp_path, "https://example.org/b/owt_valid.txt.gz")
    assert a.name == b.name == "owt_valid.txt" and a.parent != b.parent
    assert a.parent.parent == tmp_path and a == download_cache_path(tmp_path, "https://example.org/a/owt_valid.txt.gz")


def test_bpe_learns_words_from_the_stories(stories, tmp_path):
    from cs336_core.tokenization import Tokenizer, train_bpe

    vocab, merges = train_bpe(stories, 1000, [ENDOFTEXT], num_workers=1)
    assert len(vocab) == 1000
    learned = set(vocab.values())
    assert {b"Once", b" upon", b" said", b" friend", b" learned"} <= learned
    # The same characters shuffled (no words left) give BPE almost nothing long to merge.
    characters = list(stories.read_text(encoding="utf-8").replace(ENDOFTEXT, " "))
    random.Random(0).shuffle(characters)
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("".join(characters), encoding="utf-8")
    shuffled_vocab, _ = train_bpe(shuffled, 1000, [ENDOFTEXT], num_workers=1)
    long_tokens = sum(len(token) >= 4 for token in learned)
    assert long_tokens > 250 and long_tokens > 10 * sum(len(t) >= 4 for t in shuffled_vocab.values())
    tokenizer = Tokenizer(vocab, merges, [ENDOFTEXT])
    sample = "\n".join(sample_documents(stories, n=20, seed=0))
    assert len(sample.encode()) / len(tokenizer.encode(sample)) > 3.0  # bytes per token


def test_command_line(tmp_path):
    def run(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "cs336_core.corpora", *args], capture_output=True, text=True,
                              timeout=60, check=True)
        return json.loads(done.stdout)

    made = run("stories", str(tmp_path / "s.txt"), "--bytes", "50e3", "--seed", "2")
    assert made["bytes"] == (tmp_path / "s.txt").stat().st_size >= 50_000
    assert run("stats", str(tmp_path / "s.txt"))["documents"] == made["documents"]
    parts = run("split", str(tmp_path / "s.txt"), str(tmp_path / "t.txt"), str(tmp_path / "v.txt"))
    assert parts["train_documents"] + parts["valid_documents"] == made["documents"]
    assert run("sample", str(tmp_path / "s.txt"), "-n", "2")["documents"] == sample_documents(tmp_path / "s.txt", n=2)
    bad = subprocess.run([sys.executable, "-m", "cs336_core.corpora", "stats", str(tmp_path / "nope.txt")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "nope.txt" in bad.stderr


def test_importing_corpora_pulls_in_neither_torch_nor_dagster():
    code = "import sys, cs336_core.corpora; print(sorted(m for m in ('torch', 'dagster', 'pandas') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_command_line_error_is_one_line_naming_the_problem(tmp_path):
    """Bad paths and arguments give `... <command>: error: <file or argument>: <problem>` and exit
    1 (or argparse's 2), never a traceback."""
    import functools
    import http.server
    import threading

    a_file = tmp_path / "a_file.txt"
    a_file.write_text(f"One document.\n{ENDOFTEXT}\n")
    missing = tmp_path / "missing.txt"
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    cases = [  # (arguments, exit code, what the error line must name)
        (["stats", str(missing)], 1, f"corpus file not found: {missing}"),
        (["sample", str(missing)], 1, f"corpus file not found: {missing}"),
        (["sample", str(a_file), "-n", "0"], 1, "n must be positive"),
        (["split", str(missing), str(tmp_path / "t.txt"), str(tmp_path / "v.txt")], 1, str(missing)),
        (["split", str(a_file), str(tmp_path / "t.txt"), str(tmp_path / "v.txt"), "--valid-fraction", "1.5"], 1,
         "valid_fraction must be strictly between 0 and 1"),
        (["split", str(a_file), str(a_file / "t.txt"), str(tmp_path / "v.txt")], 1, f"{a_file}: not a directory"),
        (["stories", str(a_file / "s.txt"), "--bytes", "1000"], 1, f"{a_file}: not a directory"),
        (["stories", str(tmp_path), "--bytes", "1000"], 1, f"{tmp_path}: is a directory"),
        (["stories", str(tmp_path / "s.txt"), "--bytes", "-5"], 2, "argument --bytes"),
        (["stories", str(tmp_path / "s.txt"), "--bytes", "nan"], 2, "argument --bytes"),
        (["prose", str(a_file / "p.txt")], 1, f"{a_file}: not a directory"),
        (["prose", str(tmp_path / "p.txt"), "--max-bytes", "0"], 2, "argument --max-bytes"),
        (["download", f"{base}/missing.txt", str(tmp_path / "d.txt")], 1, f"HTTP 404 File not found for {base}/missing.txt"),
        (["download", f"{base}/a_file.txt", str(a_file / "d.txt")], 1, f"{a_file}: not a directory"),
        (["download", "tinystories/nope", str(tmp_path / "d.txt")], 1, "unknown corpus 'tinystories/nope'"),
        (["download", f"{base}/a_file.txt", str(tmp_path / "d.txt"), "--sha256", "abc"], 1,
         "sha256 must be 64 hex digits"),
    ]
    try:
        for args, code, named in cases:
            done = subprocess.run([sys.executable, "-m", "cs336_core.corpora", *args], capture_output=True,
                                  text=True, timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == code and "Traceback" not in done.stderr, (args, done.stderr)
            assert lines[-1].startswith(f"python -m cs336_core.corpora {args[0]}: error: "), (args, done.stderr)
            assert named in lines[-1], (args, done.stderr)
            assert code == 2 or len(lines) == 1, (args, done.stderr)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]  # nothing half-written
