"""`dybench tasks`: list the task definitions and how each transform acts on their answers."""

from __future__ import annotations

from rich.table import Table

from dybench.cli.common import console
from dybench.tasks import TRANSFORMS, load_tasks


def list_tasks() -> None:
    """List the DyBench tasks, their options and the answer permutation of every transform."""
    table = Table(title="DyBench tasks (tasks/*.yaml)")
    for column in ("task", "category", "kind", "options", "pairs by", *TRANSFORMS):
        table.add_column(column)
    for task in load_tasks().values():
        for variant in task.variants:
            swaps = []
            for transform in TRANSFORMS:
                pairs = variant.transforms.get(transform, [])
                swaps.append(", ".join(f"{a}<->{b}" for a, b in pairs) or "identity")
            table.add_row(
                f"{task.name}/{variant.name}",
                task.category,
                task.kind,
                " | ".join(variant.options),
                ", ".join(task.pair_transforms) or "-",
                *swaps,
            )
    console.print(table)
