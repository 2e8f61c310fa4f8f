"""Corpus assets: one per role, each writing `train.txt` and `valid.txt`.

The preset says where a role's text comes from: the procedural stories generator, this Python's
stdlib prose, the handout's downloads (TinyStories, OWT sample) or local files. Run config can
point a role at local files instead (`local_train_path`, optional `local_valid_path`) or at other
URLs (`train_url` + `valid_url`). Downloads are cached per URL under <data>/downloads/. The work
is `cs336_core.corpora.materialize_corpus`.
"""

import dataclasses
from typing import Optional

from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.presets import CorpusSpec, Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
# The submodule itself, so that code_version follows the corpus code it runs.
from cs336_core.corpora.materialize import materialize_corpus

GROUP = "corpora"


class CorpusConfig(Config):
    """Run-config overrides; empty means the preset's source."""

    local_train_path: str = ""
    local_valid_path: str = ""
    train_url: str = ""  # download from these instead (both needed)
    valid_url: str = ""
    valid_fraction: Optional[float] = None  # None: the preset's


def resolve_spec(spec: CorpusSpec, role: str, config: CorpusConfig) -> CorpusSpec:
    """The preset's corpus spec of `role` with the run config's overrides applied."""
    if bool(config.train_url) != bool(config.valid_url):
        raise ValueError(f"give both train_url and valid_url to download the {role} corpus "
                         f"(got train_url={config.train_url!r}, valid_url={config.valid_url!r})")
    if config.train_url:
        spec = CorpusSpec("download", train_url=config.train_url, valid_url=config.valid_url)
    if config.local_train_path:
        spec = CorpusSpec("local", train_path=config.local_train_path, valid_path=config.local_valid_path,
                          valid_fraction=spec.valid_fraction, seed=spec.seed)
    if config.valid_fraction is not None:
        spec = dataclasses.replace(spec, valid_fraction=config.valid_fraction)
    return spec


def corpus_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = preset.corpora[role]

    @asset(
        key=keys.BY_ROLE[role].corpus,
        group_name=GROUP,
        kinds={"python"},
        code_version=code_version(__file__, config=dataclasses.asdict(spec)),
        description=f"The {role} corpus ({spec.source}), split into train.txt and valid.txt.",
    )
    def corpus(context: AssetExecutionContext, config: CorpusConfig, paths: DataPaths) -> MaterializeResult:
        resolved = resolve_spec(spec, role, config)
        out_dir = paths.corpus_dir(role)
        stats = materialize_corpus(out_dir, downloads_dir=paths.path("downloads"), **dataclasses.asdict(resolved),
                                   progress=progress_logger(context), log=context.log.info)
        return MaterializeResult(data_version=output_data_version(dataclasses.asdict(resolved), out_dir), metadata={
            **knobs_metadata(preset, corpus=dataclasses.asdict(resolved)),
            "source": resolved.source,
            "path": MetadataValue.path(str(out_dir)),
            "train_bytes": stats["train"]["bytes"],
            "train_documents": stats["train"]["documents"],
            "valid_bytes": stats["valid"]["bytes"],
            "valid_documents": stats["valid"]["documents"],
            "preview": MetadataValue.md(f"```\n{stats['train']['preview']}\n```"),
        })

    return corpus
