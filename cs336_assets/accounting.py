"""Resource-accounting tables (handout 3.6 transformer_accounting, 4.3 adamwAccounting)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_core import accounting
from cs336_core.files import atomic_write_json, atomic_write_text

GROUP = "accounting"


def _knobs(preset: Preset) -> dict:
    """What the preset's own table rows are computed from."""
    return {"batch_size": preset.run.batch_size, "max_steps": preset.run.max_steps,
            "models": {role: preset.model_for(role).to_dict() for role in ROLES}}


def build(preset: Preset) -> list[AssetsDefinition]:
    @asset(
        name="accounting_tables",
        group_name=GROUP,
        kinds={"python"},
        code_version=code_version(__file__, config=_knobs(preset)),
        description="Parameter, FLOP and memory accounting: the handout's GPT-2 tables, the GPT-2 XL AdamW "
                    "answers and this preset's own models.",
    )
    def accounting_tables(context: AssetExecutionContext, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        tables = accounting.accounting_tables({f"{preset_now.name} / {role}": preset_now.model_for(role) for role in ROLES},
                                              preset_now.run.batch_size, preset_now.run.max_steps)
        markdown = accounting.tables_markdown(
            tables, f"This preset's models ({preset_now.name}, batch {preset_now.run.batch_size})")
        xl = tables["gpt2_xl_adamw"]
        out_dir = workspace.path("accounting")
        atomic_write_json(out_dir / "accounting.json", tables)
        atomic_write_text(out_dir / "accounting.md", markdown)
        return MaterializeResult(
            metadata={
                **knobs_metadata(preset_now, **_knobs(preset_now)),
                "gpt2_xl_max_batch_80GB": xl["max_batch_size_80GB"],
                "gpt2_xl_training_days": round(xl["training_days_400k_steps_batch_1024_mfu_0.5_A100"], 1),
                "tables": MetadataValue.md(markdown),
                "path": MetadataValue.path(str(out_dir / "accounting.md")),
            },
            data_version=output_data_version(_knobs(preset_now), out_dir / "accounting.json", out_dir / "accounting.md"))

    return [accounting_tables]
