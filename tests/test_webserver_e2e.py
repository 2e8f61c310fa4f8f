"""End to end against a real `dagster dev`: launch through GraphQL, poll, read the event log, then
load the asset graph in headless Chromium and check what it rendered."""

import shutil

import pytest

from conftest import dagster_env
from webui import chromium_page, dagster_dev, open_asset_graph

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make chromium)")
def test_graphql_materialization_and_asset_graph_page(tmp_path):
    data = tmp_path / "data"
    env = dagster_env(data, tmp_path / "dagster_home")
    with dagster_dev(env, log_dir=tmp_path) as server:
        run_id = server.launch_materialization(["stories_corpus"],
                                               run_config={"ops": {"stories_corpus": {"config": {"valid_fraction": 0.2}}}})
        status = server.wait_for_run(run_id, timeout=300)
        events = server.run_events(run_id)
        assert status == "SUCCESS", [e.get("message") for e in events][-20:]
        materialized = [e["assetKey"]["path"] for e in events if e["__typename"] == "MaterializationEvent"]
        assert materialized == [["stories_corpus"]]
        assert any(e["__typename"] == "RunSuccessEvent" for e in events)
        # The run wrote the artifacts where the resource says, with the run config applied.
        train, valid = (data / "corpora" / "stories" / n for n in ("train.txt", "valid.txt"))
        assert 0.1 < valid.stat().st_size / (train.stat().st_size + valid.stat().st_size) < 0.3

        with chromium_page() as page:
            open_asset_graph(page, server)
            text = page.inner_text("body")
    for name in ("Global asset lineage", "stories_corpus", "stories_tokenizer", "web_tokens", "lr_sweep",
                 "ablations_curves", "report"):
        assert name in text, name
