"""Handout 7.5, the leaderboard: the baseline against the leaderboard configuration at equal wall-clock.

`leaderboard` (keys.LEADERBOARD) is a training asset partitioned like a sweep, on the web corpus:
"baseline" and "leaderboard", each one run of `presets.leaderboard_variants` stopped by the
preset's wall-clock budget (status "budget", which its `converged` check counts as finished). The
"leaderboard" partition also writes what a submission states (cs336_core.training.submission):

    <data>/leaderboard/submission.json   val_loss, best_val_loss, tokens, steps, max_steps,
                                         wall_clock_seconds/_hours, budget_seconds, status,
                                         tokens_per_second, mfu, validation {file, context_length,
                                         windows, tokens, eval_seed}, hardware {device, gpu or cpu,
                                         cpu_cores, torch, summary, ...}, configuration (one line),
                                         config (the whole TrainConfig), max_steps_for_budget, preset
    <data>/leaderboard/submission.md     the same as a table to paste, and the config as JSON

`leaderboard_curves` draws both runs against steps and wall-clock into <data>/curves/leaderboard.*
like the sweeps' curves (no target line: the leaderboard has no bar, the lowest loss wins).
"""

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue

from cs336_assets import keys
from cs336_assets.definitions import curves, training
from cs336_assets.presets import Preset, leaderboard_variants
from cs336_assets.resources import DataPaths
from cs336_core.files import atomic_write_json, atomic_write_text
from cs336_core.training import TrainConfig, TrainResult
from cs336_core.training.submission import hardware, leaderboard_submission, submission_markdown

SUBMITTED = "leaderboard"  # the partition whose run is the submission
NAME = keys.LEADERBOARD.to_user_string()  # of the curves' files, <data>/curves/leaderboard.*
TITLE = "Leaderboard: the baseline against the leaderboard configuration at equal wall-clock"


def leaderboard_asset(preset: Preset) -> AssetsDefinition:
    spec = preset.leaderboard

    def finish(context: AssetExecutionContext, paths: DataPaths, partition: str, config: TrainConfig,
               result: TrainResult) -> dict:
        submission = {**leaderboard_submission(config, result, hardware(config.device, preset.torch_threads)),
                      "preset": preset.name}
        metadata = {"hardware": submission["hardware"]["summary"]}
        if "max_steps_for_budget" in submission:
            metadata["max_steps_for_budget"] = submission["max_steps_for_budget"]
        if partition != SUBMITTED:
            return metadata
        markdown = submission_markdown(submission, title=f"Leaderboard submission (`{preset.name}` preset)")
        json_path, md_path = paths.leaderboard_files()
        atomic_write_json(json_path, submission)
        atomic_write_text(md_path, markdown)
        context.log.info(f"leaderboard submission: val loss {submission['val_loss']} after {submission['tokens']:,} "
                         f"tokens in {submission['wall_clock_seconds']} s -> {json_path}")
        return {**metadata, "submission": MetadataValue.md(markdown), "submission_path": MetadataValue.path(str(json_path))}

    return training.sweep_asset(
        preset, keys.LEADERBOARD, leaderboard_variants(preset),
        f"Handout 7.5 on the {keys.LEADERBOARD_ROLE} corpus: the baseline and the leaderboard configuration, "
        f"{spec.seconds:g} s of wall-clock each (meant for {spec.hardware}), validated at context "
        f"{spec.context_length}; the leaderboard partition writes leaderboard/submission.json and .md.",
        role=keys.LEADERBOARD_ROLE, diverged=training.AssetCheckSeverity.ERROR, finish=finish, code_file=__file__)


def leaderboard_curves_asset(preset: Preset, leaderboard: AssetsDefinition) -> AssetsDefinition:
    """The curves of each of `leaderboard`'s partitions that has trained (no target line: the
    leaderboard has no bar, the lowest loss wins)."""
    runs = {variant: (keys.LEADERBOARD, variant) for variant in leaderboard.partitions_def.get_partition_keys()}
    return curves.curves_asset(preset, keys.CURVES[keys.LEADERBOARD], NAME, TITLE, runs, target=None)


def leaderboard_assets(preset: Preset) -> list[AssetsDefinition]:
    board = leaderboard_asset(preset)
    return [board, leaderboard_curves_asset(preset, board)]
