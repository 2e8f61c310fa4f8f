"""The tokenizer and dataset asset checks fail on bad artifacts (not only pass on good ones).

Each test damages one artifact of a private copy of the session graph and runs the checks through
Dagster, the way the UI's "Execute checks" does.
"""

import numpy as np
import pytest
from dagster import AssetSelection, materialize

from cs336_core.tokenization import load_vocab_merges, save_vocab_merges


def run_checks(graph, asset: str) -> dict[str, bool]:
    """check name -> passed, for the checks of `asset` alone (the asset itself is not rebuilt)."""
    defs = graph.defs
    with graph.instance() as instance:
        result = materialize([*defs.assets, *defs.asset_checks], instance=instance, resources=defs.resources,
                             selection=AssetSelection.checks_for_assets(asset))
    assert result.success
    assert not result.get_asset_materialization_events(), "only the checks were meant to run"
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def tokenizer_files(graph, role: str):
    directory = graph.data / "tokenizers" / role
    return directory / "vocab.json", directory / "merges.txt"


def test_tokenizer_checks_pass_on_the_trained_tokenizer(graph_copy):
    assert run_checks(graph_copy, "stories_tokenizer") == {"vocab_size": True, "merges_reproducible": True}


def test_truncated_vocab_fails_the_vocab_size_check(graph_copy):
    paths = tokenizer_files(graph_copy, "stories")
    vocab, merges = load_vocab_merges(*paths)
    # The last merge and its token dropped together: consistent, but one entry short.
    del vocab[max(vocab)]
    save_vocab_merges(vocab, merges[:-1], *paths)
    assert run_checks(graph_copy, "stories_tokenizer") == {"vocab_size": False, "merges_reproducible": True}


def test_merges_that_do_not_rebuild_the_vocab_fail_the_reproducibility_check(graph_copy):
    paths = tokenizer_files(graph_copy, "web")
    vocab, merges = load_vocab_merges(*paths)
    # Two merges swapped: their tokens trade ids, or the second joins a token not made yet.
    merges[0], merges[1] = merges[1], merges[0]
    save_vocab_merges(vocab, merges, *paths)
    assert run_checks(graph_copy, "web_tokenizer") == {"vocab_size": True, "merges_reproducible": False}


def test_merge_of_an_unknown_token_fails_the_reproducibility_check(graph_copy):
    paths = tokenizer_files(graph_copy, "stories")
    vocab, merges = load_vocab_merges(*paths)
    merges[-1] = (b"\xff\xfe never made", merges[-1][1])
    save_vocab_merges(vocab, merges, *paths)
    assert run_checks(graph_copy, "stories_tokenizer")["merges_reproducible"] is False


@pytest.mark.parametrize("damage", ["id_equal_to_vocab_size", "empty_split"])
def test_bad_token_file_fails_the_id_range_check(graph_copy, damage):
    path = graph_copy.data / "tokens" / "stories" / "stories" / "valid.npy"
    ids = np.load(path)
    vocab, _ = load_vocab_merges(*tokenizer_files(graph_copy, "stories"))
    if damage == "id_equal_to_vocab_size":
        ids[len(ids) // 2] = len(vocab)  # one past the largest id
    else:
        ids = ids[:0]
    np.save(path, ids.astype(np.uint16))
    assert run_checks(graph_copy, "stories_tokens") == {"ids_below_vocab_size": False}


def test_token_files_pass_the_id_range_check(graph_copy):
    assert run_checks(graph_copy, "web_tokens") == {"ids_below_vocab_size": True}
