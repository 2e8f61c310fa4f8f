"""Encoded datasets: each role's train and valid text as a uint16 `.npy` of token ids, and their check."""

import dataclasses

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetExecutionContext,
                     AssetsDefinition, MaterializeResult, MetadataValue, asset, asset_check)

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.definitions.tokenizers import load_tokenizer
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import bpe
from cs336_core.data import load_tokens

GROUP = "datasets"
SPLITS = ("train", "valid")


def tokens_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = dataclasses.asdict(preset.tokenizers[role])

    @asset(
        key=keys.BY_ROLE[role].tokens,
        group_name=GROUP,
        deps=[keys.BY_ROLE[role].corpus, keys.BY_ROLE[role].tokenizer],
        kinds={"numpy"},
        code_version=code_version(__file__, config=spec),
        description=f"The {role} train and valid splits encoded with the {role} tokenizer (uint16 .npy).",
    )
    def tokens(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        tokenizer = load_tokenizer(paths, preset, role)
        metadata = {}
        for split in SPLITS:
            out = paths.tokens_path(role, split)
            context.log.info(f"encoding {role}/{split} -> {out}")
            stats = bpe.encode_file(tokenizer, paths.corpus_dir(role) / f"{split}.txt", out,
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
        outputs = [paths.tokens_path(role, split) for split in SPLITS]
        return MaterializeResult(data_version=output_data_version(spec, *outputs),
                                 metadata={**knobs_metadata(preset, tokenizer=spec), **metadata})

    return tokens


def tokens_check(preset: Preset, role: str) -> AssetChecksDefinition:
    @asset_check(asset=keys.BY_ROLE[role].tokens, name="ids_below_vocab_size",
                 description="Every token id in both splits is below the tokenizer's vocabulary size.")
    def ids_below_vocab_size(context: AssetCheckExecutionContext, paths: DataPaths) -> AssetCheckResult:
        vocab_size = len(load_tokenizer(paths, preset, role).vocab)
        metadata: dict = {"vocab_size": vocab_size}
        passed = True
        for split in SPLITS:
            try:
                ids = load_tokens(paths.tokens_path(role, split))
            except (FileNotFoundError, ValueError) as err:  # missing, empty or malformed: failed, with why
                metadata[f"{split}_error"] = str(err)
                passed = False
                continue
            biggest = int(np.max(ids)) if len(ids) else -1
            metadata[f"{split}_max_id"] = biggest
            metadata[f"{split}_tokens"] = len(ids)
            passed &= len(ids) > 0 and biggest < vocab_size
        return AssetCheckResult(passed=bool(passed), metadata=metadata)

    return ids_below_vocab_size
