"""Tokenizer assets: byte-level BPE trained on each role's train split (handout section 2), and its checks."""

import dataclasses
import tempfile
from pathlib import Path

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetExecutionContext,
                     AssetsDefinition, MaterializeResult, MetadataValue, asset, asset_check)

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import bpe, reporting
from cs336_core.bpe import vocab_from_merges
from cs336_core.files import atomic_write_json
from cs336_core.tokenizer_profile import train_tokenizer

GROUP = "tokenizers"
# The reproducibility check retrains on this much of the train split, serially and in parallel.
REPRO_SLICE_BYTES = 256_000
REPRO_EXTRA_MERGES = 200


def load_tokenizer(paths: DataPaths, preset: Preset, role: str) -> bpe.Tokenizer:
    """The role's trained tokenizer, from the files the tokenizer asset wrote."""
    return bpe.Tokenizer.from_files(*paths.tokenizer_files(role), list(preset.tokenizers[role].special_tokens))


def tokenizer_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = preset.tokenizers[role]

    @asset(
        key=keys.BY_ROLE[role].tokenizer,
        group_name=GROUP,
        deps=[keys.BY_ROLE[role].corpus],
        kinds={"python"},
        code_version=code_version(__file__, config=dataclasses.asdict(spec)),
        description=f"Byte-level BPE, {spec.vocab_size:,} tokens, trained on the {role} train split "
                    "(vocab.json + merges.txt in GPT-2's format).",
    )
    def tokenizer(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        vocab_path, merges_path = paths.tokenizer_files(role)
        stats = train_tokenizer(paths.corpus_dir(role) / "train.txt", spec.vocab_size, list(spec.special_tokens),
                                vocab_path, merges_path, progress=progress_logger(context))
        atomic_write_json(paths.tokenizer_dir(role) / "stats.json", stats)
        longest = stats["longest_tokens"]
        table = reporting.markdown_table([{**t, "token": f"`{t['token']}`"} for t in longest])
        metadata = {
            **knobs_metadata(preset, tokenizer=dataclasses.asdict(spec)),
            "vocab_size": stats["vocab_size"],
            "merges": stats["merges"],
            "training_seconds": stats["training_seconds"],
            **{f"{phase}_seconds": t for phase, t in stats["phase_seconds"].items()},
            "peak_memory_mb": stats["peak_memory_mb"],
            "longest_token": longest[0]["token"],
            "longest_tokens": MetadataValue.md(table),
            "path": MetadataValue.path(str(paths.tokenizer_dir(role))),
        }
        # The product is vocab + merges; stats.json holds timings that differ on every run and
        # would mark the token files stale after a retrain that changed nothing.
        version = output_data_version(dataclasses.asdict(spec), vocab_path, merges_path)
        return MaterializeResult(metadata=metadata, data_version=version)

    return tokenizer


def tokenizer_checks(preset: Preset, role: str) -> list[AssetChecksDefinition]:
    spec = preset.tokenizers[role]
    key = keys.BY_ROLE[role].tokenizer

    @asset_check(asset=key, name="vocab_size",
                 description="The saved vocabulary has exactly the configured number of entries.")
    def vocab_size(context: AssetCheckExecutionContext, paths: DataPaths) -> AssetCheckResult:
        try:
            vocab, merges = bpe.load_vocab_merges(*paths.tokenizer_files(role), list(spec.special_tokens))
        except ValueError as error:  # files that do not load are a failed check, not a crashed run
            return AssetCheckResult(passed=False, metadata={"error": str(error)})
        return AssetCheckResult(passed=len(vocab) == spec.vocab_size, metadata={
            "vocab_size": len(vocab), "configured": spec.vocab_size, "merges": len(merges)})

    @asset_check(asset=key, name="merges_reproducible",
                 description="The saved merges, applied in order, rebuild the saved vocabulary id for id; "
                             "retraining on a slice of the train split gives identical merges serially and "
                             "with 2 workers; and the saved files reload to the same vocab and merges.")
    def merges_reproducible(context: AssetCheckExecutionContext, paths: DataPaths) -> AssetCheckResult:
        specials = list(spec.special_tokens)
        try:
            vocab, merges = bpe.load_vocab_merges(*paths.tokenizer_files(role), specials)
        except ValueError as error:  # vocab and merges that disagree fail the check with the loader's reason
            return AssetCheckResult(passed=False, metadata={"error": str(error)})
        with tempfile.TemporaryDirectory() as tmp:
            # The saved format must round-trip exactly.
            bpe.save_vocab_merges(vocab, merges, Path(tmp) / "v.json", Path(tmp) / "m.txt")
            reloaded = bpe.load_vocab_merges(Path(tmp) / "v.json", Path(tmp) / "m.txt")
            slice_path = Path(tmp) / "slice.txt"
            with open(paths.corpus_dir(role) / "train.txt", "rb") as f:
                head = f.read(REPRO_SLICE_BYTES)
            slice_path.write_bytes(head.decode("utf-8", errors="ignore").encode("utf-8"))
            small_vocab = min(spec.vocab_size, 256 + len(specials) + REPRO_EXTRA_MERGES)
            serial = bpe.train_bpe(slice_path, small_vocab, specials, num_workers=1)
            parallel = bpe.train_bpe(slice_path, small_vocab, specials, num_workers=2)
        round_trip = reloaded == (vocab, merges)
        deterministic = serial == parallel
        rebuilds = vocab_from_merges(merges, specials) == vocab
        return AssetCheckResult(passed=round_trip and deterministic and rebuilds, metadata={
            "merges_rebuild_vocab": rebuilds, "saved_files_round_trip": round_trip,
            "serial_equals_parallel": deterministic, "slice_bytes": len(head), "slice_vocab_size": small_vocab})

    return [vocab_size, merges_reproducible]
