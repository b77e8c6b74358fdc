"""`dybench doctor`: which engine, devices, packages, models and disk space this machine offers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from dybench.cli.common import console, err_console


def doctor_command(
    out: Path = typer.Option(Path("runs"), "--out", help="Where runs would be written: the free disk there is checked."),
) -> None:
    """Check Python, torch and its CUDA devices, the vLLM build (CPU or CUDA) against the hardware,
    transformers and accelerate, the models in the Hugging Face cache, the tiny test model, Chromium
    and free disk. Exits 1 with one line per problem."""
    from dybench.doctor import problems, run_checks

    checks = run_checks(out)
    width = max(len(check.name) for check in checks)
    for check in checks:
        console.print(f"{check.name:<{width}}  {escape(check.summary)}", highlight=False, soft_wrap=True)
    found = problems(checks)
    for problem in found:
        err_console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if found:
        raise typer.Exit(1)
    console.print("no problems found", highlight=False)
