"""`dybench lab`: experiments that check the project's claims with its own builder, trainer and scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dybench.cli.common import console, err_console, fail
from dybench.escaping import rich_text
from dybench.signals import interrupt_exit_code

lab_app = typer.Typer(
    help="Experiments that test the paper's claims at CPU scale with dybench's own tools.",
    no_args_is_help=True,
)


@lab_app.command("shortcut")
def shortcut_command(
    out: Path = typer.Option(..., "--out", "-o", help="Experiment folder: data, warm start, runs, and the report "
                             "(results.csv, curves.png, summary.md). Rerun the same command to continue it."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="RL seeds per algorithm (default 3)."),
    quick: bool = typer.Option(False, "--quick", help="A few steps of everything (a smoke test: its numbers mean nothing)."),
    warm_steps: Optional[int] = typer.Option(None, "--warm-steps", min=1, help="Supervised warm-start updates (default 1000)."),
    rl_steps: Optional[int] = typer.Option(None, "--rl-steps", min=1, help="RL updates per run (default 150)."),
    rl_lr: Optional[float] = typer.Option(None, "--rl-lr", help="RL learning rate (default 1e-4)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with any field of "
                                          "dybench.lab.shortcut.ShortcutSettings; options above override it."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Stage lines and live training display."),
) -> None:
    """Shortcut lab: does correctness-only RL keep a static shortcut that CRPO's counterfactual branch removes?

    Renders a training split where the moving object's colour gives away its direction and a
    decorrelated test split (`build-pairs`), warm-starts the tiny Qwen3-VL with a short `sft` run,
    then trains grpo, t-grpo and crpo from it with equal steps and rollouts per question
    (`train-crpo`), and evaluates every policy on the test split (`eval --backend hf`): Acc, P-Acc,
    shortcut rate, single-frame probe. Writes OUT/results.csv, OUT/curves.png and OUT/summary.md.
    The default run takes about half an hour on two CPU cores. Interrupted (Ctrl-C, SIGTERM), the
    same command continues it.

    Example: `dybench lab shortcut --out runs/shortcut --seeds 3`.
    """
    from dybench.lab.shortcut import LabInterrupted, load_settings, run_shortcut_lab

    settings = load_settings(config, quick=quick, seeds=seeds, warm_steps=warm_steps, rl_steps=rl_steps, rl_lr=rl_lr)
    try:
        run_shortcut_lab(out, settings, progress=progress, console=err_console)
    except LabInterrupted as exc:  # Ctrl-C or SIGTERM: exit 130 / 143
        fail(str(exc), code=interrupt_exit_code())
    if not progress:  # with progress on, the last stage line already says where the report is
        console.print(f"[green]done[/]: {rich_text(out / 'summary.md')}")
