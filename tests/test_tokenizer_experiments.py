"""The tokenizer measurements of handout 2.5/2.7 (cs336_core.tokenizer_experiments), on small corpora."""

import time

import pytest

from cs336_core.corpora import generate_stories, stdlib_prose
from cs336_core.tokenization import Tokenizer
from cs336_core.tokenizer_experiments import compare_tokenizers
from cs336_core.tokenizer_profile import PeakMemory, train_tokenizer

SPECIALS = ["<|endoftext|>"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A generated-stories text and a stdlib-prose text of ~150 KB each."""
    root = tmp_path_factory.mktemp("texts")
    generate_stories(root / "stories.txt", target_bytes=150_000, seed=0)
    stdlib_prose(root / "prose.txt", max_bytes=150_000)
    return {"stories": root / "stories.txt", "prose": root / "prose.txt"}


@pytest.fixture(scope="module")
def trained(corpora, tmp_path_factory):
    """name -> (stats, Tokenizer loaded from the saved files) of a 400-token BPE trained on each text."""
    root = tmp_path_factory.mktemp("tokenizers")
    found = {}
    for name, text in corpora.items():
        files = root / f"{name}.json", root / f"{name}.txt"
        stats = train_tokenizer(text, 400, SPECIALS, *files, longest=5)
        found[name] = stats, Tokenizer.from_files(*files, SPECIALS)
    return found


def test_train_tokenizer_saves_the_tokenizer_and_records_its_profile(trained, corpora):
    stats, tokenizer = trained["stories"]
    assert stats["vocab_size"] == len(tokenizer.vocab) == 400
    assert stats["merges"] == 400 - 256 - len(SPECIALS)
    assert stats["train_bytes"] == corpora["stories"].stat().st_size
    assert set(stats["phase_seconds"]) == {"pretokenize", "merge"}
    assert sum(stats["phase_seconds"].values()) == pytest.approx(stats["training_seconds"], abs=0.5)
    assert stats["peak_memory_mb"] >= 0
    longest = stats["longest_tokens"]
    assert len(longest) == 5
    assert [t["bytes"] for t in longest] == sorted((t["bytes"] for t in longest), reverse=True)
    specials = {token.encode() for token in SPECIALS}
    assert longest[0]["bytes"] == max(len(t) for t in tokenizer.vocab.values() if t not in specials)
    assert all(t["token"] != "<|endoftext|>" for t in longest)


def test_compare_tokenizers_covers_every_pair_and_the_cross_case(trained, corpora):
    tokenizers = {name: tokenizer for name, (_, tokenizer) in trained.items()}
    logged = []
    rows = compare_tokenizers(tokenizers, corpora, documents=20, throughput_bytes=20_000, pile_bytes=825 * 10**9,
                              log=logged.append)
    assert list(rows) == [("stories", "stories"), ("stories", "prose"), ("prose", "stories"), ("prose", "prose")]
    for (tok, text), row in rows.items():
        assert row["tokenizer"] == f"{tok} (400)" and row["text"] == text and row["documents"] == 20
        assert row["bytes_per_token"] == pytest.approx(row["bytes"] / row["tokens"], abs=1e-3)
        assert row["pile_825gb_hours"] == pytest.approx(825e9 / (row["throughput_mb_per_s"] * 1e6) / 3600, rel=0.01)
    # The same sampled documents for every tokenizer, and each tokenizer compresses its own text best.
    assert rows["stories", "stories"]["bytes"] == rows["prose", "stories"]["bytes"]
    assert rows["stories", "stories"]["bytes_per_token"] > rows["prose", "stories"]["bytes_per_token"]
    assert rows["prose", "prose"]["bytes_per_token"] > rows["stories", "prose"]["bytes_per_token"]
    assert len(logged) == 2 and all("MB/s" in line for line in logged)


def test_peak_memory_sees_what_the_block_allocated():
    with PeakMemory(interval=0.01) as memory:
        block = b"x" * (64 << 20)  # written, so every page is resident
        time.sleep(0.1)
    del block
    assert memory.peak_extra_bytes >= 48 << 20
