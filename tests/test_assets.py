"""The whole asset graph materialized in-process on the tiny `test` preset, read back from disk."""

import json

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance, DagsterInvalidConfigError, materialize

from cs336_assets.definitions import build_defs
from cs336_assets.presets import ABLATIONS, batch_size_variants, get_preset
from cs336_core.reporting import printable
from cs336_core.tokenization import Tokenizer
from cs336_core.writeup import PROBLEMS

PRESET = get_preset("test")


def materializations(results) -> dict[tuple[str, str | None], dict]:
    """(asset key, partition) -> metadata values of every materialization in `results`."""
    found = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            m = event.materialization
            found[(m.asset_key.to_user_string(), m.partition)] = {k: v.value for k, v in m.metadata.items()}
    return found


def test_every_asset_and_partition_materializes_with_preset_metadata(tiny_graph):
    defs, results, _ = tiny_graph
    assert all(result.success for result in results)
    found = materializations(results)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        for partition in partitions.get_partition_keys() if partitions else [None]:
            metadata = found[(key.to_user_string(), partition)]
            assert metadata["preset"] == "test", key
            assert metadata["knobs"], key


def test_every_asset_check_ran_and_passed(tiny_graph):
    _, results, _ = tiny_graph
    evaluations = [e for result in results for e in result.get_asset_check_evaluations()]
    names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    assert {("stories_tokenizer", "vocab_size"), ("web_tokenizer", "merges_reproducible"),
            ("stories_tokens", "ids_below_vocab_size"), ("stories_main_run", "val_loss_at_target"),
            ("lr_sweep", "no_nan_in_metrics"), ("ablations", "no_nan_in_metrics")} <= names
    failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert not failed


def test_corpora_tokenizers_and_token_files_agree(tiny_graph):
    _, results, data = tiny_graph
    found = materializations(results)
    for role in ("stories", "web"):
        train = (data / "corpora" / role / "train.txt").read_text(encoding="utf-8")
        valid = (data / "corpora" / role / "valid.txt").read_text(encoding="utf-8")
        assert found[(f"{role}_corpus", None)]["train_bytes"] == len(train.encode("utf-8"))
        assert 0 < len(valid) < len(train)
        tokenizer = Tokenizer.from_files(data / "tokenizers" / role / "vocab.json",
                                         data / "tokenizers" / role / "merges.txt", ["<|endoftext|>"])
        assert len(tokenizer.vocab) == PRESET.tokenizers[role].vocab_size
        ids = np.load(data / "tokens" / role / role / "valid.npy", mmap_mode="r")
        assert ids.dtype == np.uint16
        assert found[(f"{role}_tokens", None)]["valid_tokens"] == len(ids)
        # The token file is this corpus encoded by this tokenizer: its head decodes to the text's head.
        head = tokenizer.decode(ids[:300].tolist())
        assert valid.startswith(head) and len(head) > 100


def test_tokenizer_experiments_table_has_cross_case(tiny_graph):
    _, results, data = tiny_graph
    rows = json.loads((data / "experiments" / "tokenizer_experiments.json").read_text())
    cases = {(row["tokenizer"].split()[0], row["text"]) for row in rows}
    assert cases == {("stories", "stories"), ("stories", "web"), ("web", "stories"), ("web", "web")}
    for row in rows:
        assert row["bytes_per_token"] == pytest.approx(row["bytes"] / row["tokens"], abs=1e-3)
        assert row["pile_825gb_hours"] == pytest.approx(825e9 / (row["throughput_mb_per_s"] * 1e6) / 3600, rel=0.01)
    assert materializations(results)[("tokenizer_experiments", None)]["stories_on_web_bytes_per_token"] > 0
    for row in rows:  # the large sample: the whole valid split, then the train split (200 KB in all < 1 MB)
        valid = (data / "corpora" / row["text"] / "valid.txt").stat().st_size
        assert [source["file"] for source in row["large_sources"]] == ["valid.txt", "train.txt"]
        assert row["large_bytes"] > valid > row["bytes"]
        assert row["large_bytes_per_token"] == pytest.approx(row["large_bytes"] / row["large_tokens"], abs=1e-3)


def test_key_results_come_before_the_knobs_in_metadata(tiny_graph):
    found = materializations(tiny_graph[1])
    firsts = {key: list(found[(key, None)])[0] for key in ("lr_sweep_curves", "tokenizer_experiments", "samples",
                                                           "report", "accounting_tables")}
    assert firsts == {"lr_sweep_curves": "best_variant", "tokenizer_experiments": "stories_on_stories_bytes_per_token",
                      "samples": "samples_generated", "report": "preset", "accounting_tables": "gpt2_xl_parameters"}
    for key in firsts:
        assert list(found[(key, None)])[-1] == "knobs", key
    report = found[("report", None)]
    assert list(report)[1:4] == ["best_lr", "largest_stable_lr", "surprises"]


def test_training_runs_sweeps_and_ablations(tiny_graph):
    _, results, data = tiny_graph
    found = materializations(results)
    main = json.loads((data / "runs" / "stories_main_run" / "result.json").read_text())
    assert main["status"] == "completed" and main["steps"] == PRESET.run.max_steps
    assert found[("stories_main_run", None)]["final_val_loss"] == pytest.approx(main["final_val_loss"], abs=1e-4)
    assert (data / "runs" / "stories_main_run" / "ckpt" / "final.pt").exists()
    tokens_seen = set()
    for key, variant in batch_size_variants(PRESET).items():
        result = json.loads((data / "runs" / "batch_size_sweep" / key / "result.json").read_text())
        tokens_seen.add(result["steps"] * variant.run.batch_size)
    assert len(tokens_seen) == 1, "the batch-size sweep keeps the token budget constant"
    for name in ABLATIONS:
        config = json.loads((data / "runs" / "ablations" / name / "config.json").read_text())
        for field, value in ABLATIONS[name].items():
            assert config["model"][field] == value
        assert found[("ablations", name)]["status"] in ("completed", "diverged")


def test_curves_table_png_and_markdown(tiny_graph):
    import pandas as pd

    _, results, data = tiny_graph
    found = materializations(results)
    table = pd.read_csv(data / "curves" / "ablations.csv")
    assert set(table["variant"]) == set(ABLATIONS)
    assert {"step", "wall_seconds", "train_loss", "val_loss"} <= set(table.columns)
    assert (data / "curves" / "lr_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert found[("lr_sweep_curves", None)]["plot"].startswith("![")
    assert "data:image/png;base64," in found[("lr_sweep_curves", None)]["plot"]


def test_report_uses_this_runs_numbers(tiny_graph):
    _, results, data = tiny_graph
    report = (data / "report" / "report.md").read_text(encoding="utf-8")
    assert "`test` preset" in report
    main = json.loads((data / "runs" / "stories_main_run" / "result.json").read_text())
    assert f"{main['final_val_loss']:.3f}" in report
    stats = json.loads((data / "tokenizers" / "web" / "stats.json").read_text())
    assert stats["longest_tokens"][0]["token"] in report
    phases = json.loads((data / "tokenizers" / "stories" / "stats.json").read_text())["phase_seconds"]
    assert set(phases) == {"pretokenize", "merge"}
    assert f"**{max(phases, key=phases.get)}**" in report  # the BPE profiling question, from this run's timings
    # Every written problem of the handout, under its own name, in the handout's order, each saying
    # which preset produced it.
    headings = [line for line in report.splitlines() if line.startswith("## `")]
    assert [h.split("`")[1] for h in headings] == list(PROBLEMS)
    sections = report.split("\n## ")[2:]
    assert all(section.split("\n\n")[1].startswith("_Preset `test`; data: ") for section in sections)
    # The stand-ins are named as such wherever their numbers appear.
    assert "generated stories, a stand-in for TinyStories" in report
    assert "a stand-in for OpenWebText" in report
    samples = json.loads((data / "samples" / "samples.json").read_text())
    assert samples and all(printable(s["completion"]) in report.replace("\n> ", "\n")
                           for s in samples if s["completion"].strip())
    assert "\x00" not in report  # an untrained model's sampled bytes arrive escaped
    assert "data:image/png;base64," in materializations(results)[("report", None)]["report"]


def test_code_version_follows_code_and_config():
    def versions(preset):
        graph = build_defs(preset).resolve_asset_graph()
        return {key.to_user_string(): graph.get(key).code_version for key in graph.get_all_asset_keys()}

    test_a, test_b, demo = versions("test"), versions("test"), versions("demo")
    assert test_a == test_b
    assert test_a["stories_tokenizer"] != demo["stories_tokenizer"]
    assert test_a["stories_corpus"] != demo["stories_corpus"]
    assert all(test_a.values())


def test_rerun_archives_the_finished_run(graph_copy):
    defs, data = graph_copy.defs, graph_copy.data
    before = (data / "runs" / "web_main_run" / "result.json").read_text()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                             selection=["web_main_run"],
                             run_config={"ops": {"web_main_run": {"config": {"max_steps": 4}}}})
    assert result.success
    assert json.loads((data / "runs" / "web_main_run" / "result.json").read_text())["steps"] == 4
    archived = [p for p in (data / "runs" / "_archive").iterdir() if p.name.startswith("web_main_run-")]
    assert any((p / "result.json").read_text() == before for p in archived)


def test_resource_preset_other_than_the_definitions_is_rejected(tmp_path):
    """Partitions and code versions come from the preset the definitions were loaded with, and the
    assets read it from there alone; a run configured with another preset would mix the two. The
    resource holds only the data dir, so Dagster refuses a preset in its config before the run starts."""
    defs = build_defs("test", tmp_path / "data")
    other = {"resources": {"paths": {"config": {"data_dir": str(tmp_path / "data"), "preset": "cpu"}}}}
    with DagsterInstance.ephemeral() as instance:
        with pytest.raises(DagsterInvalidConfigError) as refused:
            materialize(list(defs.assets), instance=instance, resources=defs.resources,
                        selection=["accounting_tables"], run_config=other, raise_on_error=False)
        same = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                           selection=["accounting_tables"], raise_on_error=False, run_config={
                               "resources": {"paths": {"config": {"data_dir": str(tmp_path / "other")}}}})
    assert 'unexpected config entry "preset"' in str(refused.value) and "paths" in str(refused.value)
    assert not (tmp_path / "data" / "accounting").exists()
    # The data dir through run config is fine (the documented way to move it).
    assert same.success and (tmp_path / "other" / "accounting" / "accounting.md").exists()


def test_missing_local_corpus_is_a_clear_error(tmp_path):
    defs = build_defs("test", tmp_path)
    missing = tmp_path / "nope.txt"
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                             selection=["stories_corpus"], raise_on_error=False,
                             run_config={"ops": {"stories_corpus": {"config": {"local_train_path": str(missing)}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"corpus file not found: {missing}" in failure.event_specific_data.error.to_string()
    assert not (tmp_path / "corpora" / "stories" / "train.txt").exists()


def test_download_source_through_a_local_http_server(tmp_path):
    """The download path of a corpus asset (the cpu/h100 presets' source), served from 127.0.0.1."""
    import functools
    import gzip
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    train_text = "".join(f"Story {i}: a cat sat on a mat.\n<|endoftext|>\n" for i in range(200))
    (served / "train.txt.gz").write_bytes(gzip.compress(train_text.encode()))
    (served / "valid.txt").write_text("A dog ran.\n<|endoftext|>\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    data = tmp_path / "data"
    defs = build_defs("test", data)
    config = {"ops": {"stories_corpus": {"config": {"train_url": f"{base}/train.txt.gz",
                                                    "valid_url": f"{base}/valid.txt"}}}}
    try:
        with DagsterInstance.ephemeral() as instance:
            result = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                                 selection=["stories_corpus"], run_config=config)
            missing = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                                  selection=["stories_corpus"], raise_on_error=False,
                                  run_config={"ops": {"stories_corpus": {"config": {
                                      "train_url": f"{base}/absent.txt", "valid_url": f"{base}/valid.txt"}}}})
    finally:
        server.shutdown()
    assert result.success
    assert (data / "corpora" / "stories" / "train.txt").read_text() == train_text  # gunzipped
    metadata = materializations([result])[("stories_corpus", None)]
    assert metadata["source"] == "download" and metadata["train_documents"] == 200
    assert not missing.success  # a 404 fails the asset and leaves the earlier good files in place
    assert (data / "corpora" / "stories" / "train.txt").read_text() == train_text
