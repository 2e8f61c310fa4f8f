"""Tokenizer experiments (handout 2.7): compression ratio, the cross case, throughput, the Pile."""


import time

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_assets.tokenizers import load_tokenizer
from cs336_core import corpora, reporting
from cs336_core.files import atomic_write_json, atomic_write_text

GROUP = "tokenizers"
# Throughput is timed on this much of each valid split (more is slower, not more accurate).
THROUGHPUT_BYTES = 1_000_000


def bytes_per_token(tokenizer, documents: list[str]) -> tuple[int, int]:
    """(bytes, tokens) of encoding `documents`; their ratio is the compression ratio."""
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    n_tokens = sum(len(tokenizer.encode(d)) for d in documents)
    return n_bytes, n_tokens


def _throughput(tokenizer, text: str) -> float:
    start = time.perf_counter()
    tokenizer.encode(text)
    return len(text.encode("utf-8")) / max(time.perf_counter() - start, 1e-9)


def build(preset: Preset) -> list[AssetsDefinition]:
    @asset(
        name="tokenizer_experiments",
        group_name=GROUP,
        deps=[f"{role}_tokenizer" for role in ROLES] + [f"{role}_corpus" for role in ROLES],
        kinds={"pandas"},
        code_version=code_version(__file__, config={"docs": preset.tokenizer_experiment_docs,
                                                    "throughput_bytes": THROUGHPUT_BYTES}),
        description="Compression ratio (bytes/token) of each tokenizer on sampled documents of each corpus "
                    "(including the cross case), throughput and the projected time to tokenize the Pile.",
    )
    def tokenizer_experiments(context: AssetExecutionContext, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        n_docs = preset_now.tokenizer_experiment_docs
        samples = {role: corpora.sample_documents(workspace.corpus_dir(role) / "valid.txt", n=n_docs, seed=0)
                   for role in ROLES}
        rows = []
        for tok_role in ROLES:
            tokenizer = load_tokenizer(workspace, tok_role)
            with open(workspace.corpus_dir(tok_role) / "valid.txt", encoding="utf-8", errors="replace") as f:
                bytes_per_second = _throughput(tokenizer, f.read(THROUGHPUT_BYTES))
            for text_role in ROLES:
                n_bytes, n_tokens = bytes_per_token(tokenizer, samples[text_role])
                rows.append({
                    "tokenizer": f"{tok_role} ({len(tokenizer.vocab):,})",
                    "text": text_role,
                    "documents": len(samples[text_role]),
                    "bytes": n_bytes,
                    "tokens": n_tokens,
                    "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3),
                    "throughput_mb_per_s": round(bytes_per_second / 1e6, 3),
                    "pile_825gb_hours": round(preset_now.pile_bytes / bytes_per_second / 3600, 1),
                })
            context.log.info(f"{tok_role} tokenizer: {bytes_per_second / 1e6:.2f} MB/s")
        out_dir = workspace.path("experiments")
        columns = list(rows[0])
        table = reporting.markdown_table(columns, [[row[c] for c in columns] for row in rows])
        atomic_write_json(out_dir / "tokenizer_experiments.json", rows)
        atomic_write_text(out_dir / "tokenizer_experiments.md", table + "\n")
        by_case = {f"{r['tokenizer'].split()[0]}_on_{r['text']}_bytes_per_token": r["bytes_per_token"] for r in rows}
        knobs = {"documents_per_corpus": n_docs, "throughput_bytes": THROUGHPUT_BYTES,
                 "pile_bytes": preset_now.pile_bytes}
        return MaterializeResult(
            metadata={**knobs_metadata(preset_now, **knobs), **by_case, "table": MetadataValue.md(table),
                      "path": MetadataValue.path(str(out_dir / "tokenizer_experiments.md"))},
            data_version=output_data_version(knobs, out_dir / "tokenizer_experiments.json"))

    return [tokenizer_experiments]
