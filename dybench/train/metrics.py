"""Per-step metrics: accumulate over micro-batches, reduce over processes, append to metrics.jsonl.

Every row has the same keys whatever the algorithm, so runs of crpo, grpo and t-grpo can be
plotted on the same axes; a value that an algorithm does not produce (a counterfactual branch in
GRPO, a KL with beta = 0) is null, never a made-up zero.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

METRICS = "metrics.jsonl"
RANKS = "ranks.jsonl"
"""With several processes: per update, the questions each rank trained on and a digest of each
rank's weights after the update (see Trainer._record_ranks)."""

REWARD_TERMS = (
    "orig/correct",
    "orig/format",
    "orig/crr",
    "orig/temporal",
    "cf/format",
    "cf/behave",
    "cf/crr",
    "cf/correct",
    "shuffled/correct",
)
"""Raw (unweighted) reward terms, logged as `reward/<branch>/<term>`: mean over the step's rollouts."""

COLUMNS = (
    "step",
    "epoch",
    "loss",
    "kl",
    "entropy",
    "clip_fraction",
    "grad_norm",
    "lr",
    "completion_length",
    *(f"reward/{term}" for term in REWARD_TERMS),
    "reward/orig/total",
    "reward/cf/total",
    "reward_std/orig",
    "reward_std/cf",
    "acc/orig",
    "acc/cf",
    "acc/shuffled",
    "answer_change_rate",
    "answer_change_rate/dynamic",
    "answer_change_rate/static",
    "invalid_rate/orig",
    "invalid_rate/cf",
    "sft/target_logprob",
    "rollout_time_s",
    "step_time_s",
)

TIMING_COLUMNS = ("rollout_time_s", "step_time_s")
"""Columns that depend on the machine, not on the computation (excluded when comparing runs)."""


class StepStats:
    """Sums and counts per metric over one optimizer step (all micro-batches)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)

    def add(self, name: str, values: Iterable[float] | float) -> None:
        if isinstance(values, (int, float)):
            values = [float(values)]
        for value in values:
            self.sums[name] += float(value)
            self.counts[name] += 1

    def means(self, reduce: Any = None) -> dict[str, float]:
        """Means; `reduce(list_of_floats) -> list_of_floats` sums across processes when given."""
        names = sorted(self.sums)
        sums = [self.sums[n] for n in names]
        counts = [self.counts[n] for n in names]
        if reduce is not None:
            sums, counts = reduce(sums), reduce(counts)
        return {n: s / c for n, s, c in zip(names, sums, counts) if c > 0}


def metrics_row(values: dict[str, Any]) -> dict[str, Any]:
    """A row with every column (null where absent), plus any extra keys a custom reward logged."""
    row = {column: values.get(column) for column in COLUMNS}
    row.update({k: v for k, v in values.items() if k not in row})
    return row


class MetricsLog:
    """metrics.jsonl (or another per-step log): one JSON object per line, one line per optimizer
    step, flushed as written."""

    def __init__(self, out: Path, name: str = METRICS) -> None:
        self.path = out / name

    def truncate_after(self, step: int) -> None:
        """Drop rows after `step` (written after the checkpoint a resumed run starts from)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        tmp = self.path.with_name(self.path.name + ".partial")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def read_metrics(out: Path) -> list[dict[str, Any]]:
    path = out / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
