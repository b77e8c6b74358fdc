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
    out: Path = typer.Option(..., "--out", "-o", help="Experiment folder: data, control, warm start, runs, and the "
                             "report (results.csv, curves.png, summary.md, leaderboard.*). Rerun the same command to "
                             "continue it."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds of the control and of each RL algorithm (default 3)."),
    quick: bool = typer.Option(False, "--quick", help="A few steps of everything (a smoke test: its numbers mean nothing)."),
    control_steps: Optional[int] = typer.Option(None, "--control-steps", min=1, help="Supervised updates of the positive control (default 300)."),
    cue_steps: Optional[int] = typer.Option(None, "--cue-steps", min=1, help="Supervised updates of the warm start's cue lesson (default 50)."),
    rl_steps: Optional[int] = typer.Option(None, "--rl-steps", min=1, help="RL updates per run (default 100)."),
    rl_lr: Optional[float] = typer.Option(None, "--rl-lr", help="RL learning rate (default 1e-4)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with any field of "
                                          "dybench.lab.shortcut.ShortcutSettings; options above override it."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Stage lines and live training display."),
) -> None:
    """Shortcut lab: does correctness-only RL keep a visual shortcut that CRPO's counterfactual branch removes?

    Renders two-way (left/right) clips of one object under the lab's own task table, whose
    question never names the colour (`build-pairs`). A positive control (`sft` on decorrelated
    pairs) must first show the tiny Qwen3-VL can see the motion; then a warm start that prefers the
    colour (the control plus a short lesson labelled by colour) is trained with grpo, t-grpo and
    crpo on clips where the colour always gives the answer away (`train-crpo`, equal updates and
    rollouts per question), and every policy is evaluated on a test split where each pair has one
    clip that agrees with the colour and one that conflicts (`eval --backend hf`, `probe`): P-Acc,
    shortcut rate, single-frame probe. Writes OUT/results.csv, OUT/curves.png, OUT/summary.md and
    OUT/leaderboard.*. The default run takes about 11 minutes on two CPU cores. Interrupted
    (Ctrl-C, SIGTERM), the same command continues it.

    Example: `dybench lab shortcut --out runs/shortcut`.
    """
    from dybench.lab.shortcut import LabInterrupted, load_settings, run_shortcut_lab

    settings = load_settings(config, quick=quick, seeds=seeds, control_steps=control_steps, cue_steps=cue_steps,
                             rl_steps=rl_steps, rl_lr=rl_lr)
    try:
        run_shortcut_lab(out, settings, progress=progress, console=err_console)
    except LabInterrupted as exc:  # Ctrl-C or SIGTERM: exit 130 / 143
        fail(str(exc), code=interrupt_exit_code())
    if not progress:  # with progress on, the last stage line already says where the report is
        console.print(f"[green]done[/]: {rich_text(out / 'summary.md')}")
