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

# The large sample: this much of each corpus (its valid split, then its train split), where the
# compression ratio is measured again and the throughput is timed (the handout's 10 documents can be
# about a kilobyte of text in all).
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
        description="Compression ratio (bytes/token) of each tokenizer on the handout's sampled documents and on "
                    "1 MB of each corpus (including the cross case), throughput on the 1 MB sample and the "
                    "projected time to tokenize the Pile.",
    )
    def tokenizer_experiments(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        cases = compare_tokenizers({role: load_tokenizer(paths, preset, role) for role in keys.ROLES},
                                   {role: paths.corpus_dir(role) / "valid.txt" for role in keys.ROLES},
                                   documents=preset.tokenizer_experiment_docs, throughput_bytes=THROUGHPUT_BYTES,
                                   pile_bytes=preset.pile_bytes, log=context.log.info,
                                   more_texts={role: [paths.corpus_dir(role) / "train.txt"] for role in keys.ROLES})
        rows = list(cases.values())
        table = reporting.markdown_table([{k: v for k, v in row.items() if k != "large_sources"} for row in rows])
        out_dir = paths.path("experiments")
        atomic_write_json(out_dir / "tokenizer_experiments.json", rows)
        atomic_write_text(out_dir / "tokenizer_experiments.md", table + "\n")
        by_case = {f"{tok}_on_{text}_bytes_per_token": row["large_bytes_per_token"]
                   for (tok, text), row in cases.items()}
        speed = {f"{role}_throughput_mb_per_s": cases[role, role]["throughput_mb_per_s"] for role in keys.ROLES}
        return MaterializeResult(
            # Key results first (the 1 MB sample's ratios and throughput), then the table, then the knobs.
            metadata={**by_case, **speed, "table": MetadataValue.md(table),
                      "path": MetadataValue.path(str(out_dir / "tokenizer_experiments.md")),
                      **knobs_metadata(preset, **knobs)},
            data_version=output_data_version(knobs, out_dir / "tokenizer_experiments.json"))

    return tokenizer_experiments
