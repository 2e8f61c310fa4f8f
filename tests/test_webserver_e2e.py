"""End to end against a real `dagster dev` on a copy of the session graph: launch through GraphQL, poll,
read the event log, then look in headless Chromium at what the UI rendered: the asset graph, a loss
plot in the Markdown dialog (whole, at the narrowest window the plots are sized for), a check's status."""

import shutil

import pytest

from conftest import dagster_env
from webui import chromium_page, dagster_dev, open_asset_graph, open_plot_dialog

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def plot_in_dialog(page, server, asset: str) -> dict:
    """Open `asset`'s "plot" metadata in the Markdown dialog; the image's natural and shown width, and
    whether the dialog's body scrolls sideways (a plot wider than the dialog is cut there)."""
    dialog = open_plot_dialog(page, server, asset)
    # Layout sizes (offsetWidth), not the bounding box: the dialog opens with a scaling animation.
    return dialog.evaluate("""dialog => {
        const img = dialog.querySelector("img[src^='data:image/png']");
        const body = dialog.querySelector('.dagster-markdown').parentElement.parentElement;
        return {natural: img.naturalWidth, shown: img.offsetWidth, body: body.clientWidth,
                scrolls: body.scrollWidth > body.clientWidth};
    }""")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make chromium)")
def test_graphql_materialization_asset_graph_plot_and_check(graph_copy, tmp_path):
    data = graph_copy.data
    env = dagster_env(data, graph_copy.home)
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

        with chromium_page(1280, 900) as page:
            open_asset_graph(page, server)
            graph_text = page.inner_text("body")
            plot = plot_in_dialog(page, server, "lr_sweep_curves")
            page.goto(f"{server.url}/assets/stories_tokenizer?view=checks", wait_until="domcontentloaded",
                      timeout=120_000)
            page.get_by_text("Evaluation result").first.wait_for(timeout=120_000)
            # The list's status badges load after the selected check's panel.
            page.get_by_text("Succeeded", exact=True).first.wait_for(timeout=60_000)
            checks_text = page.inner_text("body")
    for name in ("Global asset lineage", "stories_corpus", "stories_tokenizer", "web_tokens", "lr_sweep",
                 "ablations_curves", "report"):
        assert name in graph_text, name
    # The plot was decoded and drawn whole: as wide as the PNG, inside the dialog, nothing to scroll to.
    assert plot["natural"] == plot["shown"] > 500 and plot["shown"] <= plot["body"] and not plot["scrolls"], plot
    # Both checks of the tokenizer are listed, and the selected one's latest evaluation passed.
    assert "vocab_size" in checks_text and "merges_reproducible" in checks_text
    assert "Succeeded" in checks_text and "Passed" in checks_text
