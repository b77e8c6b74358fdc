"""`dybench leaderboard publish`: leaderboard CSV + Markdown + static HTML + PNG from run directories."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dybench.cli.common import console
from dybench.escaping import rich_text

leaderboard_app = typer.Typer(help="Publish leaderboards (CSV, Markdown, a static HTML page and a PNG chart).",
                              no_args_is_help=True)


@leaderboard_app.command("publish")
def publish_command(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (dybench eval) or folders written by "
                                          "`dybench score --out`."),
    out: Path = typer.Option(..., "--out", help="leaderboards/NAME.csv; NAME.md, NAME.html and NAME.png go beside it."),
    include: Optional[List[Path]] = typer.Option(None, "--include", help="Rows of another leaderboard CSV to show "
                                                 "beside these, e.g. leaderboards/dybench-reported.csv."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the page and chart."),
) -> None:
    """Add runs to a leaderboard. Rows with the same (model, dataset, config_hash) are replaced,
    so publishing the same runs again changes nothing."""
    from dybench.leaderboard import publish
    from dybench.tables import leaderboard_table

    frame = publish(run_dirs, out, include=include or [], title=title)
    console.print(leaderboard_table(frame, title or out.stem))
    console.print(rich_text(f"wrote {out} (+ .md, .html, .png)"), highlight=False)
