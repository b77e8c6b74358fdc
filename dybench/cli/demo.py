"""`dybench demo`: build, evaluate four reference models, score and publish a leaderboard (offline)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", help="Working folder for the demo's data and runs."),
    leaderboard: Path = typer.Option(Path("leaderboards/demo.csv"), "--leaderboard",
                                     help="Leaderboard CSV to publish (.md/.html/.png beside it)."),
    pairs_per_task: int = typer.Option(6, "--pairs-per-task", min=1, help="Synthetic pairs per category."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic set."),
) -> None:
    """The end-to-end demo, no downloads: builds a small synthetic test set, evaluates
    baseline:constant, baseline:random, baseline:motion and tiny-random-qwen3-vl, scores them and
    publishes leaderboards/demo.*. Rerunning reuses finished work."""
    from dybench.cli.common import console
    from dybench.demo import run_demo

    run_demo(out=out, leaderboard=leaderboard, pairs_per_task=pairs_per_task, seed=seed, console=console)
