"""Test plugin: a metric added from outside the package. `first_option_rate` is the share of
items answered with option A (a position bias check); it applies to every dataset, lands in
scores.json under its name and in the leaderboard as the column `first_option_rate`. One registry
entry, no edit inside dybench/ (see docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from dybench.score_blocks import SCORE_BLOCKS, ScoreBlock, ScoringInput


def first_option_rate(scoring: ScoringInput) -> dict[str, Any]:
    answered = scoring.items["pred"].notna()
    n = int(answered.sum())
    share = float((scoring.items.loc[answered, "pred"] == "A").sum()) / n if n else None
    return {"rate": share, "n_answered": n}


SCORE_BLOCKS.register("first_option", ScoreBlock("first_option", first_option_rate,
                                                 columns=lambda block: {"first_option_rate": block["rate"]}))
