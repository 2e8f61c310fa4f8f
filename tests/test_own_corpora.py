"""Your own corpora, first-class: CS336_STORIES_TRAIN/_VALID and CS336_WEB_TRAIN/_VALID replace a
role's source in any preset, for every way the definitions are built (in-process, the dagster CLI,
the demo runner), show in the corpus metadata, and fail clearly, naming the variable and the path."""

import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from conftest import dagster_env, run_cli
from cs336_assets import demo
from cs336_assets.definitions import build_defs
from cs336_assets.definitions.corpora import CORPUS_ENV, CorpusEnvError, with_corpus_env
from cs336_assets.presets import TokenizerSpec, get_preset
from cs336_core.corpora.prose import stdlib_prose
from cs336_core.corpora.stories import generate_stories
from cs336_core.tokenization import Tokenizer

ALL_VARIABLES = [variable for pair in CORPUS_ENV.values() for variable in pair]
DATA_PREP = ["stories_corpus", "web_corpus", "stories_tokenizer", "web_tokenizer", "stories_tokens", "web_tokens"]


@pytest.fixture(autouse=True)
def no_corpus_variables(monkeypatch):
    """Each test sets the variables it means; none leaks in from the caller's shell."""
    for variable in ALL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def handout_like(tmp_path_factory):
    """Small files in the handout's formats: TinyStories-like .txt, OWT-like .txt.gz, each split in
    train and valid, documents followed by <|endoftext|>."""
    root = tmp_path_factory.mktemp("my_corpora")
    generate_stories(root / "stories_all.txt", target_bytes=150_000, seed=1)
    stdlib_prose(root / "web_all.txt", max_bytes=150_000)
    files = {}
    for role in ("stories", "web"):
        documents = (root / f"{role}_all.txt").read_text(encoding="utf-8").split("<|endoftext|>")
        documents = [d.strip() + "\n<|endoftext|>\n" for d in documents if d.strip()]
        cut = len(documents) * 9 // 10
        for split, part in (("train", documents[:cut]), ("valid", documents[cut:])):
            text = "".join(part)
            if role == "web":
                files[(role, split)] = root / f"owt_like_{split}.txt.gz"
                files[(role, split)].write_bytes(gzip.compress(text.encode("utf-8")))
            else:
                files[(role, split)] = root / f"TinyStories-like-{split}.txt"
                files[(role, split)].write_text(text, encoding="utf-8")
    return files


def set_all(monkeypatch, files):
    for role, (train_var, valid_var) in CORPUS_ENV.items():
        monkeypatch.setenv(train_var, str(files[(role, "train")]))
        monkeypatch.setenv(valid_var, str(files[(role, "valid")]))


def text_of(path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")


def test_the_cpu_preset_trains_tokenizers_and_encodes_my_files(handout_like, monkeypatch, tmp_path):
    """The cpu preset as it is (downloads by default), its tokenizers made small for a test's time:
    with the variables set, the corpora, tokenizers and token files come from the given files."""
    set_all(monkeypatch, handout_like)
    small = dataclasses.replace(get_preset("cpu"), tokenizers={"stories": TokenizerSpec(300), "web": TokenizerSpec(400)})
    defs = build_defs(small, tmp_path)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=DATA_PREP)
    assert result.success
    metadata = {event.materialization.asset_key.to_user_string(): {k: v.value for k, v in
                                                                 event.materialization.metadata.items()}
                for event in result.get_asset_materialization_events()}
    assert set(metadata) == set(DATA_PREP)
    assert all(check.passed for check in result.get_asset_check_evaluations())
    assert not (tmp_path / "downloads").exists(), "the preset's download source was used"
    for role, (train_var, valid_var) in CORPUS_ENV.items():
        corpus = metadata[f"{role}_corpus"]
        assert corpus["source"] == "local" and corpus["preset"] == "cpu"
        assert corpus["environment"] == (f"{train_var}={handout_like[(role, 'train')]}\n"
                                         f"{valid_var}={handout_like[(role, 'valid')]}")
        for split in ("train", "valid"):  # the given text, decompressed (OWT's files are .gz)
            written = (tmp_path / "corpora" / role / f"{split}.txt").read_text(encoding="utf-8")
            assert written == text_of(handout_like[(role, split)])
        assert corpus["train_bytes"] == len(text_of(handout_like[(role, "train")]).encode("utf-8"))
        tokenizer = Tokenizer.from_files(tmp_path / "tokenizers" / role / "vocab.json",
                                         tmp_path / "tokenizers" / role / "merges.txt", ["<|endoftext|>"])
        assert len(tokenizer.vocab) == small.tokenizers[role].vocab_size
        ids = np.load(tmp_path / "tokens" / role / role / "valid.npy")
        assert text_of(handout_like[(role, "valid")]).startswith(tokenizer.decode(ids[:200].tolist()))
    description = defs.get_assets_def("web_corpus").descriptions_by_key
    assert "from CS336_WEB_TRAIN, CS336_WEB_VALID" in next(iter(description.values()))


def test_a_training_file_alone_is_split_into_train_and_validation(handout_like, monkeypatch, tmp_path):
    monkeypatch.setenv("CS336_STORIES_TRAIN", str(handout_like[("stories", "train")]))
    preset = with_corpus_env(get_preset("test"))
    assert preset.corpora["stories"].source == "local" and preset.corpora["stories"].valid_path == ""
    assert preset.corpora["web"] == get_preset("test").corpora["web"]  # untouched
    defs = build_defs("test", tmp_path)
    with DagsterInstance.ephemeral() as instance:
        assert materialize(list(defs.assets), instance=instance, resources=defs.resources,
                           selection=["stories_corpus"]).success
    train, valid = ((tmp_path / "corpora" / "stories" / f"{split}.txt").read_text() for split in ("train", "valid"))
    assert valid and len(train) + len(valid) == len(text_of(handout_like[("stories", "train")]))


@pytest.mark.parametrize("problem", ["missing", "directory", "valid_without_train"])
def test_an_unusable_variable_fails_the_definitions_naming_the_variable_and_the_path(problem, monkeypatch, tmp_path):
    path = {"missing": tmp_path / "absent.txt", "directory": tmp_path, "valid_without_train": tmp_path / "v.txt"}[problem]
    variable = "CS336_WEB_VALID" if problem == "valid_without_train" else "CS336_WEB_TRAIN"
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(CorpusEnvError) as failed:
        build_defs("demo", tmp_path / "data")
    assert f"{variable}={path}" in str(failed.value)
    if problem == "valid_without_train":
        assert "CS336_WEB_TRAIN" in str(failed.value)


def test_a_file_gone_since_the_definitions_loaded_fails_the_corpus_asset_by_name(handout_like, monkeypatch, tmp_path):
    mine = tmp_path / "mine.txt"
    shutil.copyfile(handout_like[("stories", "train")], mine)
    monkeypatch.setenv("CS336_STORIES_TRAIN", str(mine))
    defs = build_defs("test", tmp_path / "data")
    mine.unlink()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                             selection=["stories_corpus"], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"CS336_STORIES_TRAIN={mine}: no such file" in failure.event_specific_data.error.to_string()


def test_the_dagster_cli_reads_the_variables(handout_like, tmp_path):
    """`dagster asset materialize -m cs336_assets` builds its own definitions (here in a step
    process too): the variables of its environment reach the corpus."""
    env = dagster_env(tmp_path / "data", tmp_path / "home", preset="cpu")
    env["CS336_WEB_TRAIN"] = str(handout_like[("web", "train")])
    env["CS336_WEB_VALID"] = str(handout_like[("web", "valid")])
    done = run_cli(["dagster", "asset", "materialize", "-m", "cs336_assets", "--select", "web_corpus"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    written = (tmp_path / "data" / "corpora" / "web" / "valid.txt").read_text(encoding="utf-8")
    assert written == text_of(handout_like[("web", "valid")])
    assert json.loads((tmp_path / "data" / "corpora" / "web" / "stats.json").read_text())["source"] == "local"


def test_the_demo_runner_builds_the_definitions_with_the_variables(handout_like, monkeypatch, tmp_path):
    """`python -m cs336_assets.demo --preset cpu` (what `CS336_PRESET=cpu make demo` runs) with the
    variables set materializes definitions whose corpora are the given files."""
    set_all(monkeypatch, handout_like)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # demo sets it; monkeypatch restores it
    built = []

    def stand_in_for_the_runs(defs, instance, **options):
        # The definitions are what this test is about; running the cpu preset's graph would train the
        # handout's 17M model for hours.
        built.append(defs)
        return demo.Outcome()

    monkeypatch.setattr(demo, "run_stages", stand_in_for_the_runs)
    assert demo.main(["--preset", "cpu", "--data-dir", str(tmp_path / "data")]) == 0
    [defs] = built
    for role, (train_var, valid_var) in CORPUS_ENV.items():
        [description] = defs.get_assets_def(f"{role}_corpus").descriptions_by_key.values()
        assert f"local from {train_var}, {valid_var}" in description
