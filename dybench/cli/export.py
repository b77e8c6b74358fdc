"""`dybench export`: write a built dataset in the layouts other tools read (Hugging Face datasets,
lmms-eval). One subcommand per target; the library modules do the writing."""

from __future__ import annotations

from pathlib import Path

import typer

from dybench.cli.common import console
from dybench.escaping import rich_text

export_app = typer.Typer(
    help="Write a dataset in the layouts other tools read: `hf` (Hugging Face datasets), `lmms-eval` (a task folder).",
    no_args_is_help=True,
)


@export_app.command("lmms-eval")
def lmms_eval_command(
    data: str = typer.Argument(..., help="The dataset: a built folder or dybench:PATH (lettered options)."),
    out: Path = typer.Option(..., "--out", help="Task folder to write (NAME.yaml, utils.py, NAME.jsonl); "
                             "load it with `lmms-eval --include_path OUT --tasks NAME`."),
    task: str = typer.Option("dybench", "--task", help="lmms-eval task name."),
) -> None:
    """An lmms-eval task whose Acc and P-Acc equal `dybench score`'s; score its sample logs with
    `dybench score --data DATA --predictions samples_NAME.jsonl --out DIR`."""
    from dybench.lmms_eval_export import export_lmms_eval

    yaml_path = export_lmms_eval(data, out, task=task)
    console.print(rich_text(f"wrote {yaml_path.parent} (lmms-eval task {task!r}: --include_path {yaml_path.parent})"),
                  highlight=False)
