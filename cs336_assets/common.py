"""Small glue shared by the asset modules: code versions, preset metadata, progress logging."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from dagster import DataVersion, MetadataValue

from cs336_assets.presets import Preset
from cs336_core.progress import ThrottledLog


def code_version(asset_file: str, core_modules: tuple[str, ...], config: Any) -> str:
    """Hash of the asset's own module, the cs336_core modules it calls and the configuration it runs with.

    Changing the tokenizer code, the model code, the asset or a preset knob therefore changes the
    version, and Dagster marks the asset and everything downstream of it stale.
    """
    digest = hashlib.sha256(Path(asset_file).read_bytes())
    for name in sorted(core_modules):
        spec = importlib.util.find_spec(f"cs336_core.{name}")
        if spec is None or spec.origin is None:
            raise ValueError(f"cs336_core.{name} not found: code_version needs its source file")
        digest.update(Path(spec.origin).read_bytes())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


# Files up to this size are hashed whole; a larger one (a multi-GB corpus) by size, mtime and its
# first and last MiB, so that versioning an 11 GB corpus costs milliseconds, not a minute.
_FULL_HASH_LIMIT = 256 << 20
_EDGE_BYTES = 1 << 20


def _file_digest(path: Path, digest) -> None:
    stat = path.stat()
    digest.update(f"{path.name}:{stat.st_size}".encode())
    with open(path, "rb") as f:
        if stat.st_size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f"{stat.st_mtime_ns}".encode())
            digest.update(f.read(_EDGE_BYTES))
            f.seek(-_EDGE_BYTES, 2)
            digest.update(f.read(_EDGE_BYTES))


def output_data_version(effective_config: Any, *outputs: str | Path) -> DataVersion:
    """The data version of what an asset produced: its effective config plus a digest of its files.

    Dagster's default data version only follows code versions and inputs, so an asset rebuilt with
    other run config (say `max_steps: 400`) would keep its old version and leave everything
    downstream marked fresh. Returning this from every asset makes a different product a new
    version, and Dagster then marks the downstream assets stale.
    """
    digest = hashlib.sha256(json.dumps(effective_config, sort_keys=True, default=str).encode())
    for output in outputs:
        path = Path(output)
        # Hidden files are locks and temporary files of atomic writes, not part of the product.
        files = (sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                 if path.is_dir() else [path])
        for file in files:
            _file_digest(file, digest)
    return DataVersion(digest.hexdigest()[:16])


def knobs_metadata(preset: Preset, **sections: Any) -> dict[str, Any]:
    """The preset's name and every knob the asset used, for the asset's metadata panel."""
    return {
        "preset": MetadataValue.text(preset.name),
        "knobs": MetadataValue.json(json.loads(json.dumps(sections, default=str))),
    }


def progress_logger(context, interval: float = 5.0) -> ThrottledLog:
    """Percent + ETA lines in the run's log while a long core call runs."""
    return ThrottledLog(context.log.info, interval=interval)


def file_size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


class PeakMemory:
    """Peak resident memory of this process plus its children while the block runs (sampled).

    Tokenizer training fans out to worker processes, so the process's own ru_maxrss would miss
    them; a sampling thread sees the whole tree. `peak_extra_bytes` is the peak above the
    memory in use when the block started (what the work itself needed).
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self._stop = None
        self._thread = None

    @property
    def peak_extra_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    @staticmethod
    def _tree_rss() -> int:
        """This process's resident memory plus each child's unique memory (a forked worker shares
        the parent's pages copy-on-write; counting its full RSS would count them twice)."""
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except psutil.Error:
                pass  # a worker that just exited
        return total

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        self.baseline_bytes = self.peak_bytes = self._tree_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
