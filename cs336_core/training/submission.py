"""A run written up as a leaderboard submission (handout section 7.5): what it scored, on what, in how long.

`leaderboard_submission(config, result, hardware(...))` is a JSON-ready dict (validation loss,
tokens trained, wall-clock, hardware as torch sees it, the whole TrainConfig) and
`submission_markdown` the same as a table to paste. The validation loss is the run's own final
evaluation: `eval_batches` x `eval_batch_size` windows of the model's context length drawn from the
validation file with `eval_seed`, which the submission states, so a reader knows what was scored.
"""

from __future__ import annotations

import json
import math
import os
import platform
from typing import Any

import torch

from cs336_core.progress import round_floats
from cs336_core.training.config import TrainConfig
from cs336_core.training.metrics import TrainResult
from cs336_core.training.runtime import resolve_device


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device: str, torch_threads: int | None = None) -> dict[str, Any]:
    """What a run on `device` trains on, as torch sees it: the GPU's name, memory and count, or the
    CPU's model and core count, with the torch (and CUDA) version and a one-line `summary`."""
    resolved = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; 1 for a single process
    info: dict[str, Any] = {"device": resolved.type, "world_size": world_size, "torch": torch.__version__,
                            "cpu": cpu_model(), "cpu_cores": os.cpu_count()}
    if torch_threads:
        info["torch_threads"] = torch_threads
    if resolved.type == "cuda":
        properties = torch.cuda.get_device_properties(resolved)
        info.update(gpu=torch.cuda.get_device_name(resolved), gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
        info["summary"] = f"{world_size} x {info['gpu']} ({info['gpu_memory_gb']} GB), torch {torch.__version__}"
    else:
        threads = f", {torch_threads} torch thread{'s' if torch_threads > 1 else ''}" if torch_threads else ""
        info["summary"] = (f"{resolved.type.upper()}: {info['cpu']} ({info['cpu_cores']} cores{threads}), "
                           f"torch {torch.__version__}")
    return info


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def describe(config: TrainConfig) -> str:
    """The model and optimizer of a run in one line, the options that are on named."""
    model = config.model
    options = [name for name, on in (("QK-norm", model.qk_norm), ("zero-init output projections", model.zero_init_output),
                                     ("tied embeddings", model.tie_embeddings),
                                     ("fused attention", model.fused_attention)) if on]
    if model.logit_softcap is not None:
        options.append(f"logit soft-cap {model.logit_softcap:g}")
    optimizer = (f"Muon (lr {config.muon_lr:g}, momentum {config.muon_momentum:g}) on the blocks' matrices + "
                 f"AdamW (lr {config.lr_max:g}) on the rest" if config.optimizer == "muon"
                 else f"AdamW (lr {config.lr_max:g})")
    precision = [config.dtype] + (["torch.compile"] if config.compile else [])
    return (f"d_model {model.d_model}, {_count(model.num_layers, 'layer')}, {_count(model.num_heads, 'head')}, d_ff "
            f"{model.resolved_d_ff} ({model.ffn}), {model.norm}-norm, {model.position}, context "
            f"{model.context_length}, vocab {model.vocab_size:,}"
            + (f"; {', '.join(options)}" if options else "")
            + f"; {optimizer}, cosine to {config.lr_min:g} over {config.steps:,} steps, warmup "
              f"{config.warmup_steps:,}, weight decay {config.weight_decay:g}"
            + (f", z-loss {config.z_loss:g}" if config.z_loss else "")
            + f"; batch {config.batch_size} x {model.context_length}; {', '.join(precision)}")


def leaderboard_submission(config: TrainConfig, result: TrainResult, hardware_info: dict[str, Any]) -> dict[str, Any]:
    """The submission of a finished run as a JSON-ready dict (see the module docstring)."""
    budget = config.max_wall_seconds
    windows = config.eval_batches * config.eval_batch_size
    submission = {
        "val_loss": _round(result.final_val_loss),
        "best_val_loss": _round(result.best_val_loss),
        "tokens": result.tokens,
        "steps": result.steps,
        "max_steps": config.steps,
        "wall_clock_seconds": round(result.wall_seconds, 1),
        "wall_clock_hours": round(result.wall_seconds / 3600, 3),
        "budget_seconds": budget,
        "status": result.status,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "mfu": _round(result.mfu),
        "validation": {"file": config.valid_path, "context_length": config.model.context_length, "windows": windows,
                       "tokens": windows * config.model.context_length, "eval_seed": config.eval_seed},
        "hardware": hardware_info,
        "configuration": describe(config),
        "config": config.to_dict(),
    }
    if budget and result.steps and result.wall_seconds > 0:
        # This run's own pace projected onto its budget: the max_steps whose schedule ends at the budget here.
        submission["max_steps_for_budget"] = int(result.steps * budget / result.wall_seconds)
    return submission


def submission_markdown(submission: dict[str, Any], title: str = "Leaderboard submission") -> str:
    """`submission` as a Markdown table and the full config as JSON, ready to paste (its floats to 6
    significant digits: lr_min = lr_max / 10 is 0.00030000000000000003 in binary)."""
    s, validation = submission, submission["validation"]
    budget = s["budget_seconds"]
    stop = (f"stopped by the budget at step {s['steps']:,} of {s['max_steps']:,}" if s["status"] == "budget"
            else f"{s['status']} at step {s['steps']:,} of {s['max_steps']:,}")
    wall = f"{s['wall_clock_seconds']:,} s ({s['wall_clock_hours']:.2f} h)" + (
        f" of a {budget:,g} s budget; {stop}" if budget else f"; {stop}")
    loss = "n/a" if s["val_loss"] is None else f"**{s['val_loss']:.4f}**"
    best = "" if s["best_val_loss"] is None else f" (best {s['best_val_loss']:.4f})"
    mfu = "" if s["mfu"] is None else f", MFU {100 * s['mfu']:.1f}%"
    rows = [
        ("validation loss", f"{loss}{best} on `{validation['file']}`: {validation['windows']:,} windows of "
                            f"{validation['context_length']} tokens ({validation['tokens']:,} tokens, eval seed "
                            f"{validation['eval_seed']})"),
        ("tokens trained", f"{s['tokens']:,} ({s['steps']:,} steps)"),
        ("wall-clock", wall),
        ("hardware", s["hardware"]["summary"]),
        ("throughput", f"{s['tokens_per_second']:,.0f} tokens/s{mfu}"),
        ("configuration", s["configuration"]),
    ]
    if "max_steps_for_budget" in s:
        rows.append(("schedule", f"at this run's pace, max_steps={s['max_steps_for_budget']:,} ends the cosine "
                                 "at the budget"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (f"# {title}\n\n| | |\n| --- | --- |\n{table}\n\nFull configuration (`TrainConfig`):\n\n"
            f"```json\n{json.dumps(round_floats(s['config'], 6), indent=2)}\n```\n")
