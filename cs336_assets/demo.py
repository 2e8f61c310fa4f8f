"""Materialize the whole asset graph with one preset into the project's Dagster instance.

    python -m cs336_assets.demo                 # demo preset, <repo>/data, ~10 minutes on 2 CPU cores
    python -m cs336_assets.demo --preset cpu    # the handout's low-resource run (needs the downloads)
    python -m cs336_assets.demo --prepare-only  # only set up DAGSTER_HOME (used by `make dev`)

Runs go through the real instance in DAGSTER_HOME (<data>/dagster_home), so `dagster dev`
afterwards shows every run, materialization, check result and plot. Execution is in-process (one
step after another), the right choice on a small CPU machine; partitioned assets are materialized
one partition per run, the way a backfill would launch them.
"""

from __future__ import annotations

import argparse
import sys
import time

from dagster import AssetSelection, DagsterInstance, Definitions, materialize

from cs336_assets.definitions import RESOURCE_KEY, build_defs
from cs336_assets.presets import PRESETS, preset_name_from_env
from cs336_assets.resources import default_data_dir, ensure_dagster_home


def materialize_all(defs: Definitions, instance: DagsterInstance, log=print, raise_on_error: bool = True) -> list:
    """Materialize every asset of `defs` in dependency order; returns the run results.

    Stage 1: unpartitioned assets not downstream of a partitioned one. Stage 2: each partition of
    each partitioned asset. Stage 3: what depends on the partitioned assets (curves, report).
    """
    assets = list(defs.assets) + list(defs.asset_checks or [])
    resources = defs.resources
    graph = defs.resolve_asset_graph()
    partitioned = [key for key in graph.get_all_asset_keys() if graph.get(key).partitions_def is not None]
    downstream = AssetSelection.assets(*partitioned).downstream() - AssetSelection.assets(*partitioned)
    stages: list[tuple[str, AssetSelection, str | None]] = [
        ("upstream assets", AssetSelection.all() - AssetSelection.assets(*partitioned).downstream(), None)]
    for key in sorted(partitioned, key=lambda k: k.to_user_string()):
        for partition in graph.get(key).partitions_def.get_partition_keys():
            stages.append((f"{key.to_user_string()} [{partition}]", AssetSelection.assets(key), partition))
    stages.append(("downstream assets", downstream, None))

    results = []
    start = time.perf_counter()
    for i, (label, selection, partition) in enumerate(stages, 1):
        log(f"[{i}/{len(stages)}] materializing {label} (elapsed {time.perf_counter() - start:.0f}s)")
        results.append(materialize(assets, instance=instance, resources=resources, selection=selection,
                                   partition_key=partition, raise_on_error=raise_on_error,
                                   tags={"cs336/stage": label}))
    log(f"materialized {len(stages)} runs in {time.perf_counter() - start:.0f}s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=preset_name_from_env(), choices=sorted(PRESETS))
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--prepare-only", action="store_true", help="only create DAGSTER_HOME and exit")
    args = parser.parse_args(argv)

    home = ensure_dagster_home(args.data_dir)
    print(f"DAGSTER_HOME={home}")
    if args.prepare_only:
        return 0
    defs = build_defs(args.preset, args.data_dir)
    print(f"materializing the whole graph with preset {args.preset!r} into {args.data_dir}")
    materialize_all(defs, DagsterInstance.get())
    report = defs.resources[RESOURCE_KEY].path("report", "report.md")
    print(f"\nreport: {report}\nbrowse the runs: make dev  (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
