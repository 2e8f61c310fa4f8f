"""The one resource every asset uses: where artifacts live and which preset sizes them.

Also sets up the project-local Dagster instance (DAGSTER_HOME = <data dir>/dagster_home) so run
history survives restarts and the UI opens without telemetry or the first-visit dialog.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import ClassVar

from dagster import ConfigurableResource
from pydantic import Field, model_validator

from cs336_assets.presets import PRESET_ENV, Preset, get_preset
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


class Workspace(ConfigurableResource):
    """Data directory and preset of the asset graph (`resources: {workspace: {config: ...}}`)."""

    data_dir: str = Field(description=f"Where artifacts are written (env {DATA_DIR_ENV}, default <repo>/data).")
    preset: str = Field(description="Preset name: demo, cpu, h100 or test (env CS336_PRESET). It must be the "
                                    "preset the definitions were loaded with.")
    # The preset the definitions were built for: their partitions and code versions come from it.
    # A class attribute, not a field, because run config replaces every field of a resource and
    # only its class survives (see `for_definitions`). Empty: not bound, nothing to compare.
    definitions_preset: ClassVar[str] = ""

    @classmethod
    def for_definitions(cls, preset_name: str, data_dir: str) -> "Workspace":
        """The workspace of definitions built for `preset_name`: a run configured with another preset
        fails at resource initialisation instead of mixing that preset's knobs into these partitions."""
        return _bound_workspace_class(preset_name)(data_dir=data_dir, preset=preset_name)

    @model_validator(mode="after")
    def _preset_matches_definitions(self) -> "Workspace":
        if self.definitions_preset and self.preset != self.definitions_preset:
            raise ValueError(
                f"resource config preset {self.preset!r} does not match the preset these definitions were "
                f"loaded with ({self.definitions_preset!r}): partitions and code versions come from the "
                f"latter. Load the definitions with {PRESET_ENV}={self.preset} instead of overriding the preset "
                "in run config.")
        return self

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    def get_preset(self) -> Preset:
        return get_preset(self.preset)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # The layout of data/ (documented in data/README.md), one place for every asset.
    def corpus_dir(self, role: str) -> Path:
        return self.path("corpora", role)

    def tokenizer_dir(self, role: str) -> Path:
        return self.path("tokenizers", role)

    def tokens_path(self, role: str, split: str) -> Path:
        return self.path("tokens", role, role, f"{split}.npy")

    def run_dir(self, name: str) -> Path:
        return self.path("runs", name)


@functools.lru_cache(maxsize=None)
def _bound_workspace_class(preset_name: str) -> type[Workspace]:
    # Same name as the base, so the UI and config errors still say "Workspace".
    return type("Workspace", (Workspace,), {"__module__": __name__, "__qualname__": "Workspace",
                                            "definitions_preset": preset_name})


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
