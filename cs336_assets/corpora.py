"""Corpus assets: one per role (stories, web), each writing `train.txt` and `valid.txt`.

The preset says where a role's text comes from: the procedural stories generator, this Python's
stdlib prose, the handout's downloads (TinyStories, OWT sample) or local files. Run config can
point a role at local files instead (`local_train_path`, optional `local_valid_path`) or at other
URLs (`train_url` + `valid_url`). Downloads are cached per URL under <data>/downloads/.
"""


import contextlib
import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version, progress_logger
from cs336_assets.presets import ROLES, CorpusSpec, Preset
from cs336_assets.resources import Workspace
from cs336_core import corpora
from cs336_core.files import atomic_path, atomic_write_json, remove_stale_partials

GROUP = "corpora"
# The handout's corpora separate every document with <|endoftext|>; a file of theirs without one
# is not the corpus, whatever else it is. Other URLs and local files need not use it.
_HANDOUT_URLS = {url for urls in corpora.CORPUS_SOURCES.values() for url in urls.values()}


class CorpusConfig(Config):
    """Run-config overrides; empty means the preset's source."""

    local_train_path: str = ""
    local_valid_path: str = ""
    train_url: str = ""  # download from these instead (both needed)
    valid_url: str = ""
    valid_fraction: float = -1.0  # < 0: the preset's


def resolve_spec(preset: Preset, role: str, config: CorpusConfig) -> CorpusSpec:
    spec = preset.corpora[role]
    if bool(config.train_url) != bool(config.valid_url):
        raise ValueError(f"give both train_url and valid_url to download the {role} corpus "
                         f"(got train_url={config.train_url!r}, valid_url={config.valid_url!r})")
    if config.train_url:
        spec = CorpusSpec("download", train_url=config.train_url, valid_url=config.valid_url)
    if config.local_train_path:
        spec = CorpusSpec("local", train_path=config.local_train_path, valid_path=config.local_valid_path,
                          valid_fraction=spec.valid_fraction, seed=spec.seed)
    if config.valid_fraction >= 0:
        spec = dataclasses.replace(spec, valid_fraction=config.valid_fraction)
    return spec


def _place(src, dest: Path, link: bool = False) -> None:
    """Put a copy of `src` at `dest` atomically; `link` hard-links instead when it can (for our own
    download cache: no second copy of a multi-GB corpus)."""
    if not Path(src).is_file():
        raise FileNotFoundError(f"corpus file not found: {src}")
    with atomic_path(dest) as tmp:
        if link:
            with contextlib.suppress(OSError):  # another filesystem, or links not allowed: copy
                tmp.unlink()
                os.link(src, tmp)
                return
        shutil.copyfile(src, tmp)


def _check_text(path, what: str, separator: str | None = None) -> None:
    """Stop here, before anything downstream tokenizes it, if `path` is not plausibly a corpus (an
    HTML error page, an empty or binary file): otherwise it shows up assets later as a 13-token
    dataset."""
    try:
        corpora.check_plausible_text(path, separator=separator)
    except ValueError as error:
        raise ValueError(f"{what} is not a usable text corpus: {error}") from error


def _download_cache(workspace: Workspace, url: str) -> Path:
    # Kept per URL under downloads/, so a rerun neither fetches again nor mixes up sources.
    return workspace.path("downloads", hashlib.sha256(url.encode()).hexdigest()[:16],
                          url.rsplit("/", 1)[-1].removesuffix(".gz"))


def _materialize_corpus(context: AssetExecutionContext, workspace: Workspace, spec: CorpusSpec, role: str) -> dict:
    """Write <data>/corpora/<role>/{train,valid}.txt from `spec`; returns per-split stats."""
    out = workspace.corpus_dir(role)
    train, valid = out / "train.txt", out / "valid.txt"
    progress = progress_logger(context)
    remove_stale_partials(out)
    if spec.source == "download":
        for url, sha256, dest in ((spec.train_url, spec.train_sha256, train), (spec.valid_url, spec.valid_sha256, valid)):
            cached = _download_cache(workspace, url)
            context.log.info(f"downloading {url} -> {cached}")
            corpora.download(url, cached, sha256=sha256 or None, progress=progress)
            _check_text(cached, f"the download of {url} (kept as {cached}; delete it to download again)",
                        corpora.ENDOFTEXT if url in _HANDOUT_URLS else None)
        for url, dest in ((spec.train_url, train), (spec.valid_url, valid)):
            _place(_download_cache(workspace, url), dest, link=True)
    elif spec.source == "local" and spec.valid_path:
        for src in (spec.train_path, spec.valid_path):
            _check_text(src, "the local corpus file")
        for src, dest in ((spec.train_path, train), (spec.valid_path, valid)):
            _place(src, dest)
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
        _check_text(whole, f"the {spec.source} corpus", None if spec.source == "local" else corpora.ENDOFTEXT)
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
        code_version=code_version(__file__, ("corpora",), dataclasses.asdict(spec)),
        description=f"The {role} corpus ({spec.source}), split into train.txt and valid.txt.",
    )
    def corpus_asset(context: AssetExecutionContext, config: CorpusConfig, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        resolved = resolve_spec(preset_now, role, config)
        stats = _materialize_corpus(context, workspace, resolved, role)
        return MaterializeResult(data_version=output_data_version(dataclasses.asdict(resolved),
                                                                  workspace.corpus_dir(role)), metadata={
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
