"""Tokenizer assets: byte-level BPE trained on each role's train split (handout section 2)."""


import dataclasses
import tempfile
from pathlib import Path

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, AssetsDefinition,
                     MaterializeResult, MetadataValue, asset, asset_check)

from cs336_assets.common import code_version, knobs_metadata, output_data_version, progress_logger
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_core import reporting, tokenization
from cs336_core.files import atomic_write_json
from cs336_core.tokenizer_profile import train_tokenizer

GROUP = "tokenizers"
# The reproducibility check retrains on this much of the train split, serially and in parallel.
REPRO_SLICE_BYTES = 256_000
REPRO_EXTRA_MERGES = 200


def tokenizer_files(workspace: Workspace, role: str) -> tuple[Path, Path]:
    directory = workspace.tokenizer_dir(role)
    return directory / "vocab.json", directory / "merges.txt"


def load_tokenizer(workspace: Workspace, role: str) -> tokenization.Tokenizer:
    preset = workspace.get_preset()
    vocab_path, merges_path = tokenizer_files(workspace, role)
    return tokenization.Tokenizer.from_files(vocab_path, merges_path, list(preset.tokenizers[role].special_tokens))


def _tokenizer_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = preset.tokenizers[role]

    @asset(
        name=f"{role}_tokenizer",
        group_name=GROUP,
        deps=[f"{role}_corpus"],
        kinds={"python"},
        code_version=code_version(__file__, config=dataclasses.asdict(spec)),
        description=f"Byte-level BPE, {spec.vocab_size:,} tokens, trained on the {role} train split "
                    "(vocab.json + merges.txt in GPT-2's format).",
    )
    def tokenizer_asset(context: AssetExecutionContext, workspace: Workspace) -> MaterializeResult:
        spec_now = workspace.get_preset().tokenizers[role]
        vocab_path, merges_path = tokenizer_files(workspace, role)
        stats = train_tokenizer(workspace.corpus_dir(role) / "train.txt", spec_now.vocab_size,
                                list(spec_now.special_tokens), vocab_path, merges_path,
                                progress=progress_logger(context))
        atomic_write_json(workspace.tokenizer_dir(role) / "stats.json", stats)
        longest = stats["longest_tokens"]
        table = reporting.markdown_table([{**t, "token": f"`{t['token']}`"} for t in longest])
        metadata = {
            **knobs_metadata(workspace.get_preset(), tokenizer=dataclasses.asdict(spec_now)),
            "vocab_size": stats["vocab_size"],
            "merges": stats["merges"],
            "training_seconds": stats["training_seconds"],
            **{f"{phase}_seconds": t for phase, t in stats["phase_seconds"].items()},
            "peak_memory_mb": stats["peak_memory_mb"],
            "longest_token": longest[0]["token"],
            "longest_tokens": MetadataValue.md(table),
            "path": MetadataValue.path(str(workspace.tokenizer_dir(role))),
        }
        # The product is vocab + merges; stats.json holds timings that differ on every run and
        # would mark the token files stale after a retrain that changed nothing.
        version = output_data_version(dataclasses.asdict(spec_now), vocab_path, merges_path)
        return MaterializeResult(metadata=metadata, data_version=version)

    return tokenizer_asset


def _vocab_size_check(role: str):
    @asset_check(asset=f"{role}_tokenizer", name="vocab_size",
                 description="The saved vocabulary has exactly the configured number of entries.")
    def vocab_size_check(context: AssetCheckExecutionContext, workspace: Workspace) -> AssetCheckResult:
        wanted = workspace.get_preset().tokenizers[role].vocab_size
        vocab, merges = tokenization.load_vocab_merges(*tokenizer_files(workspace, role))
        return AssetCheckResult(passed=len(vocab) == wanted,
                                metadata={"vocab_size": len(vocab), "configured": wanted, "merges": len(merges)})

    return vocab_size_check


def vocab_from_merges(merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> dict[int, bytes] | None:
    """The vocabulary BPE training builds with `merges`: special tokens, the 256 bytes, then one
    token per merge in order; None if a merge joins a token that no earlier merge made."""
    vocab = {i: token.encode("utf-8") for i, token in enumerate(special_tokens)}
    vocab |= {len(vocab) + byte: bytes([byte]) for byte in range(256)}
    known = set(vocab.values())
    for a, b in merges:
        if a not in known or b not in known:
            return None
        vocab[len(vocab)] = a + b
        known.add(a + b)
    return vocab


def _merges_reproducible_check(role: str):
    @asset_check(asset=f"{role}_tokenizer", name="merges_reproducible",
                 description="The saved merges, applied in order, rebuild the saved vocabulary id for id; "
                             "retraining on a slice of the train split gives identical merges serially and "
                             "with 2 workers; and the saved files reload to the same vocab and merges.")
    def merges_reproducible_check(context: AssetCheckExecutionContext, workspace: Workspace) -> AssetCheckResult:
        spec = workspace.get_preset().tokenizers[role]
        vocab_path, merges_path = tokenizer_files(workspace, role)
        vocab, merges = tokenization.load_vocab_merges(vocab_path, merges_path)
        with tempfile.TemporaryDirectory() as tmp:
            # The saved format must round-trip exactly.
            tokenization.save_vocab_merges(vocab, merges, Path(tmp) / "v.json", Path(tmp) / "m.txt")
            reloaded = tokenization.load_vocab_merges(Path(tmp) / "v.json", Path(tmp) / "m.txt")
            slice_path = Path(tmp) / "slice.txt"
            with open(workspace.corpus_dir(role) / "train.txt", "rb") as f:
                head = f.read(REPRO_SLICE_BYTES)
            slice_path.write_bytes(head.decode("utf-8", errors="ignore").encode("utf-8"))
            small_vocab = min(spec.vocab_size, 256 + len(spec.special_tokens) + REPRO_EXTRA_MERGES)
            serial = tokenization.train_bpe(slice_path, small_vocab, list(spec.special_tokens), num_workers=1)
            parallel = tokenization.train_bpe(slice_path, small_vocab, list(spec.special_tokens), num_workers=2)
        round_trip = reloaded == (vocab, merges)
        deterministic = serial == parallel
        rebuilds = vocab_from_merges(merges, list(spec.special_tokens)) == vocab
        return AssetCheckResult(passed=round_trip and deterministic and rebuilds, metadata={
            "merges_rebuild_vocab": rebuilds, "saved_files_round_trip": round_trip,
            "serial_equals_parallel": deterministic, "slice_bytes": len(head), "slice_vocab_size": small_vocab})

    return merges_reproducible_check


def build(preset: Preset) -> list[AssetsDefinition]:
    return [_tokenizer_asset(preset, role) for role in ROLES]


def build_checks(preset: Preset) -> list:
    return [check(role) for role in ROLES for check in (_vocab_size_check, _merges_reproducible_check)]
