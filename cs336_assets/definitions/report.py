"""The `report` asset: one Markdown writeup of the run, assembled from the materialized artifacts.

It answers the handout's written questions with this run's own numbers (and says which preset
produced them). Every figure is read back from files the upstream assets wrote under <data>/.
"""

import json
from pathlib import Path

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata
from cs336_assets.definitions.curves import MAIN_RUNS
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import reporting
from cs336_core.data import load_tokens
from cs336_core.files import atomic_write_text

GROUP = "report"
# The handout's written questions each sweep's section answers.
QUESTIONS = {keys.LR_SWEEP: "learning_rate", keys.BATCH_SIZE_SWEEP: "batch_size_experiment",
             keys.ABLATIONS: "layer_norm_ablation, pre_norm_ablation, no_pos_emb, swiglu_ablation"}


def _json(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize the asset that writes it before the report")
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _curve_section(paths: DataPaths, name: str, embed: bool) -> tuple[str, str, list[dict]]:
    """(title, summary table + plot, summary rows) of the curves `name`, from the curves' JSON."""
    summary_path = paths.path("curves", f"{name}.json")
    if not summary_path.exists():
        return name, f"_{name} curves not materialized._", []
    curves = _json(summary_path)
    png = summary_path.with_name(curves["plot"])
    image = reporting.png_markdown(png, alt=name) if embed else f"![{name}](../curves/{png.name})"
    return curves["title"], f"{reporting.markdown_table(curves['runs'])}\n\n{image}", curves["runs"]


def _best(results: list[dict]) -> dict | None:
    done = [r for r in results if r.get("status") == "completed" and r.get("final_val_loss") is not None]
    return min(done, key=lambda r: r["final_val_loss"]) if done else None


def assemble_report(paths: DataPaths, preset: Preset, embed_images: bool) -> str:
    sections: list[tuple[str, str]] = []
    corpora = {role: _json(paths.corpus_dir(role) / "stats.json") for role in keys.ROLES}
    tokenizers = {role: _json(paths.tokenizer_dir(role) / "stats.json") for role in keys.ROLES}
    experiments = _json(paths.path("experiments", "tokenizer_experiments.json"))
    mains = {role: _json(paths.run_dir(keys.BY_ROLE[role].main_run) / "result.json") for role in keys.ROLES}

    sections.append(("Setup", (
        f"Preset **{preset.name}**: {preset.description}\n\n"
        + reporting.markdown_table([{
            "corpus": role, "source": corpora[role]["source"],
            "train_bytes": corpora[role]["train"]["bytes"], "train_documents": corpora[role]["train"]["documents"],
            "valid_bytes": corpora[role]["valid"]["bytes"], "valid_documents": corpora[role]["valid"]["documents"],
            "train_tokens": len(load_tokens(paths.tokens_path(role, "train"))),
            "valid_tokens": len(load_tokens(paths.tokens_path(role, "valid"))),
        } for role in keys.ROLES])
        + f"\n\nModel: `{json.dumps(preset.model.to_dict())}` (vocab size per corpus from its tokenizer); "
          f"main runs: batch {preset.run.batch_size} x context {preset.model.context_length} x "
          f"{preset.run.max_steps} steps, AdamW lr {preset.run.lr_max:g} with cosine decay.")))

    tok_rows = [{"tokenizer": role, "vocab_size": t["vocab_size"], "training_seconds": t["training_seconds"],
                 "peak_memory_MB": t["peak_memory_mb"], "train_bytes": t["train_bytes"],
                 "longest_token": f"`{t['longest_tokens'][0]['token']}`",
                 "longest_bytes": t["longest_tokens"][0]["bytes"]} for role, t in tokenizers.items()]
    stories_longest = ", ".join(f"`{t['token']}`" for t in tokenizers["stories"]["longest_tokens"][:5])
    web_longest = ", ".join(f"`{t['token']}`" for t in tokenizers["web"]["longest_tokens"][:5])
    sections.append(("BPE training (train_bpe_tinystories, train_bpe_expts_owt)", (
        reporting.markdown_table(tok_rows)
        + f"\n\nThe stories tokenizer trained in {tokenizers['stories']['training_seconds']} s on "
          f"{tokenizers['stories']['train_bytes']:,} bytes and needed at most {tokenizers['stories']['peak_memory_mb']} MB "
          f"beyond the process's baseline (workers included). Its longest tokens are {stories_longest}; the "
          f"web-like tokenizer's are {web_longest} (␣ marks a space). Long tokens are words or word runs that "
          f"occur often enough in their corpus to earn a merge each, so the stories tokenizer's reflect the "
          f"repetitive vocabulary of simple stories and the web-like one's the technical prose it was trained on."
          + _bpe_profile(tokenizers["stories"]))))

    by_case = {(r["tokenizer"].split()[0], r["text"]): r for r in experiments}
    throughput = {role: by_case[(role, role)] for role in keys.ROLES}
    sections.append(("Tokenizer experiments (tokenizer_experiments)", (
        reporting.markdown_table(experiments)
        + f"\n\n(a) On {by_case[('stories', 'stories')]['documents']} sampled documents the stories tokenizer "
          f"compresses stories to {by_case[('stories', 'stories')]['bytes_per_token']} bytes/token and the web "
          f"tokenizer compresses web text to {by_case[('web', 'web')]['bytes_per_token']} bytes/token.\n"
          f"(b) Cross case: the stories tokenizer on web text gets {by_case[('stories', 'web')]['bytes_per_token']} "
          f"bytes/token (vs {by_case[('web', 'web')]['bytes_per_token']} with the web tokenizer): its merges fit "
          f"the simple story vocabulary, so other text splits into more, shorter pieces.\n"
          f"(c) Throughput: {throughput['stories']['throughput_mb_per_s']} MB/s (stories) and "
          f"{throughput['web']['throughput_mb_per_s']} MB/s (web) in one process, so the 825 GB Pile would take "
          f"about {throughput['web']['pile_825gb_hours']:,} hours single-process (divide by the worker count "
          f"for `encode_file`'s parallel encoding).\n"
          f"(d) Token ids are stored as uint16: every vocabulary here has fewer than 65,536 entries, so 2 bytes "
          f"per token suffice and halve the size of int32.")))

    accounting_md = paths.path("accounting", "accounting.md")
    sections.append(("Resource accounting (transformer_accounting, adamwAccounting)",
                     accounting_md.read_text(encoding="utf-8") if accounting_md.exists() else "_not materialized_"))

    _, main_table, _ = _curve_section(paths, MAIN_RUNS, embed_images)
    stories = mains["stories"]
    verdict = ("meets" if stories.get("final_val_loss") is not None
               and stories["final_val_loss"] <= preset.target_val_loss else "misses")
    sections.append(("Main runs (main_experiment)", (
        f"The stories model reaches validation loss {_fmt(stories.get('final_val_loss'))} after "
        f"{stories.get('tokens'):,} tokens in {_fmt(stories.get('wall_seconds'), 0)} s, which {verdict} this "
        f"preset's target of {preset.target_val_loss}. The web-like corpus is harder at the same budget: "
        f"{_fmt(mains['web'].get('final_val_loss'))} (different tokenizers, so per-token losses are not "
        f"directly comparable).\n\n{main_table}")))

    for sweep in keys.SWEEPS:
        name = sweep.to_user_string()
        title, body, results = _curve_section(paths, name, embed_images)
        best = _best(results)
        diverged = [r["variant"] for r in results if r.get("status") == "diverged"]
        summary = (f"Best: **{best['variant']}** with validation loss {_fmt(best['final_val_loss'])}. "
                   if best else "No completed run yet. ")
        summary += (f"Diverged: {', '.join(diverged)}." if diverged else "No run diverged.")
        if sweep == keys.ABLATIONS:
            base = next((r for r in results if r["variant"] == "baseline"), None)
            if base and base.get("final_val_loss") is not None:
                deltas = ", ".join(f"{r['variant']} {r['final_val_loss'] - base['final_val_loss']:+.3f}"
                                   for r in results if r["variant"] != "baseline" and r.get("final_val_loss") is not None)
                summary += f" Change in final validation loss against the baseline: {deltas}."
        sections.append((f"{title} ({QUESTIONS[sweep]})", f"{summary}\n\n{body}"))

    samples_md = paths.path("samples", "samples.md")
    sections.append(("Generated text (generate)",
                     samples_md.read_text(encoding="utf-8") if samples_md.exists() else "_not materialized_"))
    return reporting.render_report(sections, title=f"CS336 assignment 1: results of the `{preset.name}` preset")


def report_asset(preset: Preset) -> AssetsDefinition:
    @asset(
        key=keys.REPORT,
        group_name=GROUP,
        # Every asset whose files the report reads, not only the curves built from some of them:
        # Dagster looks one edge up for staleness, so a main run rebuilt differently must be a
        # direct dependency for the report to go stale with it.
        deps=[keys.TOKENIZER_EXPERIMENTS, keys.ACCOUNTING_TABLES, keys.SAMPLES, keys.MAIN_RUNS_CURVES,
              *keys.CURVES.values(), *keys.SWEEPS, *(key for role in keys.ROLES for key in keys.BY_ROLE[role])],
        kinds={"markdown"},
        code_version=code_version(__file__, config=preset.to_dict()),
        description="The writeup: the handout's questions answered with this run's numbers, curves and samples.",
    )
    def report(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        out = paths.path("report", "report.md")
        atomic_write_text(out, assemble_report(paths, preset, embed_images=False))
        knobs = preset.to_dict()
        return MaterializeResult(
            metadata={**knobs_metadata(preset, all_knobs=knobs),
                      "report": MetadataValue.md(assemble_report(paths, preset, embed_images=True)),
                      "path": MetadataValue.path(str(out))},
            data_version=output_data_version(knobs, out))

    return report


def _bpe_profile(stats: dict) -> str:
    """The handout's profiling question, answered from the phase timings the tokenizer asset recorded."""
    phases = stats.get("phase_seconds") or {}
    if not phases:
        return ""
    total = sum(phases.values())
    parts = ", ".join(f"{phase} {seconds:.2f} s ({100 * seconds / total:.0f}%)" for phase, seconds in phases.items())
    slowest = max(phases, key=phases.get)
    return (f"\n\nProfile of the stories tokenizer's training, timed per phase: {parts}. The largest part is "
            f"**{slowest}**. Pre-tokenization runs the GPT-2 regex over every byte of the corpus (in parallel "
            f"over chunks), so it grows with corpus size; the merge loop works on the distinct pre-tokens "
            f"only and updates pair counts incrementally, so it grows with the vocabulary and the number of "
            f"distinct words.")
