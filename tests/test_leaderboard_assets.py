"""Handout 7.5 through the asset graph: the presets' leaderboard runs (sized to their wall-clock
budget, validated at the leaderboard's context), the `leaderboard` asset's two partitions stopped
by their budget, the submission files and the curves; and the core functions they use."""

import dataclasses
import json
import math
import shutil

import pytest
import torch
from dagster import DagsterInstance, materialize

from cs336_assets import keys
from cs336_assets.definitions import build_defs
from cs336_assets.definitions.training import train_config
from cs336_assets.presets import (ASSUMED_H100_MFU, LEADERBOARD_SECONDS, PRESETS, get_preset, leaderboard_variants)
from cs336_assets.resources import DataPaths
from cs336_core.training import TrainConfig, TrainResult
from cs336_core.training.submission import describe, hardware, leaderboard_submission, submission_markdown
from cs336_core.training.throughput import expected_tokens_per_second, flops_per_token, steps_in_budget

WEB_UPSTREAM = ["web_corpus", "web_tokenizer", "web_tokens"]


# ---------------------------------------------------------------------------------------------
# Core: sizing a run to its budget, and the submission


def test_steps_in_budget_is_the_steps_the_budget_holds_after_overhead():
    assert steps_in_budget(100, 1_000, 10, overhead=0.0) == 10_000
    assert steps_in_budget(100, 1_000, 10, overhead=0.25) == 7_500
    assert steps_in_budget(1, 1, 10**6) == 1  # at least one step
    for bad in (dict(seconds=0), dict(tokens_per_second=-1), dict(tokens_per_step=0), dict(overhead=1.0)):
        with pytest.raises(ValueError):
            steps_in_budget(**{"seconds": 10, "tokens_per_second": 100, "tokens_per_step": 10, **bad})


def test_expected_tokens_per_second_is_the_inverse_of_mfu():
    model = get_preset("leaderboard").model_for("web")
    rate = expected_tokens_per_second(model, 1e15, 0.4)
    assert rate * flops_per_token(model) == pytest.approx(0.4 * 1e15)
    with pytest.raises(ValueError, match="assumed_mfu"):
        expected_tokens_per_second(model, 1e15, 1.5)


def a_run(tmp_path, **overrides) -> tuple[TrainConfig, TrainResult]:
    config = train_config(DataPaths(data_dir=str(tmp_path)), get_preset("leaderboard"), "web", tmp_path / "run",
                          leaderboard_variants(get_preset("leaderboard"))["leaderboard"].run)
    result = TrainResult(**{**dict(status="budget", steps=60_000, tokens=60_000 * 32_768, wall_seconds=5_402.5,
                                   tokens_per_second=380_000.26, final_train_loss=3.4, final_val_loss=3.3456789,
                                   best_val_loss=3.34, checkpoint_path=None, metrics_path="m", out_dir="o",
                                   mfu=0.27512345), **overrides})
    return config, result


def test_submission_states_loss_tokens_wall_clock_hardware_and_the_whole_config(tmp_path):
    config, result = a_run(tmp_path)
    cpu = hardware("cpu", torch_threads=2)
    assert cpu["device"] == "cpu" and cpu["cpu_cores"] >= 1 and cpu["cpu"] in cpu["summary"]
    assert cpu["torch"] == torch.__version__
    submission = leaderboard_submission(config, result, cpu)
    assert json.loads(json.dumps(submission)) == submission  # JSON as it is
    assert submission["val_loss"] == 3.3457 and submission["tokens"] == result.tokens
    assert submission["wall_clock_seconds"] == 5_402.5 and submission["budget_seconds"] == LEADERBOARD_SECONDS
    assert submission["validation"] == {"file": config.valid_path, "context_length": 512, "windows": 100 * 64,
                                        "tokens": 100 * 64 * 512, "eval_seed": 0}
    assert TrainConfig.from_dict(submission["config"]) == config
    # This run's pace over its budget: 60,000 steps in 5,402.5 s -> 59,972 fit 5,400 s.
    assert submission["max_steps_for_budget"] == 59_972
    markdown = submission_markdown(submission)
    for text in ("**3.3457**", "6,400 windows of 512 tokens", "1,966,080,000", "of a 5,400 s budget",
                 "stopped by the budget at step 60,000", cpu["summary"], "MFU 27.5%", "12 layers, 12 heads",
                 "QK-norm", "logit soft-cap 30", "Muon (lr 0.02", "z-loss 0.0001", "bfloat16, torch.compile",
                 '"lr_min": 0.0003,'):
        assert text in markdown, text
    diverged = leaderboard_submission(config, dataclasses.replace(result, status="diverged", final_val_loss=None), cpu)
    assert diverged["val_loss"] is None and "| validation loss | n/a" in submission_markdown(diverged)


def test_describe_names_only_the_options_that_are_on(tmp_path):
    baseline = train_config(DataPaths(data_dir=str(tmp_path)), get_preset("cpu"), "web", tmp_path)
    text = describe(baseline)
    assert "4 layers, 16 heads, d_ff 1344 (swiglu)" in text and "AdamW (lr 0.003)" in text
    assert not any(option in text for option in ("QK-norm", "soft-cap", "Muon", "z-loss", "compile"))


# ---------------------------------------------------------------------------------------------
# Presets


def test_leaderboard_preset_is_owt_with_the_32k_tokenizer_and_the_chosen_configuration(tmp_path):
    preset, paths = get_preset("leaderboard"), DataPaths(data_dir=str(tmp_path))
    assert preset.corpora["web"].train_url.endswith("owt_train.txt.gz") and preset.tokenizers["web"].vocab_size == 32_000
    config = train_config(paths, preset, keys.LEADERBOARD_ROLE, tmp_path,
                          leaderboard_variants(preset)["leaderboard"].run)
    model = config.model
    assert (model.vocab_size, model.context_length, model.d_model, model.num_layers, model.num_heads) == (
        32_000, 512, 768, 12, 12)
    assert (model.ffn, model.qk_norm, model.zero_init_output, model.logit_softcap, model.fused_attention) == (
        "relu2", True, True, 30.0, True)
    assert (config.optimizer, config.muon_lr, config.z_loss) == ("muon", 0.02, 1e-4)
    assert (config.dtype, config.compile, config.tf32, config.device) == ("bfloat16", True, True, "cuda")
    assert config.max_wall_seconds == 5_400
    # Sized as presets.py says: the steps 95% of 1.5 h hold at 30% MFU of the H100's 989 TFLOP/s bf16 peak.
    rate = expected_tokens_per_second(model, 989e12, ASSUMED_H100_MFU)
    assert config.max_steps == steps_in_budget(5_400, rate, config.tokens_per_step, overhead=0.05)
    assert 1.5e9 < config.max_steps * config.tokens_per_step < 3e9  # ~15-20 tokens per parameter of 134M
    assert config.max_steps // config.eval_every >= 10


def test_the_leaderboard_runs_are_the_same_in_the_h100_and_leaderboard_presets(tmp_path):
    paths = DataPaths(data_dir=str(tmp_path))

    def configs(name):
        preset = get_preset(name)
        return {key: train_config(paths, preset, keys.LEADERBOARD_ROLE, tmp_path, variant.run, model=variant.model)
                for key, variant in leaderboard_variants(preset).items()}

    h100, board = configs("h100"), configs("leaderboard")
    assert h100 == board
    assert h100["baseline"].optimizer == "adamw" and h100["baseline"].model.d_model == 512
    # The leaderboard preset's main runs are its leaderboard configuration.
    assert train_config(paths, get_preset("leaderboard"), "web", tmp_path) == board["leaderboard"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_presets_leaderboard_runs_share_a_budget_and_the_validation_context(name, tmp_path):
    preset, paths = get_preset(name), DataPaths(data_dir=str(tmp_path))
    spec = preset.leaderboard
    runs = {key: train_config(paths, preset, keys.LEADERBOARD_ROLE, tmp_path, variant.run, model=variant.model)
            for key, variant in leaderboard_variants(preset).items()}
    assert set(runs) == {"baseline", "leaderboard"}
    for key, config in runs.items():
        assert config.max_wall_seconds == spec.seconds and config.model.context_length == spec.context_length
        assert config.model.vocab_size == preset.tokenizers["web"].vocab_size
    assert runs["baseline"].optimizer == "adamw" and runs["leaderboard"].optimizer == "muon"
    assert runs["leaderboard"].model.qk_norm and not runs["baseline"].model.qk_norm
    if name != "test":  # test's runs are stopped by a 2 s budget long before their max_steps
        for config in runs.values():
            assert config.max_steps // config.eval_every >= 10


def test_demo_compares_at_equal_wall_clock_within_a_reasonable_demo():
    spec = get_preset("demo").leaderboard
    assert 60 <= spec.seconds <= 90
    for variant in (spec.baseline, spec.leaderboard):
        assert variant.run.device is None  # the demo's: CPU, from-scratch attention
        assert not variant.model.get("fused_attention")


# ---------------------------------------------------------------------------------------------
# The assets, on the test preset (2 s per run)


@pytest.fixture(scope="module")
def web_upstream(tmp_path_factory):
    data = tmp_path_factory.mktemp("web_upstream")
    defs = build_defs("test", data)
    with DagsterInstance.ephemeral() as instance:
        assert materialize(list(defs.assets), instance=instance, resources=defs.resources,
                           selection=WEB_UPSTREAM).success
    return data


def test_leaderboard_partitions_stop_at_their_budget_and_write_the_submission_and_curves(web_upstream, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(web_upstream, data)
    defs = build_defs("test", data)
    seconds = get_preset("test").leaderboard.seconds
    runs = {}
    with DagsterInstance.ephemeral() as instance:
        for partition in ("baseline", "leaderboard"):
            runs[partition] = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                                          selection=["leaderboard"], partition_key=partition)
        curves = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                             selection=["leaderboard_curves"])
    assert all(run.success for run in runs.values()) and curves.success
    for partition, run in runs.items():
        result = json.loads((data / "runs" / "leaderboard" / partition / "result.json").read_text())
        assert result["status"] == "budget" and seconds <= result["wall_seconds"] < seconds + 5
        checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
        assert checks["converged"].passed and checks["converged"].metadata["status"].value == "budget"
        assert checks["no_nan_in_metrics"].passed
        [event] = run.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["status"].value == "budget" and "CPU" in metadata["hardware"].value
        assert ("submission" in metadata) == (partition == "leaderboard")

    result = json.loads((data / "runs" / "leaderboard" / "leaderboard" / "result.json").read_text())
    submission = json.loads((data / "leaderboard" / "submission.json").read_text())
    assert submission["val_loss"] == round(result["final_val_loss"], 4) and submission["tokens"] == result["tokens"]
    assert submission["status"] == "budget" and submission["preset"] == "test"
    assert submission["hardware"]["device"] == "cpu" and submission["config"]["optimizer"] == "muon"
    assert submission["config"]["model"]["qk_norm"] is True
    assert submission["validation"]["context_length"] == get_preset("test").leaderboard.context_length
    assert f"**{submission['val_loss']:.4f}**" in (data / "leaderboard" / "submission.md").read_text()

    summary = json.loads((data / "curves" / "leaderboard.json").read_text())
    assert [run["variant"] for run in summary["runs"]] == ["baseline", "leaderboard"] and summary["target"] is None
    assert all(run["status"] == "budget" and math.isfinite(run["final_val_loss"]) for run in summary["runs"])
    assert (data / "curves" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
