"""Corpus assets: one per role, each writing `train.txt` and `valid.txt`.

The preset says where a role's text comes from: the procedural stories generator, this Python's
stdlib prose, the handout's downloads (TinyStories, OWT sample) or local files. Run config can
point a role at local files instead (`local_train_path`, optional `local_valid_path`) or at other
URLs (`train_url` + `valid_url`). Downloads are cached per URL under <data>/downloads/. The work
is `cs336_core.corpora.materialize_corpus`.

Your own copy of a corpus (the handout's TinyStories and OWT files, or any text with
<|endoftext|> between documents, plain or .gz) replaces a role's source in every preset through
the environment: CS336_STORIES_TRAIN / CS336_STORIES_VALID and CS336_WEB_TRAIN / CS336_WEB_VALID,
read by `with_corpus_env` when the definitions are built (UI, CLI and `make demo` alike). The corpus
asset's metadata names the variables it read.
"""

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Optional

from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.presets import CorpusSpec, Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
# The submodule itself, so that code_version follows the corpus code it runs.
from cs336_core.corpora.materialize import materialize_corpus

GROUP = "corpora"


CORPUS_ENV: dict[str, tuple[str, str]] = {"stories": ("CS336_STORIES_TRAIN", "CS336_STORIES_VALID"),
                                          "web": ("CS336_WEB_TRAIN", "CS336_WEB_VALID")}


class CorpusEnvError(ValueError):
    """A corpus environment variable names a file that cannot be read."""


def check_corpus_file(variable: str, path: str) -> None:
    """Raise CorpusEnvError naming `variable` and `path` unless `path` is a readable file."""
    where = f"{variable}={path}"
    if not Path(path).exists():
        raise CorpusEnvError(f"{where}: no such file (unset {variable} to use the preset's corpus)")
    if not Path(path).is_file():
        raise CorpusEnvError(f"{where}: not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as error:
        raise CorpusEnvError(f"{where}: cannot be read ({error.strerror or error})") from error


def with_corpus_env(preset: Preset, environ: Mapping[str, str] | None = None) -> Preset:
    """`preset` with each role whose CS336_<ROLE>_TRAIN is set reading local files instead of its source.

    CS336_<ROLE>_TRAIN alone is split by document with the role's valid_fraction and seed;
    CS336_<ROLE>_VALID beside it is the validation file. Plain text or gzip, documents separated by
    <|endoftext|> as in the handout's files. A file that cannot be read is a CorpusEnvError naming
    the variable and the path, raised here, when the definitions load.
    """
    environ = os.environ if environ is None else environ
    corpora = dict(preset.corpora)
    for role, (train_var, valid_var) in CORPUS_ENV.items():
        train, valid = environ.get(train_var, ""), environ.get(valid_var, "")
        if not train and not valid:
            continue
        if not train:
            raise CorpusEnvError(f"{valid_var}={valid} is set without {train_var}: set {train_var} to the "
                                 f"training file too (alone, it is split into train and validation)")
        given = {var: str(Path(path).expanduser().resolve()) for var, path in ((train_var, train), (valid_var, valid))
                 if path}
        for var, path in given.items():
            check_corpus_file(var, path)
        spec = preset.corpora[role]
        corpora[role] = CorpusSpec("local", train_path=given[train_var], valid_path=given.get(valid_var, ""),
                                   valid_fraction=spec.valid_fraction, seed=spec.seed, env=tuple(given.items()))
    return dataclasses.replace(preset, corpora=corpora) if corpora != preset.corpora else preset


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


def _source(spec: CorpusSpec) -> dict:
    """The spec as materialize_corpus's arguments: where the text comes from, not who said so."""
    return {name: value for name, value in dataclasses.asdict(spec).items() if name != "env"}


def corpus_asset(preset: Preset, role: str) -> AssetsDefinition:
    spec = preset.corpora[role]
    origin = " from " + ", ".join(variable for variable, _ in spec.env) if spec.env else ""

    @asset(
        key=keys.BY_ROLE[role].corpus,
        group_name=GROUP,
        kinds={"python"},
        code_version=code_version(__file__, config=_source(spec)),
        description=f"The {role} corpus ({spec.source}{origin}), split into train.txt and valid.txt.",
    )
    def corpus(context: AssetExecutionContext, config: CorpusConfig, paths: DataPaths) -> MaterializeResult:
        resolved = resolve_spec(spec, role, config)
        for variable, path in resolved.env:  # still there since the definitions loaded?
            check_corpus_file(variable, path)
        out_dir = paths.corpus_dir(role)
        stats = materialize_corpus(out_dir, downloads_dir=paths.path("downloads"), **_source(resolved),
                                   progress=progress_logger(context), log=context.log.info)
        return MaterializeResult(data_version=output_data_version(_source(resolved), out_dir), metadata={
            "source": resolved.source,
            "environment": "\n".join(f"{variable}={path}" for variable, path in resolved.env) or "none: the preset's source",
            **knobs_metadata(preset, corpus=_source(resolved)),
            "path": MetadataValue.path(str(out_dir)),
            "train_bytes": stats["train"]["bytes"],
            "train_documents": stats["train"]["documents"],
            "valid_bytes": stats["valid"]["bytes"],
            "valid_documents": stats["valid"]["documents"],
            "preview": MetadataValue.md(f"```\n{stats['train']['preview']}\n```"),
        })

    return corpus
