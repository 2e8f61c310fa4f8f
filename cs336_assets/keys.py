"""Every asset key of the graph, named once: assets are defined with these keys and depend on them, so
no module formats an asset's name, and a renamed asset is one edit here."""

from __future__ import annotations

from typing import NamedTuple

from dagster import AssetKey


class RoleKeys(NamedTuple):
    """The chain of assets one corpus role gets: corpus -> tokenizer -> tokens -> main run."""

    corpus: AssetKey
    tokenizer: AssetKey
    tokens: AssetKey
    main_run: AssetKey


# The two corpus roles of the handout: a TinyStories-like one and an OpenWebText-like one.
BY_ROLE: dict[str, RoleKeys] = {
    "stories": RoleKeys(AssetKey("stories_corpus"), AssetKey("stories_tokenizer"), AssetKey("stories_tokens"),
                        AssetKey("stories_main_run")),
    "web": RoleKeys(AssetKey("web_corpus"), AssetKey("web_tokenizer"), AssetKey("web_tokens"),
                    AssetKey("web_main_run")),
}
ROLES = tuple(BY_ROLE)
# Sweeps and ablations train on the stories corpus, as in the handout (sections 7.2-7.3).
SWEEP_ROLE = "stories"

TOKENIZER_EXPERIMENTS = AssetKey("tokenizer_experiments")
ACCOUNTING_TABLES = AssetKey("accounting_tables")
LR_SWEEP = AssetKey("lr_sweep")
BATCH_SIZE_SWEEP = AssetKey("batch_size_sweep")
ABLATIONS = AssetKey("ablations")
SWEEPS = (LR_SWEEP, BATCH_SIZE_SWEEP, ABLATIONS)
# Handout 7.5: the baseline against the leaderboard configuration at equal wall-clock, on the web
# corpus (partitions "baseline" and "leaderboard"); trained like a sweep, but not on SWEEP_ROLE, so
# it is not in SWEEPS (whose readers take them for the stories sweeps of sections 7.2-7.3).
LEADERBOARD = AssetKey("leaderboard")
LEADERBOARD_ROLE = "web"
# The loss curves of each sweep and of the leaderboard runs (training asset -> its curves), and of
# the main runs side by side.
CURVES = {LR_SWEEP: AssetKey("lr_sweep_curves"), BATCH_SIZE_SWEEP: AssetKey("batch_size_sweep_curves"),
          ABLATIONS: AssetKey("ablations_curves"), LEADERBOARD: AssetKey("leaderboard_curves")}
MAIN_RUNS_CURVES = AssetKey("main_runs_curves")
SAMPLES = AssetKey("samples")
REPORT = AssetKey("report")

