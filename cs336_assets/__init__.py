"""Dagster definitions of the CS336 assignment-1 pipeline (orchestration only; the work is in cs336_core).

`defs` is built for the preset named by the environment variable CS336_PRESET (default "demo") and
writes under CS336_DATA_DIR (default <repo>/data). `dagster dev -w workspace.yaml` and
`dagster asset materialize -m cs336_assets --select ...` load it from here.
"""

from cs336_assets.definitions import build_defs
from cs336_assets.presets import preset_name_from_env

defs = build_defs(preset_name_from_env())
