"""The benchmarks' own logic: bench/bench_bpe_scaling.py end to end on a tiny generated corpus, and
bench/bench_tokenizer.py's comparison of merge lists. (The benchmarks themselves run on the shared
corpus, by hand: docs/benchmarks.md.)"""

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "bench"
EOT = "<|endoftext|>"


def load_bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated_corpus(path: Path, target_bytes: int = 320_000, seed: int = 0) -> Path:
    """Documents of Zipf-distributed made-up words (many of them rare, as in real text), with
    punctuation and numbers, separated like the benchmark corpus by "\\n<|endoftext|>\\n"."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(8000)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    documents, size = [], 0
    while size < target_bytes:
        sentences = []
        for _ in range(rng.randint(2, 8)):
            sentence = rng.choices(words, weights, k=rng.randint(4, 18))
            sentence[0] = sentence[0].capitalize()
            if rng.random() < 0.2:
                sentence.insert(rng.randrange(len(sentence)), str(rng.randint(0, 2025)))
            sentences.append(" ".join(sentence) + rng.choice(".!?;"))
        documents.append(" ".join(sentences))
        size += len(documents[-1]) + len(EOT) + 2
    path.write_text(f"\n{EOT}\n".join(documents) + f"\n{EOT}\n", encoding="utf-8")
    return path


def test_scaling_benchmark_measures_and_projects(tmp_path):
    corpus = generated_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "scaling.json"
    result = subprocess.run([sys.executable, str(BENCH / "bench_bpe_scaling.py"), "--corpus", str(corpus),
                             "--sizes", "0.1,0.3,1.2", "--base-mb", "0.3", "--vocab-sizes", "700,400", "--workers", "2",
                             "--work-dir", str(tmp_path / "work"), "--json-out", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| projection |" in result.stdout and "| corpus |" in result.stdout
    summary = json.loads(out.read_text())

    runs = summary["measurements"]
    assert [(r["size_mb"], r["vocab_size"]) for r in runs] == [(0.1, 700), (0.1, 400), (0.3, 700), (0.3, 400),
                                                                (1.2, 700), (1.2, 400)]
    for run in runs:
        assert run["seconds"] > 0 and run["cpu"] > 0 and run["peak_rss"] > 0 and run["bytes"] > 0
        assert run["pretokenize_seconds"] > 0 and run["merge_seconds"] > 0
        assert run["pretokenize_seconds"] + run["merge_seconds"] == pytest.approx(run["seconds"])
        assert run["merges"] == run["vocab_size"] - 257 and run["distinct"] > 0
    distinct = {r["size_mb"]: r["distinct"] for r in runs}
    sizes = {r["size_mb"]: r["bytes"] for r in runs}
    assert "4 copies" in runs[-1]["kind"] and sizes[1.2] == pytest.approx(4 * sizes[0.3], rel=0.05)  # renamed words grow a letter
    # the varied copies bring new words: more distinct pre-tokens than one copy, fewer than 4x
    assert distinct[0.1] < distinct[0.3] < distinct[1.2] < 4 * distinct[0.3]

    fit = summary["fit"]
    assert 0 < fit["heaps_beta"] < 1 and fit["pretokenize_core_seconds_per_byte"] > 0
    projections = summary["projection"]
    assert [p["cores"] for p in projections] == [2, 16]
    for projection in projections:
        for key in ("distinct", "pretokenize_seconds", "merge_seconds", "seconds", "peak_rss", "count_phase_rss"):
            assert projection[key] > 0, key
        assert projection["merges"] == 32_000 - 257
    assert projections[1]["pretokenize_seconds"] == pytest.approx(projections[0]["pretokenize_seconds"] / 8)
    assert not (tmp_path / "work" / "corpus_1.2mb.txt").read_bytes().count(EOT.encode()) % 4  # specials intact


def test_scaling_benchmark_refuses_a_work_dir_in_the_repository(tmp_path):
    corpus = generated_corpus(tmp_path / "corpus.txt", target_bytes=20_000)
    result = subprocess.run([sys.executable, str(BENCH / "bench_bpe_scaling.py"), "--corpus", str(corpus),
                             "--work-dir", str(REPO_ROOT / "bench" / "scaling_corpora")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "inside the repository" in result.stderr
    assert not (REPO_ROOT / "bench" / "scaling_corpora").exists()


def test_varied_copies_keep_frequent_words_and_special_tokens():
    scaling = load_bench_module("bench_bpe_scaling")
    base = (b"the house and the garden " * 60 + b"zebra quokka\n<|endoftext|>\nendoftext house ") * 3
    counts = {w: base.count(w) for w in (b"house", b"garden", b"zebra", b"quokka", b"endoftext")}
    varied = scaling.varied_copy(base, {**counts, b"zebra": 3, b"quokka": 3}, 2, fraction=1.0, max_count=50)
    assert varied.count(b"<|endoftext|>") == base.count(b"<|endoftext|>")
    assert varied.count(b" house ") == base.count(b" house ")  # frequent: never renamed
    assert b"zebra " not in varied and b"quokka\n" not in varied  # rare and picked (fraction 1): renamed
    assert scaling.varied_copy(base, counts, 3, fraction=0.0, max_count=50) == base


def test_compare_merges_reports_equal_lists_and_the_first_difference():
    bench = load_bench_module("bench_tokenizer")
    ours = [(b"t", b"h"), (b"th", b"e"), (b" ", b"the"), (b"a", b"n")]
    assert bench.compare_merges(ours, list(ours)) == "yes"
    assert bench.compare_merges([], []) == "yes"
    theirs = [(b"t", b"h"), (b"th", b"e"), (b"a", b"n"), (b" ", b"the")]
    assert bench.compare_merges(ours, theirs) == (
        "no, first differs at merge #3 (ours (b' ', b'the') vs theirs (b'a', b'n'))")
    assert bench.compare_merges(ours, ours[:2]).startswith("no, first differs at merge #3 (ours (b' ', b'the') vs theirs none")
    assert bench.compare_merges(ours[:1], ours).startswith("no, first differs at merge #2 (ours none vs theirs (b'th', b'e')")


def test_merges_recovered_from_ranks_and_from_gpt2_characters(tmp_path):
    bench = load_bench_module("bench_tokenizer")
    merges = [(b"a", b"b"), (b"ab", b"c"), (b"c", b"ab"), (b"\xc4", b"\xa0"), (b" ", b"abc")]
    ranks = {bytes([b]): b for b in range(256)}
    for a, b in merges:
        ranks[a + b] = len(ranks)
    assert bench.merges_from_ranks(ranks) == merges
    from cs336_core.bpe import bytes_to_unicode

    table = bytes_to_unicode()
    saved = tmp_path / "merges.json"
    saved.write_text(json.dumps({"format": "gpt2_unicode",
                                 "data": [["".join(table[x] for x in a), "".join(table[x] for x in b)] for a, b in merges]}))
    assert bench.load_merges(saved) == merges
