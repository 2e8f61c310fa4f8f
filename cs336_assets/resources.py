"""The one resource every asset uses: where artifacts live.

Also sets up the project-local Dagster instance (DAGSTER_HOME = <data dir>/dagster_home) so run
history survives restarts and the UI opens without telemetry or the first-visit dialog.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetKey, ConfigurableResource
from pydantic import Field

from cs336_core.files import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "CS336_DATA_DIR"

# The SQLite storage is the embedded default; docs/orchestration.md shows the Postgres variant.
DAGSTER_YAML = """\
# Written by cs336_assets.resources.ensure_dagster_home(); edit freely, it is not overwritten.
telemetry:
  enabled: false
"""


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data").resolve()


class DataPaths(ConfigurableResource):
    """Where the graph's artifacts live (`resources: {paths: {config: {data_dir: ...}}}`), and their
    layout under that directory (data/README.md), in one place for every asset.

    Only the location: the preset is fixed when the definitions load (env CS336_PRESET), because
    the sweep partitions and the code versions come from it, and every asset reads it from there. A
    resource config that names a preset is refused by Dagster's config check before a run starts.
    """

    data_dir: str = Field(description=f"Where artifacts are written (env {DATA_DIR_ENV}, default <repo>/data).")

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def corpus_dir(self, role: str) -> Path:
        return self.path("corpora", role)

    def tokenizer_dir(self, role: str) -> Path:
        return self.path("tokenizers", role)

    def tokenizer_files(self, role: str) -> tuple[Path, Path]:
        """(vocab.json, merges.txt) of the role's tokenizer."""
        return self.tokenizer_dir(role) / "vocab.json", self.tokenizer_dir(role) / "merges.txt"

    def tokens_path(self, role: str, split: str) -> Path:
        return self.path("tokens", role, role, f"{split}.npy")

    def leaderboard_files(self) -> tuple[Path, Path]:
        """(submission.json, submission.md) of the leaderboard run, under leaderboard/."""
        return self.path("leaderboard", "submission.json"), self.path("leaderboard", "submission.md")

    def run_dir(self, asset: AssetKey, partition: str | None = None) -> Path:
        """runs/<asset>/ of a training asset, runs/<asset>/<partition>/ of one of a sweep's partitions."""
        return self.path("runs", *asset.path, *([partition] if partition else []))


def ensure_dagster_home(data_dir: str | os.PathLike | None = None, home: str | os.PathLike | None = None,
                        set_env: bool = True) -> Path:
    """Create the Dagster instance directory with dagster.yaml and .nux/nux.yaml; return its path.

    The directory is `home`, else an existing DAGSTER_HOME (the Makefile exports one), else
    <data dir>/dagster_home. With `set_env`, DAGSTER_HOME is set to it for this process.
    """
    home_path = Path(home or os.environ.get("DAGSTER_HOME") or Path(data_dir or default_data_dir()) / "dagster_home")
    home_path = home_path.resolve()
    home_path.mkdir(parents=True, exist_ok=True)
    if not (home_path / "dagster.yaml").exists():
        atomic_write_text(home_path / "dagster.yaml", DAGSTER_YAML)
    nux = home_path / ".nux" / "nux.yaml"
    if not nux.exists():
        atomic_write_text(nux, "seen: 1\n")
    if set_env:
        os.environ["DAGSTER_HOME"] = str(home_path)
    return home_path
