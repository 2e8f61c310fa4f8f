"""Encoded datasets: each role's train and valid text as a uint16 `.npy` of token ids."""


import dataclasses

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, AssetsDefinition,
                     MaterializeResult, MetadataValue, asset, asset_check)

from cs336_assets.common import code_version, knobs_metadata, output_data_version, progress_logger
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_assets.tokenizers import load_tokenizer
from cs336_core import tokenization
from cs336_core.data import load_tokens

GROUP = "datasets"
SPLITS = ("train", "valid")


def _tokens_asset(preset: Preset, role: str) -> AssetsDefinition:
    @asset(
        name=f"{role}_tokens",
        group_name=GROUP,
        deps=[f"{role}_corpus", f"{role}_tokenizer"],
        kinds={"numpy"},
        code_version=code_version(__file__, config=dataclasses.asdict(preset.tokenizers[role])),
        description=f"The {role} train and valid splits encoded with the {role} tokenizer (uint16 .npy).",
    )
    def tokens_asset(context: AssetExecutionContext, workspace: Workspace) -> MaterializeResult:
        tokenizer = load_tokenizer(workspace, role)
        spec = dataclasses.asdict(workspace.get_preset().tokenizers[role])
        metadata = {}
        for split in SPLITS:
            out = workspace.tokens_path(role, split)
            context.log.info(f"encoding {role}/{split} -> {out}")
            stats = tokenization.encode_file(tokenizer, workspace.corpus_dir(role) / f"{split}.txt", out,
                                             progress=progress_logger(context))
            ids = load_tokens(out)
            metadata.update({
                f"{split}_tokens": int(stats["tokens"]),
                f"{split}_bytes": int(stats["bytes"]),
                f"{split}_bytes_per_token": round(stats["bytes"] / max(stats["tokens"], 1), 3),
                f"{split}_encode_seconds": round(stats["seconds"], 2),
                f"{split}_max_id": int(ids.max()) if len(ids) else -1,
                f"{split}_path": MetadataValue.path(str(out)),
            })
            metadata["dtype"] = str(ids.dtype)
        outputs = [workspace.tokens_path(role, split) for split in SPLITS]
        return MaterializeResult(data_version=output_data_version(spec, *outputs),
                                 metadata={**knobs_metadata(workspace.get_preset(), tokenizer=spec), **metadata})

    return tokens_asset


def _ids_in_range_check(role: str):
    @asset_check(asset=f"{role}_tokens", name="ids_below_vocab_size",
                 description="Every token id in both splits is below the tokenizer's vocabulary size.")
    def ids_in_range(context: AssetCheckExecutionContext, workspace: Workspace) -> AssetCheckResult:
        vocab_size = len(load_tokenizer(workspace, role).vocab)
        metadata: dict = {"vocab_size": vocab_size}
        passed = True
        for split in SPLITS:
            try:
                ids = load_tokens(workspace.tokens_path(role, split))
            except (FileNotFoundError, ValueError) as err:  # missing, empty or malformed: failed, with why
                metadata[f"{split}_error"] = str(err)
                passed = False
                continue
            biggest = int(np.max(ids)) if len(ids) else -1
            metadata[f"{split}_max_id"] = biggest
            metadata[f"{split}_tokens"] = len(ids)
            passed &= len(ids) > 0 and biggest < vocab_size
        return AssetCheckResult(passed=bool(passed), metadata=metadata)

    return ids_in_range


def build(preset: Preset) -> list[AssetsDefinition]:
    return [_tokens_asset(preset, role) for role in ROLES]


def build_checks(preset: Preset) -> list:
    return [_ids_in_range_check(role) for role in ROLES]
