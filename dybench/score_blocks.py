"""Score blocks: extra sections of `scores.json` beyond Acc and P-Acc, each declared once with the
leaderboard columns it contributes.

A block is computed when its `applies` says so for a dataset (TimeBlind's block for TimeBlind
data; a plugin's block may apply everywhere). Its values land in `scores.json` under the block's
name and, through `columns`, in the leaderboard row. A new metric is one `SCORE_BLOCKS.register(...)`
call in a plugin module (dybench/plugins.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dybench.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from dybench.data import Dataset
    from dybench.schema import Prediction


@dataclass(frozen=True)
class ScoringInput:
    """What a block may read: the dataset, the predictions by item id, the per-item and per-pair
    tables of dybench/metrics.py (columns `correct`, `pred`, `category`, ...), the bootstrap seed,
    and prediction rows in the dataset family's own format when those were scored."""

    dataset: Dataset
    predictions: Mapping[str, Prediction]
    items: pd.DataFrame
    pairs: pd.DataFrame
    seed: int
    family_rows: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ScoreBlock:
    name: str
    compute: Callable[[ScoringInput], dict[str, Any]]
    columns: Callable[[dict[str, Any]], dict[str, Any]]
    """Leaderboard columns from the block's values (they may replace a core column, e.g. acc)."""
    applies: Callable[[Dataset], bool] = lambda dataset: True


SCORE_BLOCKS: Registry[ScoreBlock] = Registry("score block")


def blocks_for(dataset: Dataset) -> list[ScoreBlock]:
    """The blocks computed for `dataset`: those its family names, then any that apply to all data."""
    from dybench.families import family_of

    named = set(family_of(dataset).score_blocks)
    return [block for name, block in SCORE_BLOCKS.items() if name in named or block.applies(dataset)]


# --- TimeBlind --------------------------------------------------------------------------------


def _timeblind(scoring: ScoringInput) -> dict[str, Any]:
    from dybench.metrics import timeblind_block

    return timeblind_block(scoring.dataset, scoring.predictions, scoring.family_rows, scoring.seed)


def _timeblind_columns(block: dict[str, Any]) -> dict[str, Any]:
    # TimeBlind rows carry the reference scorer's Acc (it replaces ours, which has no interval
    # then), so they compare with published numbers.
    columns = {"acc": block.get("acc"), **{name: block.get(name) for name in ("q_acc", "v_acc", "i_acc")}}
    interval = block.get("i_acc_ci") or (None, None)
    columns.update(i_acc_lo=interval[0], i_acc_hi=interval[1], acc_lo=None, acc_hi=None)
    return columns


SCORE_BLOCKS.register("timeblind", ScoreBlock("timeblind", _timeblind, _timeblind_columns,
                                              applies=lambda dataset: False))
