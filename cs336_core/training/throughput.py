"""Model FLOPs utilization (MFU): the share of the device's peak that training turns into model FLOPs.

    mfu = tokens_per_second * flops_per_token / (peak_flops * world_size)

`flops_per_token` is the model's matmul FLOPs for one token at full context, forward and backward:
3 x cs336_core.accounting.forward_flops (backward = 2 x forward), so attention over the whole
window counts and the optimizer step does not (the usual MFU convention, as in PaLM's appendix B).

The peak is, in this order: `TrainConfig.peak_flops` when given (a measured peak, or a device the
table lacks); else the dense (no sparsity) tensor-core peak of the GPU `torch.cuda.get_device_name`
reports, from NVIDIA's datasheets, for the run's precision: bfloat16 autocast -> BF16; float32
with `tf32` on -> TF32 (that is what its matmuls run on); float32 with `tf32` off -> plain FP32.
On CPU, MPS or a GPU missing from the table the peak is unknown and mfu is null. The run records
which peak it used as TrainResult.peak_flops and .peak_flops_source (also in result.json).
"""

from __future__ import annotations

import torch

from cs336_core.accounting import forward_flops
from cs336_core.model import ModelConfig
from cs336_core.training.config import TrainConfig

# (substring of the lower-cased device name, {precision: dense peak FLOP/s}), most specific first:
# "h100 pcie" before "h100", "a100" before "a10", "l40s" before "l40" before "l4". Figures are the
# vendor datasheets' dense numbers (the "with sparsity" ones halved). The A10G (AWS's variant of
# the A10) has no public NVIDIA datasheet, so it is not listed: set TrainConfig.peak_flops for it.
DENSE_PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h100 nvl", {"bfloat16": 835e12, "tf32": 418e12, "float32": 60e12}),
    ("h100 pcie", {"bfloat16": 756e12, "tf32": 378e12, "float32": 51e12}),
    ("h200 nvl", {"bfloat16": 835e12, "tf32": 418e12, "float32": 60e12}),
    ("h100", {"bfloat16": 989e12, "tf32": 494e12, "float32": 67e12}),  # SXM (and GH200's H100)
    ("h200", {"bfloat16": 989e12, "tf32": 494e12, "float32": 67e12}),  # same compute as the H100 SXM
    ("a100", {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12}),
    ("a10", {"bfloat16": 125e12, "tf32": 62.5e12, "float32": 31.2e12}),
    ("l40s", {"bfloat16": 362e12, "tf32": 183e12, "float32": 91.6e12}),
    ("l40", {"bfloat16": 181e12, "tf32": 90.5e12, "float32": 90.5e12}),
    ("l4", {"bfloat16": 121e12, "tf32": 60e12, "float32": 30.3e12}),
    ("rtx a6000", {"bfloat16": 154.8e12, "tf32": 77.4e12, "float32": 38.7e12}),
    ("rtx 4090", {"bfloat16": 165.2e12, "tf32": 82.6e12, "float32": 82.6e12}),
    ("rtx 3090", {"bfloat16": 71e12, "tf32": 35.6e12, "float32": 35.6e12}),
)


def flops_per_token(model: ModelConfig) -> float:
    """Forward + backward matmul FLOPs per trained token: 3 x the forward FLOPs of one full-context sequence."""
    return 3 * forward_flops(model, seq_len=model.context_length, batch_size=1)["total"] / model.context_length


def precision(dtype: str, tf32: bool) -> str:
    """The precision the run's matmuls execute in: "bfloat16", "tf32" or "float32"."""
    if dtype == "bfloat16":
        return "bfloat16"
    return "tf32" if tf32 else "float32"


def table_peak(device_name: str, precision_name: str) -> float | None:
    """The dense peak of a device (by its CUDA name) in a precision; None if the table lacks it."""
    name = device_name.lower()
    for key, peaks in DENSE_PEAK_FLOPS:
        if key in name:
            return peaks.get(precision_name)
    return None


def peak_flops(device: torch.device, dtype: str, tf32: bool, given: float | None) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where that number comes from); (None, why) when unknown."""
    if given is not None:
        return given, f"TrainConfig.peak_flops ({given:.4g} FLOP/s, given by the user)"
    if device.type != "cuda":
        return None, f"unknown on {device.type}: set TrainConfig.peak_flops for an MFU"
    name = torch.cuda.get_device_name(device)
    kind = precision(dtype, tf32)
    value = table_peak(name, kind)
    if value is None:
        return None, f"{name} ({kind}) is not in the table of dense peaks: set TrainConfig.peak_flops for an MFU"
    return value, f"{name}: {kind} dense peak {value / 1e12:g} TFLOP/s (vendor datasheet)"


def mfu(tokens_per_second: float, per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilization, or None when the peak is unknown."""
    if not peak:
        return None
    return tokens_per_second * per_token / peak


class RunMFU:
    """The MFU of one run's throughput: its model's FLOPs per token against the peak of all its devices.

    Throughput is measured over the global batch, so the peak is one device's times the world size.
    """

    def __init__(self, config: TrainConfig, device: torch.device, world_size: int):
        self.flops_per_token = flops_per_token(config.model)
        self.peak_flops, self.source = peak_flops(device, config.dtype, config.tf32, config.peak_flops)
        self.world_size = world_size

    def __call__(self, tokens_per_second: float) -> float | None:
        peak = self.peak_flops * self.world_size if self.peak_flops else None
        return mfu(tokens_per_second, self.flops_per_token, peak)


# ----------------------------------------------------------------------------------------------
# Sizing a run to a wall-clock budget. The lr schedule is defined over max_steps, and a budget stop
# ends it wherever it is (see TrainConfig.max_wall_seconds), so a budget run's max_steps should be
# the steps its budget holds: then the cosine reaches its floor about when the budget runs out.


def expected_tokens_per_second(model: ModelConfig, peak: float, assumed_mfu: float) -> float:
    """Training tokens per second of `model` on a device of `peak` FLOP/s at `assumed_mfu` (the
    inverse of `mfu`): for sizing a run before its throughput has been measured."""
    if not 0 < assumed_mfu <= 1:
        raise ValueError(f"assumed_mfu must be in (0, 1], got {assumed_mfu!r}")
    if not peak > 0:
        raise ValueError(f"peak must be positive FLOP/s, got {peak!r}")
    return peak * assumed_mfu / flops_per_token(model)


def steps_in_budget(seconds: float, tokens_per_second: float, tokens_per_step: int, overhead: float = 0.05) -> int:
    """The optimizer steps `seconds` of wall-clock hold at `tokens_per_second`, after `overhead`
    (the share of the budget spent outside optimizer steps: evaluations, checkpoints, compilation).

    >>> steps_in_budget(60, 10_000, 1_000, overhead=0.1)  # 54 s of steps at 10 steps/s
    540
    """
    if not seconds > 0 or not tokens_per_second > 0 or tokens_per_step < 1:
        raise ValueError(f"need seconds > 0, tokens_per_second > 0 and tokens_per_step >= 1, got "
                         f"{seconds!r}, {tokens_per_second!r}, {tokens_per_step!r}")
    if not 0 <= overhead < 1:
        raise ValueError(f"overhead must be in [0, 1), got {overhead!r}")
    return max(1, int(seconds * (1 - overhead) * tokens_per_second / tokens_per_step))
