"""Resource-accounting tables (handout 3.6 transformer_accounting, 4.3 adamwAccounting)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import accounting
from cs336_core.files import atomic_write_json, atomic_write_text

GROUP = "accounting"


def accounting_asset(preset: Preset) -> AssetsDefinition:
    # What the preset's own table rows are computed from.
    knobs = {"batch_size": preset.run.batch_size, "max_steps": preset.run.max_steps,
             "models": {role: preset.model_for(role).to_dict() for role in keys.ROLES}}

    @asset(
        key=keys.ACCOUNTING_TABLES,
        group_name=GROUP,
        kinds={"python"},
        code_version=code_version(__file__, config=knobs),
        description="Parameter, FLOP and memory accounting: the handout's GPT-2 tables, the GPT-2 XL AdamW "
                    "answers and this preset's own models.",
    )
    def accounting_tables(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        models = {f"{preset.name} / {role}": preset.model_for(role) for role in keys.ROLES}
        tables = accounting.accounting_tables(models, preset.run.batch_size, preset.run.max_steps)
        markdown = accounting.tables_markdown(
            tables, f"This preset's models ({preset.name}, batch {preset.run.batch_size})")
        out_dir = paths.path("accounting")
        atomic_write_json(out_dir / "accounting.json", tables)
        atomic_write_text(out_dir / "accounting.md", markdown)
        xl = tables["gpt2_xl_adamw"]
        gpt2_xl = next(row for row in tables["gpt2"] if row["model"] == "GPT-2 XL" and row["context"] == 1024)
        return MaterializeResult(
            # Key results first, then the tables, then the knobs.
            metadata={
                "gpt2_xl_parameters": gpt2_xl["parameters"],
                "gpt2_xl_forward_TFLOPs": round(gpt2_xl["forward_TFLOPs"], 3),
                "gpt2_xl_max_batch_80GB": xl["max_batch_size_80GB"],
                "gpt2_xl_training_days": round(xl["training_days_400k_steps_batch_1024_mfu_0.5_A100"], 1),
                **{f"{role}_model_parameters": row["parameters"] for role, row in zip(keys.ROLES, tables["preset_models"])},
                "tables": MetadataValue.md(markdown),
                "path": MetadataValue.path(str(out_dir / "accounting.md")),
                **knobs_metadata(preset, **knobs),
            },
            data_version=output_data_version(knobs, out_dir / "accounting.json", out_dir / "accounting.md"))

    return accounting_tables
