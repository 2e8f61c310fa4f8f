"""Tokenizer experiments (handout 2.7): compression ratio, the cross case, throughput, the Pile."""


from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_assets.tokenizers import load_tokenizer
from cs336_core import reporting
from cs336_core.files import atomic_write_json, atomic_write_text
from cs336_core.tokenizer_experiments import compare_tokenizers

GROUP = "tokenizers"
# Throughput is timed on this much of each valid split (more is slower, not more accurate).
THROUGHPUT_BYTES = 1_000_000


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
        cases = compare_tokenizers({role: load_tokenizer(workspace, role) for role in ROLES},
                                   {role: workspace.corpus_dir(role) / "valid.txt" for role in ROLES},
                                   documents=n_docs, throughput_bytes=THROUGHPUT_BYTES,
                                   pile_bytes=preset_now.pile_bytes, log=context.log.info)
        rows = list(cases.values())
        out_dir = workspace.path("experiments")
        table = reporting.markdown_table(rows)
        atomic_write_json(out_dir / "tokenizer_experiments.json", rows)
        atomic_write_text(out_dir / "tokenizer_experiments.md", table + "\n")
        by_case = {f"{tok}_on_{text}_bytes_per_token": row["bytes_per_token"] for (tok, text), row in cases.items()}
        knobs = {"documents_per_corpus": n_docs, "throughput_bytes": THROUGHPUT_BYTES,
                 "pile_bytes": preset_now.pile_bytes}
        return MaterializeResult(
            metadata={**knobs_metadata(preset_now, **knobs), **by_case, "table": MetadataValue.md(table),
                      "path": MetadataValue.path(str(out_dir / "tokenizer_experiments.md"))},
            data_version=output_data_version(knobs, out_dir / "tokenizer_experiments.json"))

    return [tokenizer_experiments]
