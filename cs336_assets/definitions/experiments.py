"""Tokenizer experiments (handout 2.7): compression ratio, the cross case, throughput, the Pile."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata
from cs336_assets.definitions.tokenizers import GROUP, load_tokenizer
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import reporting
from cs336_core.files import atomic_write_json, atomic_write_text
from cs336_core.tokenizer_experiments import compare_tokenizers

# Throughput is timed on this much of each valid split (more is slower, not more accurate).
THROUGHPUT_BYTES = 1_000_000


def tokenizer_experiments_asset(preset: Preset) -> AssetsDefinition:
    knobs = {"documents_per_corpus": preset.tokenizer_experiment_docs, "throughput_bytes": THROUGHPUT_BYTES,
             "pile_bytes": preset.pile_bytes}

    @asset(
        key=keys.TOKENIZER_EXPERIMENTS,
        group_name=GROUP,
        deps=[key for role in keys.ROLES for key in (keys.BY_ROLE[role].tokenizer, keys.BY_ROLE[role].corpus)],
        kinds={"pandas"},
        code_version=code_version(__file__, config=knobs),
        description="Compression ratio (bytes/token) of each tokenizer on sampled documents of each corpus "
                    "(including the cross case), throughput and the projected time to tokenize the Pile.",
    )
    def tokenizer_experiments(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        cases = compare_tokenizers({role: load_tokenizer(paths, preset, role) for role in keys.ROLES},
                                   {role: paths.corpus_dir(role) / "valid.txt" for role in keys.ROLES},
                                   documents=preset.tokenizer_experiment_docs, throughput_bytes=THROUGHPUT_BYTES,
                                   pile_bytes=preset.pile_bytes, log=context.log.info)
        rows = list(cases.values())
        table = reporting.markdown_table(rows)
        out_dir = paths.path("experiments")
        atomic_write_json(out_dir / "tokenizer_experiments.json", rows)
        atomic_write_text(out_dir / "tokenizer_experiments.md", table + "\n")
        by_case = {f"{tok}_on_{text}_bytes_per_token": row["bytes_per_token"] for (tok, text), row in cases.items()}
        return MaterializeResult(
            metadata={**knobs_metadata(preset, **knobs), **by_case, "table": MetadataValue.md(table),
                      "path": MetadataValue.path(str(out_dir / "tokenizer_experiments.md"))},
            data_version=output_data_version(knobs, out_dir / "tokenizer_experiments.json"))

    return tokenizer_experiments
