"""Resource-accounting tables (handout 3.6 transformer_accounting, 4.3 adamwAccounting)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_core import accounting, reporting
from cs336_core.files import atomic_write_json, atomic_write_text

GROUP = "accounting"


def preset_model_rows(preset: Preset) -> list[dict]:
    """Parameters, FLOPs and AdamW memory of this preset's models at its batch size."""
    rows = []
    for role in ROLES:
        shape = preset.model_for(role)
        memory = accounting.training_memory(shape, preset.run.batch_size)
        rows.append({
            "model": f"{preset.name} / {role}",
            "parameters": accounting.count_parameters(shape),
            "non_embedding_parameters": accounting.count_parameters(shape)
            - accounting.parameter_breakdown(shape)["token_embeddings"] - accounting.parameter_breakdown(shape)["lm_head"],
            "forward_GFLOPs_per_sequence": accounting.forward_flops(shape)["total"] / 1e9,
            "adamw_step_TFLOPs": accounting.adamw_step_flops(shape, preset.run.batch_size)["total"] / 1e12,
            "training_memory_MB": memory["total"] / 1e6,
            "run_TFLOPs": preset.run.max_steps * accounting.adamw_step_flops(shape, preset.run.batch_size)["total"] / 1e12,
        })
    return rows


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
        gpt2 = accounting.gpt2_accounting_tables()
        xl = accounting.gpt2_xl_adamw_answers()
        ours = preset_model_rows(preset_now)
        sections = [f"### GPT-2 forward pass, context {ctx:,} (one sequence, matmul FLOPs)\n\n"
                    + reporting.markdown_table([row for row in gpt2 if row["context"] == ctx])
                    for ctx in sorted({row["context"] for row in gpt2})]
        sections.append("### GPT-2 XL training with AdamW (float32)\n\n"
                        + reporting.markdown_table([{"quantity": k, "value": v} for k, v in xl.items()]))
        sections.append(f"### This preset's models ({preset_now.name}, batch {preset_now.run.batch_size})\n\n"
                        + reporting.markdown_table(ours))
        markdown = "\n\n".join(sections) + "\n"
        out_dir = workspace.path("accounting")
        atomic_write_json(out_dir / "accounting.json", {"gpt2": gpt2, "gpt2_xl_adamw": xl, "preset_models": ours})
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
