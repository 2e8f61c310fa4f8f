"""Dagster's own staleness verdicts (what the UI shows as stale) after assets are rebuilt or code changes.

Every test works on a private copy of the session graph, whose SQLite instance already holds the
history of materializing the whole graph once.
"""

import shutil
from pathlib import Path

from dagster import AssetKey, materialize
from dagster._core.definitions.data_version import (DATA_VERSION_TAG, CachingStaleStatusResolver, StaleCauseCategory,
                                                    StaleStatus)
from dagster._core.loader import LoadingContextForTest

import cs336_assets.versioning as versioning
from cs336_assets.definitions import build_defs
from cs336_assets.versioning import code_version

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolver(defs, instance) -> CachingStaleStatusResolver:
    """Fresh per question: the resolver caches what it read for the life of one request."""
    return CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))


def statuses(defs, instance, *keys: str) -> dict[str, StaleStatus]:
    found = resolver(defs, instance)
    return {key: found.get_status(AssetKey(key)) for key in keys}


def data_causes(defs, instance, *keys: str) -> dict[str, set[str]]:
    """key -> the upstream assets whose new data version makes it stale.

    Code-version causes are left out on purpose: these tests run beside edits of cs336_core (a
    shared checkout), which may change code versions between the session graph and the test.
    """
    found = resolver(defs, instance)
    return {key: {cause.dependency.asset_key.to_user_string() for cause in found.get_stale_causes(AssetKey(key))
                  if cause.category == StaleCauseCategory.DATA} for key in keys}


def rematerialize(defs, instance, selection: list[str], run_config: dict | None = None):
    result = materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=selection,
                         run_config=run_config or {})
    assert result.success
    return result


FRESH, STALE = StaleStatus.FRESH, StaleStatus.STALE


def test_the_materialized_graph_is_consistent(graph_copy):
    """After the whole graph is materialized in order, no asset waits for newer upstream data."""
    with graph_copy.instance() as instance:
        graph = graph_copy.defs.resolve_asset_graph()
        keys = [key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).is_partitioned]
        found = data_causes(graph_copy.defs, instance, *keys)
    assert found == {key: set() for key in keys}


def test_main_run_rebuilt_with_other_run_config_makes_its_readers_stale(graph_copy):
    """Issue item 8: `stories_main_run` rerun with max_steps 4 instead of the preset's 20."""
    readers = ("main_runs_curves", "samples", "report")
    defs = graph_copy.defs
    with graph_copy.instance() as instance:
        assert data_causes(defs, instance, *readers) == {key: set() for key in readers}
        rematerialize(defs, instance, ["stories_main_run"], {"ops": {"stories_main_run": {"config": {"max_steps": 4}}}})
        assert statuses(defs, instance, *readers) == {key: STALE for key in readers}
        assert data_causes(defs, instance, *readers) == {key: {"stories_main_run"} for key in readers}
        # The verdict is about this run only: other assets are untouched.
        assert data_causes(defs, instance, "web_tokens", "lr_sweep_curves") == {
            "web_tokens": set(), "lr_sweep_curves": set()}


def test_tokenizer_retrained_on_a_changed_corpus_makes_the_tokens_stale(graph_copy):
    data, defs = graph_copy.data, graph_copy.defs
    # The stories corpus changed on disk (here: replaced by other text), then the tokenizer is retrained.
    shutil.copyfile(data / "corpora" / "web" / "train.txt", data / "corpora" / "stories" / "train.txt")
    with graph_copy.instance() as instance:
        assert data_causes(defs, instance, "stories_tokens") == {"stories_tokens": set()}
        rematerialize(defs, instance, ["stories_tokenizer"])
        found = statuses(defs, instance, "stories_tokens", "tokenizer_experiments", "samples")
        causes = data_causes(defs, instance, "stories_tokens", "tokenizer_experiments", "samples", "web_tokens")
    assert found == {"stories_tokens": STALE, "tokenizer_experiments": STALE, "samples": STALE}
    assert causes == {"stories_tokens": {"stories_tokenizer"}, "tokenizer_experiments": {"stories_tokenizer"},
                      "samples": {"stories_tokenizer"}, "web_tokens": set()}


def test_identical_rebuild_keeps_everything_downstream_fresh(graph_copy):
    """A rerun that produces the same vocab and merges is the same data version: nothing needs a rebuild
    (its stats.json timings differ, and are deliberately not part of the version)."""
    downstream = ("stories_tokens", "tokenizer_experiments", "samples", "report")
    with graph_copy.instance() as instance:
        before = instance.get_latest_materialization_event(AssetKey("stories_tokenizer"))
        rematerialize(graph_copy.defs, instance, ["stories_tokenizer"])
        after = instance.get_latest_materialization_event(AssetKey("stories_tokenizer"))
        found = data_causes(graph_copy.defs, instance, *downstream)
    assert after.run_id != before.run_id  # it did run again
    assert after.asset_materialization.tags[DATA_VERSION_TAG] == before.asset_materialization.tags[DATA_VERSION_TAG]
    assert found == {key: set() for key in downstream}


def _copy_packages(tmp_path: Path) -> tuple[Path, Path]:
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    core = shutil.copytree(REPO_ROOT / "cs336_core", tmp_path / "cs336_core", ignore=ignore)
    assets = shutil.copytree(REPO_ROOT / "cs336_assets", tmp_path / "cs336_assets", ignore=ignore)
    return Path(core), Path(assets)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_code_version_hashes_the_sources_an_asset_imports(tmp_path):
    core, assets = _copy_packages(tmp_path)

    def version(asset_module: str) -> str:
        return code_version(str(assets / "definitions" / asset_module), config={"knob": 1}, core_dir=core)

    tokens = version("datasets.py")
    # A copy hashes like the original: the version depends on content, not on where it lives.
    assert tokens == code_version(str(REPO_ROOT / "cs336_assets" / "definitions" / "datasets.py"), config={"knob": 1})
    for edited, comment in ((core / "files.py", "#"), (core / "bpe" / "_fastbpe.c", "/* */"),
                            (core / "bpe" / "_fasttrain.c", "/* */"), (core / "bpe" / "_bpe_scan.h", "/* */"),
                            (core / "bpe" / "_unicode_classes.h", "/* */"),
                            (assets / "definitions" / "tokenizers.py", "#")):
        _append(edited, f"\n{comment} edited\n")
        assert version("datasets.py") != tokens, f"editing {edited.name} left the tokens' version unchanged"
        tokens = version("datasets.py")
    experiments = version("experiments.py")
    _append(core / "corpora" / "documents.py", "\n# edited\n")  # a module of a subpackage
    assert version("experiments.py") != experiments
    accounting = version("accounting.py")
    # Code the asset cannot reach (the model is not part of encoding), and the presets module
    # (its knobs are hashed as config), leave the version alone.
    _append(core / "model.py", "\n# edited\n")
    _append(assets / "presets.py", "\n# edited\n")
    assert version("datasets.py") == tokens
    assert version("accounting.py") != accounting  # accounting imports the model
    assert code_version(str(assets / "definitions" / "datasets.py"), config={"knob": 2}, core_dir=core) != tokens


def test_edited_accelerator_source_makes_the_tokenizer_assets_stale(graph_copy, tmp_path, monkeypatch):
    core, _ = _copy_packages(tmp_path)
    monkeypatch.setattr(versioning, "CORE_DIR", core)
    keys = ("stories_tokenizer", "stories_tokens", "accounting_tables")
    with graph_copy.instance() as instance:
        # Materialized from the copy first, so no edit elsewhere in the checkout matters.
        defs = build_defs("test", graph_copy.data)
        rematerialize(defs, instance, list(keys))
        assert statuses(defs, instance, *keys) == {key: FRESH for key in keys}
        _append(core / "bpe" / "_fastbpe.c", "\n/* a changed accelerator */\n")
        defs = build_defs("test", graph_copy.data)
        found = statuses(defs, instance, *keys)
        causes = resolver(defs, instance).get_stale_causes(AssetKey("stories_tokens"))
    assert found == {"stories_tokenizer": STALE, "stories_tokens": STALE, "accounting_tables": FRESH}
    assert [(c.category, c.reason) for c in causes] == [(StaleCauseCategory.CODE, "has a new code version")]
