"""Glue every asset module uses: the preset and knobs in an asset's metadata, progress in its run log."""

from __future__ import annotations

import json
from typing import Any

from dagster import MetadataValue

from cs336_assets.presets import Preset
from cs336_core.progress import ThrottledLog


def knobs_metadata(preset: Preset, **sections: Any) -> dict[str, Any]:
    """The preset's name and every knob the asset used, for the asset's metadata panel."""
    return {
        "preset": MetadataValue.text(preset.name),
        "knobs": MetadataValue.json(json.loads(json.dumps(sections, default=str))),
    }


def progress_logger(context, interval: float = 5.0) -> ThrottledLog:
    """Percent + ETA lines in the run's log while a long core call runs."""
    return ThrottledLog(context.log.info, interval=interval)
