"""The live view of a training run: a progress bar with the latest reward terms, loss and KL."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dybench.train.config import TrainConfig

SHOWN = (
    ("reward/orig/correct", "correct"),
    ("reward/orig/format", "format"),
    ("reward/orig/crr", "crr"),
    ("reward/cf/behave", "cf behave"),
    ("reward/cf/crr", "cf crr"),
    ("reward/orig/temporal", "temporal"),
    ("answer_change_rate", "changed"),
    ("loss", "loss"),
    ("kl", "kl"),
)


def summary(row: dict[str, Any]) -> str:
    """'correct 0.50  format 0.12 ...' for the terms this algorithm produces."""
    parts = [f"{label} {row[key]:.3g}" for key, label in SHOWN if row.get(key) is not None]
    return "  ".join(parts)


@contextlib.contextmanager
def live_display(config: TrainConfig, start_step: int, console: Console | None = None) -> Iterator[Callable[[int, dict[str, Any]], None]]:
    progress = Progress(
        TextColumn(f"[bold]{config.algo}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[terms]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("train", total=config.max_steps, completed=start_step, terms="")

        def update(step: int, row: dict[str, Any]) -> None:
            progress.update(task, completed=step, terms=summary(row))

        yield update
