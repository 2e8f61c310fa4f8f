"""Corpus assets: one per role (stories, web), each writing `train.txt` and `valid.txt`.

The preset says where a role's text comes from: the procedural stories generator, this Python's
stdlib prose, the handout's downloads (TinyStories, OWT sample) or local files. Run config can
point a role at local files instead (`local_train_path`, optional `local_valid_path`).
"""


import dataclasses
import shutil

from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, progress_logger
from cs336_assets.presets import ROLES, CorpusSpec, Preset
from cs336_assets.resources import Workspace
from cs336_core import corpora
from cs336_core.files import atomic_path, atomic_write_json

GROUP = "corpora"


class CorpusConfig(Config):
    """Run-config overrides; empty means the preset's source."""

    local_train_path: str = ""
    local_valid_path: str = ""
    valid_fraction: float = -1.0  # < 0: the preset's


def resolve_spec(preset: Preset, role: str, config: CorpusConfig) -> CorpusSpec:
    spec = preset.corpora[role]
    if config.local_train_path:
        spec = CorpusSpec("local", train_path=config.local_train_path, valid_path=config.local_valid_path,
                          valid_fraction=spec.valid_fraction, seed=spec.seed)
    if config.valid_fraction >= 0:
        spec = dataclasses.replace(spec, valid_fraction=config.valid_fraction)
    return spec


def _materialize_corpus(context: AssetExecutionContext, workspace: Workspace, spec: CorpusSpec, role: str) -> dict:
    """Write <data>/corpora/<role>/{train,valid}.txt from `spec`; returns per-split stats."""
    out = workspace.corpus_dir(role)
    train, valid = out / "train.txt", out / "valid.txt"
    progress = progress_logger(context)
    if spec.source == "download":
        for url, dest in ((spec.train_url, train), (spec.valid_url, valid)):
            context.log.info(f"downloading {url} -> {dest}")
            corpora.download(url, dest, progress=progress)
    elif spec.source == "local" and spec.valid_path:
        for src, dest in ((spec.train_path, train), (spec.valid_path, valid)):
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
    else:
        whole = out / "all.txt"
        if spec.source == "generated_stories":
            corpora.generate_stories(whole, target_bytes=spec.target_bytes, seed=spec.seed, progress=progress)
        elif spec.source == "stdlib_prose":
            corpora.stdlib_prose(whole, max_bytes=spec.target_bytes or None, progress=progress)
        elif spec.source == "local":
            whole = spec.train_path
        else:
            raise ValueError(f"unknown corpus source {spec.source!r} for role {role!r}; "
                             "expected generated_stories, stdlib_prose, download or local")
        corpora.split_documents(whole, train, valid, valid_fraction=spec.valid_fraction, seed=spec.seed)
    stats = {split: corpora.corpus_stats(path) for split, path in (("train", train), ("valid", valid))}
    atomic_write_json(out / "stats.json", {"source": spec.source, **stats})
    return stats


def _corpus_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = preset.corpora[role]

    @asset(
        name=f"{role}_corpus",
        group_name=GROUP,
        kinds={"python"},
        code_version=code_version(("corpora",), dataclasses.asdict(spec)),
        description=f"The {role} corpus ({spec.source}), split into train.txt and valid.txt.",
    )
    def corpus_asset(context: AssetExecutionContext, config: CorpusConfig, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        resolved = resolve_spec(preset_now, role, config)
        stats = _materialize_corpus(context, workspace, resolved, role)
        return MaterializeResult(metadata={
            **knobs_metadata(preset_now, corpus=dataclasses.asdict(resolved)),
            "source": resolved.source,
            "path": MetadataValue.path(str(workspace.corpus_dir(role))),
            "train_bytes": stats["train"]["bytes"],
            "train_documents": stats["train"]["documents"],
            "valid_bytes": stats["valid"]["bytes"],
            "valid_documents": stats["valid"]["documents"],
            "preview": MetadataValue.md(f"```\n{stats['train']['preview']}\n```"),
        })

    return corpus_asset


def build(preset: Preset) -> list[AssetsDefinition]:
    return [_corpus_asset(preset, role) for role in ROLES]
